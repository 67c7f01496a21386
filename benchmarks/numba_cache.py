"""Carry Numba's on-disk cache from one GPU machine to the next, so that a second device call
does not spend its minutes compiling again what the first compiled.

    python3 benchmarks/numba_cache.py save $OUT        # at the end of a device call
    python3 benchmarks/numba_cache.py restore .whl     # at the start of the next one

``save`` writes two archives, ``nbcache-cpu.tgz`` and ``nbcache-cuda.tgz`` (the device tool
brings back files of at most 16 MiB each), of the cache files that an index refers to.

Numba keeps a compiled function (``cache=True``) in ``__pycache__/*.nbi`` (an index) and
``*.nbc`` (the code) beside its source, and trusts the index only while the source file's
modification time and size are what they were when it compiled (the index's "stamp"). A
working tree copied to a fresh machine has new modification times, so every entry would be
stale. ``save`` packs the cache files with a manifest of the package's sources: each file's
SHA-256 and modification time. ``restore`` unpacks them and gives the sources their old
modification times back, but only when no source with compiled code changed in between (by its
contents, so a same-size edit cannot pass for the old code): rnnjit's CPU functions are stamped
with every compiled source of the package (``rnnjit/kernels/_cache.py``), and a CUDA kernel's
machine code holds the device functions it calls from other files, so one changed file makes
the whole cache unsafe. CPU entries are keyed by the processor too, so they are used only on a
machine of the same kind.
"""

import hashlib
import io
import json
import os
import pickle
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from rnnjit.kernels._cache import COMPILED  # noqa: E402  (a decorator that makes compiled code)

PACKAGES = ("rnnjit", "tui", "benchmarks")
MANIFEST = "numba_cache_manifest.json"


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _sources():
    """Every Python file of the package, by its path relative to the repository."""
    for folder, dirs, files in os.walk(os.path.join(ROOT, "rnnjit")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), ROOT)


def _compiles(path):
    with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
        return COMPILED.search(f.read()) is not None


def _referenced(folder):
    """The cache files of one __pycache__ that a readable index refers to (older code that a
    recompile left behind stays out)."""
    keep = []
    for name in os.listdir(folder):
        if not name.endswith(".nbi"):
            continue
        try:
            with open(os.path.join(folder, name), "rb") as f:
                pickle.load(f)
                _, overloads = pickle.loads(f.read())
        except Exception:
            continue
        keep += [name] + [n for n in overloads.values() if os.path.exists(os.path.join(folder, n))]
    return [os.path.join(folder, n) for n in keep]


def save(out_dir):
    manifest = {path: {"sha256": _sha256(os.path.join(ROOT, path)),
                       "mtime_ns": os.stat(os.path.join(ROOT, path)).st_mtime_ns}
                for path in _sources()}
    blob = json.dumps(manifest, indent=1).encode()
    parts = {"cpu": [], "cuda": []}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            if os.path.basename(folder) == "__pycache__":
                part = "cuda" if os.path.basename(os.path.dirname(folder)) == "cuda" else "cpu"
                parts[part] += _referenced(folder)
    os.makedirs(out_dir, exist_ok=True)
    for part, members in parts.items():
        tar_path = os.path.join(out_dir, f"nbcache-{part}.tgz")
        with tarfile.open(tar_path, "w:gz") as tar:
            for path in members:
                tar.add(path, arcname=os.path.relpath(path, ROOT))
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        print(f"numba cache ({part}): {len(members)} files -> {tar_path} "
              f"({os.path.getsize(tar_path) / 1e6:.1f} MB)")


def restore(in_dir):
    for part in ("cpu", "cuda"):
        tar_path = os.path.join(in_dir, f"nbcache-{part}.tgz")
        if not os.path.exists(tar_path):
            print(f"numba cache ({part}): no {tar_path}, compiling from scratch")
            continue
        with tarfile.open(tar_path) as tar:
            manifest = json.load(tar.extractfile(MANIFEST))
            changed = sorted(p for p, e in manifest.items()
                             if not os.path.exists(os.path.join(ROOT, p))
                             or _sha256(os.path.join(ROOT, p)) != e["sha256"])
            stale = [p for p in changed if os.path.exists(os.path.join(ROOT, p)) and _compiles(p)]
            if stale:
                print(f"numba cache ({part}): not restored, compiled sources changed since: "
                      f"{', '.join(stale)}")
                continue
            members = [m for m in tar.getmembers()
                       if m.isfile() and m.name.split("/")[0] in PACKAGES and "/__pycache__/" in m.name]
            tar.extractall(ROOT, members=members, filter="data")
        for path, entry in manifest.items():
            if path not in changed:
                os.utime(os.path.join(ROOT, path), ns=(entry["mtime_ns"], entry["mtime_ns"]))
        print(f"numba cache ({part}): {len(members)} files restored")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "restore"):
        sys.exit("usage: numba_cache.py save|restore FOLDER")
    (save if sys.argv[1] == "save" else restore)(sys.argv[2])
