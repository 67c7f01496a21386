"""What this machine has, for checks that refuse impossible sizes before allocating them, and a
setting of its C allocator that the commands use."""

import os


def physical_memory() -> int:
    """Bytes of RAM on this machine (0 where the platform cannot say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def require_fits(nbytes: int, what: str) -> None:
    """ValueError (one line) if ``nbytes`` is more than this machine's RAM: an allocation that
    size would fail, or worse, creep on until the kernel kills the process."""
    have = physical_memory()
    if have and nbytes > have:
        raise ValueError(f"{what} would need {nbytes / 2**30:,.0f} GiB, more than this machine's "
                         f"{have / 2**30:,.0f} GiB: choose smaller sizes")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20   # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit machines


def reuse_freed_memory(keep_bytes: int = 1 << 30) -> bool:
    """Ask glibc's malloc to keep freed memory for the next allocation instead of handing it back
    to the operating system. Returns whether it could (False off glibc).

    Each forward and backward call allocates its workspaces (gates, states, their gradients:
    26 MB of gates for an LSTM layer with B = 32, H = 512, T = 100) and the next call frees
    them. Depending on what the process allocated before, glibc serves such blocks from fresh
    mmap'd pages or hands the top of its heap back to the kernel, and then every call's
    workspaces are new pages that the kernel zeroes on first touch. In a long ``rnnjit bench``
    run that made a 2-layer B = 32, H = 512 LSTM's forward pass 105 ms instead of 88 (torch: 90).
    With this, blocks up to 32 MB come from the heap and up to ``keep_bytes`` of free heap is
    kept, so a step's workspaces reuse the last step's pages. It changes the whole process's
    allocator, so importing rnnjit does not do it: the ``rnnjit`` command and the dashboard
    call it at start, and a script may too. (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_
    in the environment, or jemalloc/tcmalloc, do the same for any program.)
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and
                mallopt(_M_TRIM_THRESHOLD, min(int(keep_bytes), 2**31 - 1)))
