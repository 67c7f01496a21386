"""Thread pools: one call sets them all, at any time (``--threads`` of train and bench).

rnnjit's kernels call numpy's OpenBLAS; Numba's ``np.dot`` calls SciPy's; Numba has its own
pool; threadpoolctl reaches the rest. Environment variables only help before the libraries load,
so the setters below are called directly and each reports what it now uses.
"""

import os
import sys

MAX_THREADS = 4096   # more is a typo: the pools' C setters take an int, and no machine has that many cores

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_threads(n: int) -> dict:
    """Limit every thread pool rnnjit touches to n threads; returns what each one reports.

    The environment variables only help when set before the libraries load (python -m rnnjit
    bench imports numpy late enough for most of them); the calls below work at any time: numpy's
    OpenBLAS (the one rnnjit's kernels call), SciPy's OpenBLAS (Numba's np.dot), Numba's own
    pool (the recurrent products split over it, ``kernels/_smallgemm.py``; one thread where
    Numba has only its workqueue pool, which is not safe for two Python threads at once), and
    threadpoolctl when it is installed (torch, a benchmark peer, is set by the bench).
    """
    for var in _THREAD_VARS:
        if var != "NUMBA_NUM_THREADS" or "numba" not in sys.modules:
            os.environ[var] = str(n)
    report = {}
    from .kernels import _blas, _pool
    _blas.set_num_threads(n)
    report["numpy_openblas"] = _blas.get_num_threads()
    report["scipy_openblas"] = _set_scipy_openblas_threads(n)
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS) if _pool.THREADSAFE else 1)
    report["numba"] = numba.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
        report["threadpoolctl"] = n
    except ImportError:
        pass
    return report


def _set_scipy_openblas_threads(n):
    import ctypes
    import glob
    try:
        import scipy
    except ImportError:
        return None
    base = os.path.dirname(scipy.__file__)
    for path in glob.glob(os.path.join(base, "..", "scipy.libs", "libscipy_openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            f = getattr(lib, name, None)
            if f is not None:
                f.argtypes = [ctypes.c_int]
                f(int(n))
                g = getattr(lib, name.replace("set", "get"), None)
                return int(g()) if g is not None else n
    return None
