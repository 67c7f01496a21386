"""The caching device-memory pool (rnnjit/kernels/cuda/memory.py), without a GPU: the manager runs
on numba-cuda's real pointer classes (AutoFreePointer, OwnedPointer, DeviceNDArray, Context) with
the three driver calls it makes (cuMemAlloc, cuMemFree, cuMemGetInfo) replaced by a fake device
of fixed capacity, patched where memory.py looks them up (``memory._driver``)."""

import gc
import threading
import types
import weakref

import numpy as np
import pytest

pytest.importorskip("numba_cuda")
from rnnjit.kernels import cuda as kcuda  # noqa: E402
from rnnjit.kernels.cuda import memory  # noqa: E402

if not memory._HAVE_EMM:
    pytest.skip("numba.cuda is the simulator here (NUMBA_ENABLE_CUDASIM=1), which has no memory managers; "
                "run this module without it", allow_module_level=True)

from numba.cuda.cudadrv import driver as _drv  # noqa: E402
from numba.cuda.cudadrv.devicearray import DeviceNDArray  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
OOM = _drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY


class FakeDevice:
    """cuMemAlloc/cuMemFree/cuMemGetInfo of a device with ``capacity`` bytes; records every call."""

    def __init__(self, capacity=64 * MiB):
        self.capacity = capacity
        self.live = {}          # address -> size
        self.allocs = []        # sizes asked of cuMemAlloc (successful or not)
        self.freed = []         # addresses given to cuMemFree
        self.ooms = 0
        self._next = 1 << 32

    def cuMemAlloc(self, size):
        self.allocs.append(size)
        if sum(self.live.values()) + size > self.capacity:
            self.ooms += 1
            raise _drv.CudaAPIError(OOM, "fake out of memory")
        addr, self._next = self._next, self._next + size + 4096
        self.live[addr] = size
        return _drv.binding.CUdeviceptr(addr)

    def cuMemFree(self, ptr):
        assert int(ptr) in self.live, f"cuMemFree of {int(ptr):#x}, which is not allocated"
        del self.live[int(ptr)]
        self.freed.append(int(ptr))

    def cuMemGetInfo(self):
        return self.capacity - sum(self.live.values()), self.capacity


class FakeContext:
    """What the pointers need of a context: something to hold a weak proxy to."""


