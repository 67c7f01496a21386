"""glibc's malloc, told to keep the large arrays a training step frees for the next step.

    KEEPS_FREED_ARRAYS   whether ``keep_freed_arrays`` set it (Linux with glibc, and no
                         MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES set)

A training step allocates the same arrays every time: the gates of every step, their gradients,
the logits (6.5 MB each for an LSTM at B = 32, H = 128, T = 100), and frees them at its end.
glibc gives a block above its mmap threshold fresh pages from the kernel, and gives the pages
back when it is freed; the next step then takes a page fault for every 4 KB it writes. The
threshold starts at 128 KB and rises to the size of the largest mmapped block freed, at most
32 MB, and the heap is trimmed back to the kernel once more than twice that is free at its top:
a step that frees several 6.5 MB arrays still hands its pages back, and which arrays came from
where depends on the order of earlier frees (an RNN's training step at B = 128, H = 128 ran in 33
or 41 ms depending on whether its forward freed a large workspace first).

``keep_freed_arrays`` sets the threshold to 32 MB and the trim threshold to 64 MB with
``mallopt``: the values glibc itself reaches after a 32 MB block is freed, fixed from the start.
Blocks up to 32 MB then come from the heap and go back to it, and a process keeps up to 64 MB of
freed memory for its next step. On the 2-core Xeon, 1 thread, float32, T = 100, one process
each (``rnnjit bench``'s model): LSTM B = 32, H = 128 training step 25.8-27.7 -> 17.5-17.7 ms,
forward 5.9-6.4 -> 4.8-5.0 ms; B = 128, H = 512 958-1004 -> 911-964 ms (its 105 MB of gates are
above any threshold); RNN B = 128, H = 128 40-43 -> 30.5-31.7 ms. A peer in the same process
(torch in ``rnnjit bench``) allocates through the same malloc and gets the same setting.

It is set when ``rnnjit.kernels`` is imported, for the whole process, as the OpenMP nesting is
(``_pool.py``); setting any of the variables above leaves malloc as they say instead.
"""

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20     # glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD   # what glibc pairs with it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # malloc.h
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_arrays() -> bool:
    """Set glibc's mmap and trim thresholds (see the module's docstring); True when both were set."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _ENVIRONMENT):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version    # glibc's own: musl has a mallopt that does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


KEEPS_FREED_ARRAYS = keep_freed_arrays()
