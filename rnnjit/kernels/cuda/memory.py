"""A caching device-memory pool for numba-cuda: an External Memory Management (EMM) plugin.

The problem. A training step on the GPU makes dozens of temporary device arrays (activations,
caches, the step's gradients, scratch for the reductions), each a ``cuda.device_array``. Numba's
own memory manager calls ``cuMemAlloc`` for every one of them (tens of microseconds each) and
frees them through a deferred list that calls ``cuMemFree``, which waits for the device, every
few frees. Since the shapes of one step are the shapes of the next, the same sizes are asked for
again and again: like PyTorch's and CuPy's allocators, ``CachingMemoryManager`` keeps a freed
block and hands it to the next request of its size class, so that after the first step a step
calls neither ``cuMemAlloc`` nor ``cuMemFree``.

Size classes (``size_class``): a request is rounded up to a multiple of 512 bytes up to 1 MiB
(at least 512 bytes: a 0-byte request gets 512), and to a multiple of 2 MiB above it. A free
block serves only requests of exactly its class (no splitting, no best fit): rnnjit asks for the
same few shapes every step, so exact classes find their blocks, and the memory wasted by rounding
is under 512 bytes per small block and under 2 MiB per large one. The pool has no size limit;
when ``cuMemAlloc`` reports CUDA_ERROR_OUT_OF_MEMORY it frees every cached block (``cuMemFree``)
and tries once more (as Numba's ``_attempt_allocation`` flushes its deferred frees), unless
``defer_cleanup()`` is active, in which case it frees nothing, as Numba's manager would not.

Why reuse is safe. A block goes back to the pool when the last Python reference to its memory
dies (the array and every view of it), which can be while kernels queued earlier still use it.
rnnjit queues all its work (kernel launches, copies, memsets) on the default stream, and so does
whoever gets the block next: that work starts only after everything queued before it on the same
stream has finished, so it cannot overwrite data an earlier kernel still reads. This is the
argument PyTorch's caching allocator makes per stream. A CUDA graph replays on a stream of its
own (``graphs.py``), a blocking one: the legacy default stream waits for its work and it waits
for the default stream's, so the order above holds; and the arrays a graph uses stay referenced
by it, so their blocks do not come back to the pool while it lives. Work on other streams would need more
(record an event on each stream that used a block, and reuse the block only once those events
have completed); rnnjit does not use other streams, and ``install()`` declines when Numba's
per-thread default streams are switched on (NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM=1: each thread
then has its own default stream, and a block freed by one thread's work could be reused by
another thread's before that work has finished). Freeing cached blocks with ``cuMemFree`` (on
out-of-memory, ``reset()``) relies on ``cuMemFree`` waiting for the device, as every deferred
free of Numba's own manager does. A block shared with another process by IPC would see its
memory reused after the pool gets it back; rnnjit does not use IPC.

Finalizers (which give blocks back) can run in any thread, from the garbage collector, even in
the middle of an allocation in the same thread; so they never take a lock: they append to a
queue (``collections.deque.append`` is atomic), which the allocating side drains under its lock.

Installing. ``rnnjit.kernels.cuda.require_cuda()`` calls ``install()`` when it finds a GPU (not
in the simulator, which has no memory managers). A manager applies to the CUDA contexts created
after it is set, so ``install()`` must run before the first device array: when a context already
exists it declines (returns False). It also declines when another EMM plugin was chosen
(NUMBA_CUDA_MEMORY_MANAGER or ``set_memory_manager``). Switch the pool off with
``RNNJIT_CUDA_POOL=0`` in the environment (``false``, ``off`` and ``no`` work too); Numba's own
manager then allocates as before.

Counters: ``rnnjit.kernels.cuda.memory.stats()`` returns ``hits`` (requests served from the
pool), ``misses`` (requests that called ``cuMemAlloc``), ``bytes_in_use`` and ``blocks_in_use``
(blocks handed out and still referenced, in rounded bytes), ``bytes_cached`` and
``blocks_cached`` (free blocks the pool holds), ``oom_flushes`` (times an out-of-memory error
emptied the pool), as a dict summed over the pool's contexts, or ``None`` when the pool is not
installed. ``cuMemGetInfo`` (``get_memory_info()``) counts the cached blocks as used.
"""

import os
import threading
import weakref
from collections import deque

