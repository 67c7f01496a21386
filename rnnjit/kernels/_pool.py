"""Numba's thread pool, started once when the kernels load, and made a good neighbour.

    num_threads()     the pool's thread count, callable from compiled code (and cacheable)
    THREADSAFE        False for Numba's fallback pool, which stays on one thread
    NESTING_LIMITED   whether ``limit_nesting`` set the OpenMP runtime to one level of parallelism

Starting the pool here, before any kernel is loaded from the cache, defines the C symbol through
which compiled code reads the thread count (``numba.get_num_threads()`` inside ``@njit`` reads it
through a ctypes pointer instead, which Numba cannot cache).

**One level of OpenMP parallelism.** Numba's OpenMP pool (the ``omp`` threading layer) loads the
system's ``libgomp.so.1`` and allows nested parallel regions 255 levels deep. A library imported
later that needs ``libgomp.so.1`` (PyTorch does) gets that same runtime, and with it the nesting:
PyTorch's GRU and RNN on the CPU, which run parallel regions inside parallel regions, then start
threads inside threads, more than there are cores, and wait on each other. On a 2-core machine
with 2 threads, ``import rnnjit`` before ``import torch`` made ``torch.nn.GRU``'s forward (B = 32,
H = 128, T = 100) take 230-260 ms instead of 5.4-6.8 ms; its own one-thread time is 7.0 ms. rnnjit
never nests its parallel loops (a batch share runs its products on one thread), so after starting
the pool ``limit_nesting`` sets the runtime back to one active level, OpenMP's default: a parallel
region inside another runs on the thread that meets it. Setting ``OMP_MAX_ACTIVE_LEVELS`` or
``OMP_NESTED`` in the environment keeps the runtime as that asks instead.
"""

import ctypes
import importlib.util
import os

import numba

try:
    from numba.np.ufunc.parallel import _iget_num_threads as num_threads
except ImportError:    # a Numba without it: the same count, at the price of recompiling every process
    num_threads = numba.get_num_threads

numba.get_num_threads()     # starts the pool (and so defines the symbol) before any kernel loads

# Numba's fallback pool (no OpenMP, no TBB) aborts the process when two Python threads run parallel
# code at once (a training thread and a sampling one): there the products stay on one thread.
THREADSAFE = numba.threading_layer() != "workqueue"
if not THREADSAFE:
    numba.set_num_threads(1)


def limit_nesting() -> bool:
    """Set the OpenMP runtime of Numba's pool to one active level; True when it was set."""
    if numba.threading_layer() != "omp" or "OMP_MAX_ACTIVE_LEVELS" in os.environ or "OMP_NESTED" in os.environ:
        return False
    spec = importlib.util.find_spec("numba.np.ufunc.omppool")
    if spec is None or not spec.origin:
        return False
    try:
        # the pool's extension module is loaded already: this returns its handle, and a symbol
        # looked up through it is found in the OpenMP runtime that module was linked against
        setter = ctypes.CDLL(spec.origin).omp_set_max_active_levels
    except (OSError, AttributeError):
        return False
    setter.argtypes = [ctypes.c_int]
    setter(1)
    return True


NESTING_LIMITED = limit_nesting()
