"""Checkpoints: one ``.npz`` file holding everything a run needs to resume.

Arrays are stored under prefixed keys (``param/…``, ``optim/…``, ``task/…``) and everything else
(step, RNG states, config, data position) as one JSON string under ``meta``.

Safety, in the order a reader meets it:

- **Writes are atomic** (``files.atomic_write``): a temporary file, fsync, rename, fsync of the
  directory. A crash, a SIGKILL or a full disk mid-write leaves the previous checkpoint intact.
- **Loading never executes code from the file**: ``allow_pickle=False`` refuses object arrays,
  and the metadata is JSON, not a pickle.
- **Loading never trusts the file's sizes**: every member's ``.npy`` header is read first and its
  shape × itemsize checked against the member's real size, so a damaged header cannot make
  NumPy allocate terabytes.
- **Damage is detected**: zip's CRC-32 covers each member, and the ``sha256`` member is a digest
  of every other member's name, dtype, shape and bytes (the metadata included), so a flipped bit
  anywhere is found rather than trained on.

Every failure is a :class:`CheckpointError` whose message is one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from .files import atomic_write


class CheckpointError(ValueError):
    pass


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype.kind not in "OV" else b"")
    return h.hexdigest()


def save_checkpoint(path: str, arrays: dict[str, np.ndarray], meta: dict) -> str:
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    payload["sha256"] = np.array(digest(payload))
    return atomic_write(path, lambda f: np.savez(f, **payload))


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_sizes(path: str) -> None:
    """Raise ValueError if any member's header claims more data than the member holds."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in _HEADER_READERS:   # 3.0 (utf-8 field names) is never written here
                    raise ValueError(f"member {info.filename} has .npy format {version}")
                shape, _, dtype = _HEADER_READERS[version](f, max_header_size=10000)
                need = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
                if need > info.file_size:
                    raise ValueError(f"member {info.filename} claims {need} bytes but holds {info.file_size}")


def load_checkpoint(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """-> (arrays, meta). Raises CheckpointError with a one-line message if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        expected = str(arrays.pop("sha256")) if "sha256" in arrays else None   # older checkpoints: none
        damaged = expected is not None and expected != digest(arrays)
        if not damaged and "meta" not in arrays:
            raise CheckpointError(f"{path} is not an rnnjit checkpoint (it has no 'meta' entry): "
                                  "restore the run's checkpoint from a copy or start a new run")
        meta = None if damaged else json.loads(str(arrays.pop("meta")))
        if not damaged and not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, MemoryError,
            OverflowError, RecursionError, SyntaxError, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({reason}): "
                              "restore it from a copy or start a new run") from None
    if damaged:
        raise CheckpointError(f"checkpoint {path} is damaged (its arrays do not match their checksum): "
                              "restore it from a copy or start a new run")
    return arrays, meta


def check_values(arrays: dict[str, np.ndarray], path: str, dtype) -> None:
    """Weights of another dtype would be cast silently, and NaN or infinite ones would only
    train into NaN: refuse both, by name."""
    for k, v in arrays.items():
        if k.startswith(("param/", "optim/")) and k != "optim/t" and v.dtype != np.dtype(dtype):
            raise CheckpointError(f"checkpoint {path} stores {k} as {v.dtype}, not {np.dtype(dtype)}: "
                                  "restore it from a copy, or resume with the --dtype it was made with")
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            raise CheckpointError(f"checkpoint {path} holds NaN or infinite values in {k}: "
                                  "resume from an earlier copy, or start a new run")