from . import simulator_enabled

__all__ = ["CachingMemoryManager", "size_class", "install", "installed", "stats"]

SMALL_LIMIT = 1 << 20       # requests up to 1 MiB ...
SMALL_STEP = 512            # ... round up to a multiple of 512 bytes,
LARGE_STEP = 2 << 20        # larger ones to a multiple of 2 MiB

_OFF = ("0", "false", "off", "no")

try:  # the real driver; the simulator's ``numba.cuda.cudadrv.driver`` has no memory managers
    from numba.cuda.core import config as _config
    from numba.cuda.cudadrv import driver as _drv
    from numba.cuda.cudadrv.driver import (
        AutoFreePointer,
        CudaAPIError,
        GetIpcHandleMixin,
        HostOnlyCUDAMemoryManager,
        MemoryInfo,
        NumbaCUDAMemoryManager,
    )
    _driver = _drv.driver  # the driver functions (cuMemAlloc, cuMemFree, cuMemGetInfo), looked up here
    _OOM = _drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY
    _HAVE_EMM = True
except ImportError:
    _HAVE_EMM = False

    class GetIpcHandleMixin:  # stand-ins, so that this module imports under the simulator
        pass

    class HostOnlyCUDAMemoryManager:
        pass


def size_class(nbytes: int) -> int:
    """The size of the block that serves a request of ``nbytes``: a multiple of 512 bytes (at
    least 512) up to 1 MiB, a multiple of 2 MiB above."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"negative allocation size {nbytes}")
    step = SMALL_STEP if nbytes <= SMALL_LIMIT else LARGE_STEP
    return max(SMALL_STEP, -(-nbytes // step) * step)


_live = weakref.WeakSet()   # the managers of live contexts (not set_memory_manager's probe)
_install_lock = threading.Lock()


class CachingMemoryManager(GetIpcHandleMixin, HostOnlyCUDAMemoryManager):
    """Numba EMM plugin: device memory from a cache of freed blocks, one free list per size
    class (module docstring); host memory (pinned, mapped, managed) as Numba does it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._free = {}                 # size class -> [device pointer], reused last in first out
        self._returned = deque()        # (epoch, size class, pointer) from finalizers, lock-free
        self._epoch = 0                 # bumped by reset(): blocks of an older epoch are gone
        self.hits = self.misses = self.oom_flushes = 0
        self.bytes_in_use = self.blocks_in_use = 0
        self.bytes_cached = self.blocks_cached = 0
        if self.context is not None:
            _live.add(self)

    # -- the EMM interface ------------------------------------------------------------------

    @property
    def interface_version(self):
        return 1

    def initialize(self):
        # As NumbaCUDAMemoryManager: the deferred frees of host allocations flush at a share of
        # the device's memory, known once the context is current.
        if self.deallocations.memory_capacity == _drv._SizeNotSet:
            self.deallocations.memory_capacity = self.get_memory_info().total

    def get_memory_info(self):
        free, total = _driver.cuMemGetInfo()
        return MemoryInfo(free=free, total=total)

    def memalloc(self, size):
        rounded = size_class(size)
        ptr = self._take(rounded)
        if ptr is None:
            ptr = self._attempt_allocation(lambda: _driver.cuMemAlloc(rounded))
            with self._lock:
                self.bytes_in_use += rounded
                self.blocks_in_use += 1
        key = int(ptr)
        finalizer = _return_to_pool(self.allocations, self._returned, key, ptr, rounded, self._epoch)
        mem = AutoFreePointer(weakref.proxy(self.context), ptr, size, finalizer=finalizer)
        self.allocations[key] = mem
        return mem.own()

    def _attempt_allocation(self, allocator):
        """``allocator()``; on out-of-memory, flush Numba's deferred host frees and this pool,
        then try once more (a second failure raises). Also serves managed and mapped memory."""
        try:
            return allocator()
        except CudaAPIError as e:
            if e.code != _OOM:
                raise
            self.deallocations.clear()          # does nothing inside defer_cleanup()
            if not self.deallocations.is_disabled:
                with self._lock:
                    self.oom_flushes += 1
                self.empty_cache()
            return allocator()

    def reset(self):
        """Free every block: Numba's reset drops the pointers it tracks, whose finalizers give
        their blocks back, and then the whole pool goes to ``cuMemFree``. A block handed out
        before the reset and given back after it is forgotten (the context's reset freed it)."""
        super().reset()
        with self._lock:
            self._drain()
            self._epoch += 1
            self.bytes_in_use = self.blocks_in_use = 0
        self.empty_cache()

    # -- the pool ---------------------------------------------------------------------------

    def _drain(self):
        """Move the blocks finalizers gave back onto the free lists (call with the lock held)."""
        returned = self._returned
        while returned:
            epoch, rounded, ptr = returned.popleft()
            if epoch != self._epoch:
                continue
            self._free.setdefault(rounded, []).append(ptr)
            self.bytes_in_use -= rounded
            self.blocks_in_use -= 1
            self.bytes_cached += rounded
            self.blocks_cached += 1

    def _take(self, rounded):
        """A cached block of class ``rounded``, or None (counted as a hit or a miss)."""
        with self._lock:
            self._drain()
            blocks = self._free.get(rounded)
            if not blocks:
                self.misses += 1
                return None
            ptr = blocks.pop()
            self.hits += 1
            self.bytes_cached -= rounded
            self.blocks_cached -= 1
            self.bytes_in_use += rounded
            self.blocks_in_use += 1
            return ptr

    def empty_cache(self) -> int:
        """``cuMemFree`` every cached block (blocks in use stay); returns the bytes freed."""
        with self._lock:
            self._drain()
            blocks = [ptr for ptrs in self._free.values() for ptr in ptrs]
            freed = self.bytes_cached
            self._free = {}
            self.bytes_cached = self.blocks_cached = 0
        for ptr in blocks:  # outside the lock: cuMemFree waits for the device
            _driver.cuMemFree(ptr)
        return freed

    def stats(self) -> dict:
        with self._lock:
            self._drain()
            return {"hits": self.hits, "misses": self.misses,
                    "bytes_in_use": self.bytes_in_use, "blocks_in_use": self.blocks_in_use,
                    "bytes_cached": self.bytes_cached, "blocks_cached": self.blocks_cached,
                    "oom_flushes": self.oom_flushes}


