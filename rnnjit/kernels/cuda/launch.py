"""How the recurrent work is split over blocks and threads, and how the persistent kernels launch.

The time loop of an RNN is a chain: step t needs all of h_{t-1}. Launching one kernel per step
costs a launch (several microseconds) per step and loses to cuDNN on short, small problems, so
each cell has ONE persistent kernel per direction that runs the whole time loop, with a grid-wide
barrier (``cuda.cg.this_grid().sync()``, a cooperative launch) between steps.

The work of one step is a matrix product plus gate math:

    pre[b, g*H + j] = sum_k h_{t-1}[b, k] * W_hh[g*H + j, k]        (forward; G gate blocks)
    dh[b, j]        = sum_k dA_t[b, k]    * W_hh[k, j]               (backward; k over G*H)

followed by elementwise gate math for every (b, j). It is cut into **tiles**: a tile is JT
consecutive hidden units j times BT consecutive batch rows b, *all G gates* of those units.
Owning every gate of a unit is what lets a tile finish the gate math on its own, with no
exchange between blocks inside a step.

One tile is one block of JT x KS threads (``threadIdx.x`` = unit within the tile,
``threadIdx.y`` = a slice of the k axis):

  1. split-K product: thread (x, y) sums k = y, y + KS, y + 2 KS, ... for its unit, for all G
     gates and all BT batch rows, in G*BT registers. A warp (32 consecutive thread ids: JT
     units times 32/JT k-slices) reads runs of JT consecutive units from rows of W (whole
     32-byte sectors for JT >= 8) and h values that many lanes share (broadcasts), and every W
     value it loads serves BT batch rows.
  2. the KS partial sums meet in shared memory (``cuda.syncthreads()``);
  3. thread (x, y) for y < BT adds them up and does the gate math for unit x, batch row y
     (BT <= KS). Everything the gate math reads besides the product (the input projections,
     the biases) is loaded before step 1, so that its memory latency overlaps the product.

If there are more tiles than blocks that can be resident at once (a cooperative launch requires
all blocks resident), each block loops over tiles ``blockIdx.x, blockIdx.x + gridDim.x, ...``;
every block reaches the grid barrier the same number of times. Under the simulator a cooperative
grid has one block, which then loops over all tiles: the same code path.

**Weights held by the threads.** In step 1 thread (x, y) multiplies the same weights at every
step: its unit's column of W_hh at k = y, y + KS, ... for each gate, KN = ceil(H / KS) values per
gate (backward: KN = ceil(G*H / KS) values of its unit's column of W_hh). Read from global memory
that is a round trip to L2 for every value at every step, on the critical path of a chain of T
steps. So when they are few (G * KN <= ``SETTINGS["own_weights"]``, 128 by default: H <= 1024
for an LSTM with 32 k-slices), each thread loads its weights ONCE, before the time loop, into a
``cuda.local.array`` of compile-time size, and the step reads only h_{t-1} (or dA_{t+1}) from
memory. Where NVVM unrolls the k loop the array lives in registers (KN = 4, an H = 128 forward:
``tests/test_cuda.py`` compiles every kernel to PTX and checks that nothing spills); for longer
loops it sits in local memory, which L1 caches (KN = 32: 512 bytes a thread). This is what
persistent RNN kernels (Diamos et al. 2016, "Persistent RNNs"; cuDNN's persistent algorithms)
do with registers or shared memory. The cap of 128 was measured on an H200 (cuda_check.py
--sweep): an LSTM at B = 1, H = 1024 ran its forward in 1.83 ms with the weights kept against
3.10 ms with a cap of 64, which reads them every step there; when the batch spans several tiles
the cap is 64 (``own_weights`` says why). It
needs every tile of a block to share one range of units: the grid is then a multiple of
``tiles_j`` (``launch_persistent`` trims it; when not even ``tiles_j`` blocks fit, or the weights
are too many, the kernel variant with KN = 0 reads W_hh from memory as before).

Blocks have 256 threads on a GPU (JT x KS = 8 x 32, 16 x 16 or 32 x 8). JT and BT (batch rows per
tile) are chosen per call (``plan``): the most rows per tile (8, 4, 2, 1: each W load then serves
more rows) and the narrowest tiles (8, 16, 32 units) that still make at least one tile per
multiprocessor, so that small batches spread over the whole GPU and large batches reuse every
load of W. The simulator uses blocks of 8 threads, as it runs every thread as a Python thread.

**Staging.** In step 1 thread (x, y) reads its operand (h_{t-1} forward, dA_{t+1} backward) at
k = y, y + KS, ... for BT rows: at B = 32, H = 512 an LSTM backward thread makes 64 x 8 = 512
loads a step, in a loop too long for NVVM to unroll, so few are in flight at a time and each
waits on L2. The LSTM's and the RNN's kernels can instead copy the operand, BT rows x KC*KS
columns (a slab) at a time, into shared memory with the whole block (``tile.load_slab``: consecutive
threads, consecutive columns; all of a slab's loads in flight at once), and run the k loop on
shared memory: KC of a thread's k values a slab, the sums in the same order, so the results do
not change by a bit. Where that pays was measured (``stage_slabs``): 0.57-0.75x the time at
B = 32-64, H = 512, and slower where the loop is short.
"""

