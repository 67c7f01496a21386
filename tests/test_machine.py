"""rnnjit.machine: what the machine has, and the allocator setting the commands use."""

import pytest

from rnnjit.machine import physical_memory, require_fits


def test_require_fits_refuses_more_than_the_ram():
    have = physical_memory()
    if not have:
        pytest.skip("this platform does not say how much RAM it has")
    require_fits(have // 2, "half the RAM")
    with pytest.raises(ValueError, match="more than this machine"):
        require_fits(have * 2, "twice the RAM")


def test_reuse_freed_memory_sets_glibc_malloc():
    """The commands keep freed memory for the next step's workspaces (rnnjit.machine); on glibc
    mallopt accepts both settings, elsewhere the call says it could not."""
    import ctypes.util
    import platform

    from rnnjit.machine import reuse_freed_memory
    if not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c")):
        pytest.skip("mallopt is glibc's")
    assert reuse_freed_memory() is True
