"""Numba's cache goes stale with any compiled source of the package (rnnjit/kernels/_cache.py).

Numba's own cache keys a function on its own file only, while the machine code it saves holds
the code of the compiled functions it calls: an edit to a callee's file was not seen by a cached
caller. The test runs a tiny package of two files (a caller in a.py, its callee in b.py) through
rnnjit's locators, in fresh processes: after an edit of b.py only, the caller gives the new
result.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from rnnjit.kernels import _cache
    root, use_ours = sys.argv[1], sys.argv[2] == "ours"
    if use_ours:
        _cache.PACKAGE = root + "/tiny"     # the locators take the functions of this package now
        _cache._stamp = None
    else:                                   # Numba's own locators only
        from numba.core import caching
        caching.CacheImpl._locator_classes[:] = [
            c for c in caching.CacheImpl._locator_classes if not getattr(c, "_rnnjit", False)]
    sys.path.insert(0, root)
    from tiny.a import f
    print(f(1.0))
""")


def _package(root):
    os.makedirs(os.path.join(root, "tiny"))
    files = {"__init__.py": "",
             "a.py": "from numba import njit\nfrom .b import g\n\n\n@njit(cache=True)\ndef f(x):\n    return g(x) + 1.0\n",
             "b.py": "from numba import njit\n\n\n@njit(cache=True)\ndef g(x):\n    return x * 2.0\n"}
    for name, text in files.items():
        with open(os.path.join(root, "tiny", name), "w") as f:
            f.write(text)


def _edit_callee(root):
    path = os.path.join(root, "tiny", "b.py")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("x * 2.0", "x * 3.0"))
    st = os.stat(path)
    os.utime(path, (st.st_atime + 5, st.st_mtime + 5))   # a clock that does not tick between writes


def _run(root, which):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}   # the in-tree cache
    out = subprocess.run([sys.executable, "-c", SCRIPT, root, which], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


def test_an_edited_callee_recompiles_its_cached_callers(tmp_path):
    root = str(tmp_path / "ours")
    _package(root)
    assert _run(root, "ours") == 3.0          # compiled, and cached
    assert _run(root, "ours") == 3.0          # loaded from the cache
    _edit_callee(root)
    assert _run(root, "ours") == 4.0          # the caller's cache is stale: 1 * 3 + 1


def test_numbas_own_cache_keeps_a_stale_caller(tmp_path):
    """What the locators are for: with Numba's alone, the cached caller still has the old callee.
    (Should a later Numba see callees' edits, this test fails, and _cache.py can go.)"""
    root = str(tmp_path / "numba")
    _package(root)
    assert _run(root, "numba") == 3.0
    _edit_callee(root)
    assert _run(root, "numba") == 3.0