@pytest.fixture(scope="module", autouse=True)
def _quick_gc():
    """gc.collect() skips what existed before (Numba's many objects): a collect takes microseconds."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def dev(monkeypatch):
    fake = FakeDevice()
    monkeypatch.setattr(memory, "_driver", fake)
    monkeypatch.setattr(memory, "_live", weakref.WeakSet())
    return fake


@pytest.fixture
def pool(dev):
    ctx = FakeContext()
    mgr = memory.CachingMemoryManager(context=ctx)
    mgr._test_ctx = ctx  # the manager holds the context strongly in Numba too
    mgr.initialize()
    yield mgr
    gc.collect()


def addr(p):
    return p.device_pointer_value


# -- size classes -------------------------------------------------------------------------------

def test_size_classes_round_to_512_bytes_up_to_1mib_then_to_2mib():
    cases = {0: 512, 1: 512, 512: 512, 513: 1024, 1000: 1024, MiB - 1: MiB, MiB: MiB,
             MiB + 1: 2 * MiB, 2 * MiB: 2 * MiB, 2 * MiB + 1: 4 * MiB, 5 * MiB: 6 * MiB}
    assert {n: memory.size_class(n) for n in cases} == cases
    with pytest.raises(ValueError):
        memory.size_class(-1)


def test_a_request_asks_the_driver_for_its_rounded_size_and_reports_its_own(pool, dev):
    p = pool.memalloc(1000)
    q = pool.memalloc(3 * MiB)
    assert dev.allocs == [1024, 4 * MiB]
    assert (p.size, q.size) == (1000, 3 * MiB)  # the pointer keeps the size asked for


# -- reuse ----------------------------------------------------------------------------------------

def test_a_freed_block_serves_the_next_request_of_its_class_without_cuMemAlloc(pool, dev):
    p = pool.memalloc(1000)
    first = addr(p)
    del p
    gc.collect()
    assert dev.freed == []  # kept, not freed
    q = pool.memalloc(600)  # 600 -> 1024 too
    assert addr(q) == first
    assert dev.allocs == [1024]
    assert pool.stats()["hits"] == 1


def test_a_block_is_not_reused_while_the_array_or_a_view_of_it_is_alive(pool, dev):
    arr = DeviceNDArray(shape=(250,), strides=(4,), dtype=np.float32, gpu_data=pool.memalloc(1000))
    first = addr(arr.gpu_data)
    view = arr.gpu_data.view(40, 400)  # what arr[10:100] makes of its memory
    other = pool.memalloc(1000)
    assert addr(other) != first
    del arr
    gc.collect()
    busy = pool.memalloc(1000)  # the view still holds the block
    assert addr(busy) != first
    del view
    gc.collect()
    again = pool.memalloc(1000)
    assert addr(again) == first
    assert len(dev.allocs) == 3


def test_size_classes_do_not_share_blocks(pool, dev):
    p = pool.memalloc(1000)   # class 1024
    del p
    gc.collect()
    q = pool.memalloc(2000)   # class 2048: a new block, the 1024 one stays cached
    assert dev.allocs == [1024, 2048]
    s = pool.stats()
    assert (s["hits"], s["misses"], s["bytes_cached"], s["blocks_cached"]) == (0, 2, 1024, 1)
    del q


def test_a_block_given_back_in_another_thread_is_reused(pool, dev):
    """Finalizers run wherever the last reference dies (the TUI's worker thread, the GC)."""
    box = [pool.memalloc(5000)]
    first = addr(box[0])
    t = threading.Thread(target=lambda: (box.clear(), gc.collect()))
    t.start()
    t.join()
    assert addr(pool.memalloc(5000)) == first
    assert dev.allocs == [5120]


# -- out of memory --------------------------------------------------------------------------------

def test_out_of_memory_frees_the_cached_blocks_and_retries_once(pool, dev):
    dev.capacity = 5 * MiB
    p = pool.memalloc(3 * MiB)       # 4 MiB block
    cached = addr(p)
    del p
    gc.collect()
    q = pool.memalloc(2 * MiB)       # 4 + 2 > 5: OOM, the cached 4 MiB goes, the retry fits
    assert dev.ooms == 1
    assert dev.freed == [cached]
    assert dev.allocs == [4 * MiB, 2 * MiB, 2 * MiB]
    s = pool.stats()
    assert (s["oom_flushes"], s["bytes_cached"], s["bytes_in_use"]) == (1, 0, 2 * MiB)
    del q


def test_out_of_memory_twice_raises_and_other_errors_do_not_flush(pool, dev):
    dev.capacity = 3 * MiB
    p = pool.memalloc(512 * KiB)
    del p
    gc.collect()
    with pytest.raises(_drv.CudaAPIError) as e:
        pool.memalloc(4 * MiB)
    assert e.value.code == OOM
    assert dev.allocs == [512 * KiB, 4 * MiB, 4 * MiB]  # tried twice, no more
    assert len(dev.freed) == 1                          # the cache was flushed in between

    def invalid(size):
        raise _drv.CudaAPIError(_drv.binding.CUresult.CUDA_ERROR_INVALID_VALUE, "fake")

    p = pool.memalloc(512 * KiB)
    del p
    gc.collect()
    dev.cuMemAlloc = invalid
    with pytest.raises(_drv.CudaAPIError):
        pool.memalloc(8 * KiB)
    assert len(dev.freed) == 1 and pool.stats()["blocks_cached"] == 1


def test_out_of_memory_inside_defer_cleanup_frees_nothing(pool, dev):
    dev.capacity = 5 * MiB
    p = pool.memalloc(3 * MiB)
    del p
    gc.collect()
    with pool.defer_cleanup():
        with pytest.raises(_drv.CudaAPIError):
            pool.memalloc(2 * MiB)
    assert dev.freed == []
    pool.memalloc(2 * MiB)  # outside: flushed and retried
    assert len(dev.freed) == 1


# -- reset, counters, memory info ----------------------------------------------------------------

def test_reset_frees_cached_and_in_use_blocks(pool, dev):
    live = pool.memalloc(1000)
    cached = pool.memalloc(3 * MiB)
    del cached
    gc.collect()
    assert len(dev.live) == 2
    pool.reset()
    assert dev.live == {}           # both went to cuMemFree
    s = pool.stats()
    assert (s["bytes_cached"], s["bytes_in_use"], s["blocks_in_use"]) == (0, 0, 0)
    del live                        # its memory is gone already: nothing comes back
    gc.collect()
    assert pool.stats()["blocks_cached"] == 0
    pool.memalloc(1000)
    assert len(dev.allocs) == 3


def test_a_block_given_back_after_reset_is_not_reused(pool, dev):
    """A pointer object that outlives reset() (held strongly elsewhere) belongs to the context
    the reset freed: when it finally dies its block must not enter the pool."""
    p = pool.memalloc(1000)
    stale = addr(p)
    mem = pool.allocations[stale]   # a strong reference Numba does not keep
    pool.reset()
    del p, mem
    gc.collect()
    assert addr(pool.memalloc(1000)) != stale
    assert pool.stats()["hits"] == 0


def test_counters_follow_allocations_and_returns(pool, dev):
    a = pool.memalloc(100)          # miss, 512
    b = pool.memalloc(2 * MiB)      # miss, 2 MiB
    del a
    gc.collect()
    c = pool.memalloc(300)          # hit
    assert pool.stats() == {"hits": 1, "misses": 2, "bytes_in_use": 512 + 2 * MiB, "blocks_in_use": 2,
                            "bytes_cached": 0, "blocks_cached": 0, "oom_flushes": 0}
    del b, c
    gc.collect()
    assert pool.stats() == {"hits": 1, "misses": 2, "bytes_in_use": 0, "blocks_in_use": 0,
                            "bytes_cached": 512 + 2 * MiB, "blocks_cached": 2, "oom_flushes": 0}
    assert pool.empty_cache() == 512 + 2 * MiB
    assert dev.live == {} and pool.stats()["bytes_cached"] == 0


def test_memory_info_and_initialize_read_cuMemGetInfo(pool, dev):
    pool.memalloc(1000)
    info = pool.get_memory_info()
    assert (info.free, info.total) == (64 * MiB - 1024, 64 * MiB)
    assert pool.deallocations.memory_capacity == 64 * MiB
    assert pool.interface_version == 1


# -- install --------------------------------------------------------------------------------------

@pytest.fixture
def numba_state(monkeypatch, dev):
    """A process where Numba has made no context yet and no manager is chosen; restored after."""
    monkeypatch.setattr(_drv, "_memory_manager", None)
    monkeypatch.setattr(_drv.driver, "devices", {})
    monkeypatch.setattr(memory._config, "CUDA_MEMORY_MANAGER", "default")
    monkeypatch.setattr(memory._config, "CUDA_PER_THREAD_DEFAULT_STREAM", 0)
    monkeypatch.setattr(memory, "simulator_enabled", lambda: False)
    monkeypatch.delenv("RNNJIT_CUDA_POOL", raising=False)
    return monkeypatch


def test_install_sets_the_manager_that_new_contexts_use(numba_state, dev):
    assert memory.stats() is None
    assert memory.install() is True
    assert _drv._memory_manager is memory.CachingMemoryManager
    assert memory.install() is True  # already installed
    ctx = _drv.Context(device=None, handle=None)  # what Device.get_primary_context does first
    assert isinstance(ctx.memory_manager, memory.CachingMemoryManager)
    ctx.prepare_for_use()
    p = ctx.memalloc(1000)
    del p
    gc.collect()
    ctx.memalloc(1000)
    assert dev.allocs == [1024]
    assert memory.stats()["hits"] == 1


def test_install_declines_when_a_context_exists(numba_state):
    numba_state.setattr(_drv.driver, "devices", {0: types.SimpleNamespace(primary_context=None)})
    numba_state.setattr(_drv, "_memory_manager", _drv.NumbaCUDAMemoryManager)
    assert memory.install() is True  # a device seen, no context yet: fine
    numba_state.setattr(_drv, "_memory_manager", _drv.NumbaCUDAMemoryManager)
    numba_state.setattr(_drv.driver, "devices", {0: types.SimpleNamespace(primary_context=object())})
    assert memory.install() is False
    assert _drv._memory_manager is _drv.NumbaCUDAMemoryManager


@pytest.mark.parametrize("why", ["env", "simulator", "other plugin", "configured plugin", "per-thread stream"])
def test_install_declines_and_changes_nothing(numba_state, why):
    if why == "env":
        numba_state.setenv("RNNJIT_CUDA_POOL", "0")
    elif why == "simulator":
        numba_state.setattr(memory, "simulator_enabled", lambda: True)
    elif why == "other plugin":
        numba_state.setattr(_drv, "_memory_manager", FakeContext)
    elif why == "configured plugin":
        numba_state.setattr(memory._config, "CUDA_MEMORY_MANAGER", "rmm")
    else:
        numba_state.setattr(memory._config, "CUDA_PER_THREAD_DEFAULT_STREAM", 1)
    before = _drv._memory_manager
    assert memory.install() is False
    assert _drv._memory_manager is before
    assert memory.stats() is None


def test_require_cuda_installs_the_pool_on_a_gpu_only(monkeypatch):
    calls = []
    monkeypatch.setattr(kcuda, "_why_unavailable", lambda: None)
    monkeypatch.setattr(memory, "install", lambda: calls.append(1) or True)
    monkeypatch.setattr(kcuda, "simulator_enabled", lambda: True)
    kcuda.require_cuda()
    assert calls == []
    monkeypatch.setattr(kcuda, "simulator_enabled", lambda: False)
    kcuda.require_cuda()
    assert calls == [1]
