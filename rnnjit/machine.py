"""What this machine has, for checks that refuse impossible sizes before allocating them."""

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