def _return_to_pool(allocations, returned, key, ptr, rounded, epoch):
    """The finalizer of one block: forget its pointer object and queue the block for the pool.
    It runs when the last reference to the memory dies, in whatever thread that happens; it
    holds no reference to the manager and takes no lock."""

    def core():
        allocations.pop(key, None)
        returned.append((epoch, rounded, ptr))

    return core


def _context_exists() -> bool:
    """True once Numba has made a CUDA context (``Device.get_primary_context``, the only place
    that makes one, binds the memory manager then). Reads the devices the driver has seen
    without initialising anything."""
    return any(getattr(dev, "primary_context", None) is not None
               for dev in list(_drv.driver.devices.values()))


def installed() -> bool:
    """True when Numba makes new contexts with ``CachingMemoryManager``."""
    return _HAVE_EMM and _drv._memory_manager is CachingMemoryManager


def install() -> bool:
    """Make ``CachingMemoryManager`` Numba's memory manager; True if it is (now or already).
    False, doing nothing, when RNNJIT_CUDA_POOL=0, in the simulator, with per-thread default
    streams, when another EMM plugin was chosen, or when a CUDA context already exists (its
    manager is fixed; the pool would not apply to it)."""
    if os.environ.get("RNNJIT_CUDA_POOL", "").strip().lower() in _OFF:
        return False
    if not _HAVE_EMM or simulator_enabled():
        return False
    with _install_lock:
        current = _drv._memory_manager
        if current is CachingMemoryManager:
            return True
        if current not in (None, NumbaCUDAMemoryManager) or _config.CUDA_MEMORY_MANAGER != "default":
            return False
        if _config.CUDA_PER_THREAD_DEFAULT_STREAM or _context_exists():
            return False
        _drv.set_memory_manager(CachingMemoryManager)
        return True


def stats():
    """The pool's counters (module docstring), summed over its contexts; None when not installed."""
    if not installed():
        return None
    total = dict.fromkeys(("hits", "misses", "bytes_in_use", "blocks_in_use", "bytes_cached",
                           "blocks_cached", "oom_flushes"), 0)
    for manager in list(_live):
        for k, v in manager.stats().items():
            total[k] += v
    return total