import contextlib
import functools
import math
import os
from dataclasses import dataclass

import numpy as np
from numba import config, cuda

from .graphs import queue

# numba-cuda (0.30 at least) registers an overload for ``np.row_stack``, an alias of ``np.vstack``
# that NumPy 2.5 removed; without it the first kernel compile fails with AttributeError. Restore it.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack


def simulating() -> bool:
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def _thread_safe_simulated_shared_arrays():
    """The simulator gives a block's threads one array per ``cuda.shared.array`` call site, made
    by the first thread that gets there: it looks the site up in a dict and, when missing,
    creates and stores the array, with no lock. Two threads that both miss (a thread switch
    between the look-up and the store) end up with different "shared" arrays, and the block
    computes garbage: seen here as rare, load-dependent wrong results of 16-thread tests. This
    replacement does the look-up and the store under one lock (and finds the call site from the
    caller's frame, not from a whole extracted stack). It also accepts an ``alignment`` (which
    the simulator refuses): a GPU needs it for 16-byte shared loads, NumPy's arrays have it."""
    import sys
    import threading

    from numba.core import types
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    from numba.np import numpy_support
    if getattr(FakeCUDAShared.array, "rnnjit_locked", False):
        return
    dynamic, lock = FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0:                            # dynamic shared memory: no call site
            return dynamic(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        site = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(site)
            if res is None:
                res = self._allocations[site] = np.empty(shape, dtype)
        return res
    array.rnnjit_locked = True
    FakeCUDAShared.array = array


if simulating():
    _thread_safe_simulated_shared_arrays()


# Tunables. ``tuning(...)`` overrides them for a block of code (the tests use it to run the
# GPU-sized configuration in the simulator too).
SETTINGS = {
    "jt": None,            # hidden units per tile (threadIdx.x); None: choose per call
    "ks": None,            # k-slices per tile (threadIdx.y); None: threads // jt
    "bt": None,            # batch rows per tile; None: choose per call
    "threads": 8 if simulating() else 256,   # threads per block, jt * ks
    "max_blocks": None,    # cap on the cooperative grid; None: what fits
    "own_weights": 128,    # most W_hh values a thread keeps for the whole loop (0: read them every step)
    "own_weights_batched": 64,   # the same when a block's tiles cover several batch tiles
    # large batches: each step as a register-tiled GEMM with the gate math after it (the cells'
    # *_gemm kernels, stepgemm.py). None: when their tiles fill the GPU (``use_step_gemm``);
    # True/False force it, as RNNJIT_STEP_GEMM=1/0 does.
    "step_gemm": {"1": True, "0": False}.get(os.environ.get("RNNJIT_STEP_GEMM", "")),
    "step_gemm_tile": None,  # (TU, TY, RB, BK); None: STEP_GEMM_TILE
    # the LSTM's and the RNN's split-K kernels: stage each step's operand in shared memory
    # (``stage_slabs``). None: where it was measured faster; True/False force it.
    "stage": None,
    "stage_kc": 2 if simulating() else 16,   # k values a thread takes from one slab
}

# Tiles of the step-as-GEMM kernels: TU units x TY * RB batch rows, threads (TU, TY), each thread
# RB rows of one unit; BK: the k-slab. The simulator's are tiny (one Python thread per GPU thread).
STEP_GEMM_TILE = (2, 2, 2, 2) if simulating() else (16, 16, 4, 16)


@contextlib.contextmanager
def tuning(**kw):
    """Temporarily override ``SETTINGS`` (and ``gemm.SETTINGS`` keys starting with ``gemm_``)."""
    from . import gemm
    old, old_g = dict(SETTINGS), dict(gemm.SETTINGS)
    for k, v in kw.items():
        if k.startswith("gemm_"):
            gemm.SETTINGS[k[5:]] = v
        elif k in SETTINGS:
            SETTINGS[k] = v
        else:
            raise KeyError(k)
    try:
        yield
    finally:
        SETTINGS.clear()
        SETTINGS.update(old)
        gemm.SETTINGS.clear()
        gemm.SETTINGS.update(old_g)


@functools.cache
def sm_count() -> int:
    """Streaming multiprocessors of the current GPU (4 under the simulator, to exercise splits)."""
    if simulating():
        return 4
    return cuda.get_current_device().MULTIPROCESSOR_COUNT


@dataclass(frozen=True)
class Plan:
    jt: int          # hidden units per tile
    ks: int          # k-slices per tile
    bt: int          # batch rows per tile
    tiles_j: int     # tiles along the hidden units
    tiles_b: int     # tiles along the batch

    @property
    def threads(self):
        return (self.jt, self.ks)

    @property
    def tiles(self):
        return self.tiles_j * self.tiles_b


def plan(B, H, dtype) -> Plan:
    """Split a (B, H) step into tiles (see the module docstring).

    Preference: many batch rows per tile (each W_hh load serves them all), then narrow tiles
    (8 units x 32 k-slices: short k loops, many tiles to hide memory latency; measured on an
    H200, see benchmarks/cuda_check.py --sweep), as long as there is at least one tile per
    multiprocessor; otherwise the narrowest, one-row tiles, which spread best.
    """
    threads = SETTINGS["threads"]
    sim = simulating()
    jts = (SETTINGS["jt"],) if SETTINGS["jt"] else ((2, 4) if sim else (8, 16, 32))
    bts = (SETTINGS["bt"],) if SETTINGS["bt"] else ((4, 2, 1) if np.dtype(dtype) == np.float64 else (8, 4, 2, 1))
    # float64 keeps the partial sums of at most 4 rows (shared memory of KS * G * BT * JT values)
    choice = None
    for bt in bts:
        for jt in jts:
            if math.ceil(H / jt) * math.ceil(B / bt) >= sm_count():
                choice = (jt, bt)
                break
        if choice:
            break
    jt, bt = choice or (jts[0], bts[-1])
    ks = SETTINGS["ks"] or max(1, threads // jt)
    bt = max(1, min(bt, B, ks))  # the gate math gives each row of a tile to one k-slice of threads
    if (jt * ks) & (jt * ks - 1):
        raise ValueError(f"jt * ks must be a power of two (a tree reduction), got {jt} * {ks}")
    return Plan(jt, ks, bt, math.ceil(H / jt), math.ceil(B / bt))


_grid_cache = {}


def cooperative_grid(kernel, args, p: Plan) -> int:
    """Blocks for a cooperative launch: one per tile, at most what can be resident at once."""
    if simulating():
        return 1  # the simulator's cooperative grids have one block
    # A kernel's arguments differ between calls only in their dtype (ndim and layout are fixed),
    # so the dtype of the first is key enough: no typing of every argument on every launch.
    key = (id(kernel), args[0].dtype, p.threads)
    fit = _grid_cache.get(key)
    if fit is None:
        argtypes = tuple(kernel.typeof_pyval(a) for a in args)
        fit = kernel.compile(argtypes).max_cooperative_grid_blocks(p.jt * p.ks)
        _grid_cache[key] = fit
    n = min(p.tiles, fit)
    if SETTINGS["max_blocks"]:
        n = min(n, SETTINGS["max_blocks"])
    if n < 1:
        raise RuntimeError(f"{kernel.__name__}: no block of {p.jt}x{p.ks} threads fits on this GPU")
    return n


def own_weights(p: Plan, length: int, per_k: int) -> int:
    """KN, the values per gate a thread of plan ``p`` keeps of W_hh for the whole loop (see the
    module docstring), for a k axis of ``length`` and ``per_k`` gates read per k; 0 when too many.

    The cap is lower when the batch spans several tiles: on the H200, keeping 128 values made an
    LSTM at B=1, H=1024 much faster (forward 3.04 -> 1.34 ms) but its backward at B=256, H=1024
    1.7x slower (those threads' 512 bytes in local memory, over many batch tiles a block), and a
    GRU forward at B=256, H=1024 1.2x slower; 64 is what those ran at before."""
    kn = -(-length // p.ks)
    cap = SETTINGS["own_weights"] if p.tiles_b == 1 else min(SETTINGS["own_weights"], SETTINGS["own_weights_batched"])
    return kn if 0 < kn * per_k <= cap else 0


def use_step_gemm(B: int, H: int) -> bool:
    """Whether a cell runs its steps as tiled GEMMs (``stepgemm.py``): as forced by
    ``SETTINGS["step_gemm"]``; else, on a GPU, when the forward's tiles (64 rows x 16 units) are
    at least one per multiprocessor. Measured on an H200 (cuda_check.py --step-gemm, 2026-11-27),
    step-GEMM time over split-K time at B=256, H=1024 (256 tiles): RNN 0.22 forward, 0.30
    training; LSTM 0.52, 0.38; GRU 0.23, 0.29. With 32 tiles (B=256, H=128; B=64, H=512) it was
    1.1-1.5x slower for every cell but the LSTM's forward at B=64, H=512 (0.61, but 1.09 for
    training), and at B <= 32 up to 6x slower (2026-11-26). In the simulator it runs only when
    forced (the tests force it), so that the split-K kernels stay the ones the rest of the tests
    check."""
    forced = SETTINGS["step_gemm"]
    if forced is not None:
        return bool(forced)
    if simulating():
        return False
    TU, TY, RB, _ = SETTINGS["step_gemm_tile"] or STEP_GEMM_TILE
    return math.ceil(B / (TY * RB)) * math.ceil(H / TU) >= sm_count()


def stage_slabs(p: Plan, length: int) -> int:
    """KC for a split-K kernel of plan ``p`` whose k axis is ``length`` long: how many of its k
    values a thread takes from each slab of the operand staged in shared memory, or 0 to read
    the operand from global memory inside the k loop (the section "Staging" above).

    Measured on an H200 (cuda_check.py --staged, two runs on 2026-11-27; time staged / direct,
    T = 100): LSTM forward 0.57-0.75 at B = 32 and 64, H = 512, LSTM training 0.64-0.71 there;
    RNN training 0.58-0.65; but 1.27-1.67 for a forward at B = 256, H = 128, whose k loop is 4
    values long and which NVVM unrolls, loads and all. So a kernel stages when each thread runs
    at least 16 k values and a tile holds 8 batch rows (the sizes measured; float64 tiles hold at
    most 4). The RNN's forward gains least (0.78 and 0.96 at B = 32, 0.95 and 1.13 at B = 64,
    H = 512): it stages by the same rule, which is what the tables in benchmarks/README.md ran.
    The GRU does not stage (0.99-1.05 at those sizes)."""
    forced = SETTINGS["stage"]
    kc = SETTINGS["stage_kc"]
    if forced is not None:
        return kc if forced else 0
    if simulating():
        return 0
    return kc if p.bt >= 8 and -(-length // p.ks) >= 16 else 0


def launch_persistent(make, p: Plan, kn: int, *args, unkept=None):
    """Launch a persistent (grid-synchronised) kernel over the tiles of plan ``p``: ``make(kn)``,
    whose threads keep their weights (KN = kn values per gate), on a grid that is a multiple of
    ``p.tiles_j`` (so that every tile of a block has the same units); else ``make(0)``, with the
    arguments ``unkept(args)`` when given (the forward kernels read W_hh^T there, a transposed
    copy made only when that variant runs: the kept variant reads W_hh itself, once)."""
    if kn:
        kernel = make(kn)
        n = cooperative_grid(kernel, args, p)
        n -= n % p.tiles_j
        if n:
            queue(kernel, n, p.threads, *args)
            return
    if unkept is not None:
        args = unkept(args)
    kernel = make(0)
    queue(kernel, cooperative_grid(kernel, args, p), p.threads, *args)


def step_gemm_plan(B, H, units=1) -> Plan:
    """The tiles of a step-as-GEMM kernel whose threads own ``units`` units each: TU * units
    units x TY * RB batch rows. Its Plan reads: jt = TU threads along the units, ks = TY thread
    rows, bt = TY * RB batch rows per tile."""
    TU, TY, RB, BK = SETTINGS["step_gemm_tile"] or STEP_GEMM_TILE
    return Plan(TU, TY, TY * RB, math.ceil(H / (TU * units)), math.ceil(B / (TY * RB)))


def launch_step_gemm(make, p: Plan, *args):
    """Launch ``make(TU, TY, RB, BK)``, a step-as-GEMM kernel, cooperatively over the tiles of
    ``p`` (``step_gemm_plan``), with ``args`` and then tiles_j, tiles_b."""
    kernel = make(*(SETTINGS["step_gemm_tile"] or STEP_GEMM_TILE))
    args = args + (p.tiles_j, p.tiles_b)
    queue(kernel, cooperative_grid(kernel, args, p), p.threads, *args)


def is_device_array(a) -> bool:
    """A numba device array (or, on a GPU, anything with ``__cuda_array_interface__``)."""
    if simulating():
        return hasattr(a, "copy_to_host")
    return cuda.is_cuda_array(a)


def check(name, *arrays):
    """All arrays C-contiguous device arrays of one float dtype; returns that dtype."""
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: arrays must be float32 or float64, got {dtype}")
    for a in arrays:
        if not is_device_array(a):
            raise TypeError(f"{name}: expected device arrays (rnnjit.kernels.cuda.to_device), got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name}: mixed dtypes {dtype} and {a.dtype}")
        if not a.is_c_contiguous():
            raise ValueError(f"{name}: arrays must be C-contiguous")
    return dtype
