"""Numba's on-disk cache for rnnjit's compiled functions, stale when any compiled source changes.

Numba keys a cached function on its own file's modification time and size, yet the machine code
it saves holds the code of every compiled function it calls, from whatever file. Edit
``_smallgemm.py`` or ``activations.py`` and ``lstm_forward`` (in ``lstm.py``, untouched) goes on
loading the old products or activations from its cache: the edit has no effect, or half of one.
(Seen here: a bug in a work-in-progress version of the threaded product lived on in a cached
BPTT after the product was fixed, and only BPTT gave wrong gradients.) rnnjit is meant to be read
and changed, so its functions get cache locators whose stamp covers every module of the package
that holds compiled code: an edit to any of them recompiles them all, once.

``install()`` puts the locators in front of Numba's own (the same three places: NUMBA_CACHE_DIR,
the package's ``__pycache__``, the user-wide cache); they take only functions defined under the
``rnnjit`` package, so the user's own Numba code keeps Numba's behaviour. It must run before the
first ``@njit(cache=True)`` of the package is decorated (``kernels/__init__.py`` calls it first).
A Numba whose caching internals differ is left as it is: the cache then works as Numba's does.
"""

import os
import re

from numba.core import caching

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../rnnjit
# a decorator that makes compiled code: @njit, @cuda.jit, @overload, @intrinsic, ...
COMPILED = re.compile(r"^\s*@(numba\.|cuda\.)?(njit|jit|overload|intrinsic|register_jitable)\b", re.MULTILINE)
ALSO = ("kernels/_vector_width.py",)   # no compiled code of its own, but it changes how all of it compiles

_stamp = None


def compiled_sources() -> list[str]:
    """The package's modules whose edits change compiled code: those with a compiling decorator."""
    paths = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(".py"):
                with open(path, encoding="utf-8", errors="replace") as f:
                    if COMPILED.search(f.read()) or os.path.relpath(path, PACKAGE).replace(os.sep, "/") in ALSO:
                        paths.append(path)
    return paths


def package_stamp() -> tuple:
    """(file, mtime, size) of every compiled source, read once per process."""
    global _stamp
    if _stamp is None:
        _stamp = tuple((os.path.relpath(p, PACKAGE), st.st_mtime, st.st_size)
                       for p in compiled_sources() for st in [os.stat(p)])
    return _stamp


class _PackageStamped:
    """A locator for functions of the rnnjit package, whose source stamp is the package's."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(PACKAGE + os.sep):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return package_stamp()


def install() -> bool:
    """Put the package-stamped locators in front of Numba's; False where Numba has no such hook."""
    try:
        classes = caching.CacheImpl._locator_classes
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator)
    except AttributeError:
        return False
    if any(getattr(c, "_rnnjit", False) for c in classes):
        return True
    ours = [type(f"Package{b.__name__}", (_PackageStamped, b), {"_rnnjit": True}) for b in bases]
    classes[:0] = ours
    return True
