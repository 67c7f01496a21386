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
     gates and all BT batch rows, in G*BT registers. A warp reads 32 consecutive units of one
     row of W (coalesced) and one h value that all lanes share (a broadcast), and every W value
     it loads serves BT batch rows.
  2. the KS partial sums meet in shared memory (``cuda.syncthreads()``);
  3. thread (x, y) adds them up and does the gate math for unit x and batch rows
     bb = y, y + KS, ... < BT (with BT <= KS, the usual case, one row per thread).

If there are more tiles than blocks that can be resident at once (a cooperative launch requires
all blocks resident), each block loops over tiles ``blockIdx.x, blockIdx.x + gridDim.x, ...``;
every block reaches the grid barrier the same number of times. Under the simulator a cooperative
grid has one block, which then loops over all tiles: the same code path.

BT (batch rows per tile) is chosen per call: the largest of 8, 4, 2, 1 that still makes at least
one tile per multiprocessor, so small batches spread over the GPU and large batches reuse each W
load for more rows. KS = 8 and JT = 32 (one warp across units) on a GPU; the simulator uses
smaller blocks (JT = 4, KS = 2) because it runs every thread as a Python thread.
"""

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import config, cuda


def simulating() -> bool:
    return bool(config.ENABLE_CUDASIM)


# Tunables. ``tuning(...)`` overrides them for a block of code (the tests use it to run the
# GPU-sized configuration in the simulator too).
SETTINGS = {
    "jt": 4 if simulating() else 32,     # hidden units per tile (threadIdx.x)
    "ks": 2 if simulating() else 8,      # k-slices per tile (threadIdx.y)
    "bt": None,                          # batch rows per tile; None: choose per call
    "max_blocks": None,                  # cap on the cooperative grid; None: what fits
}


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


@functools.lru_cache(maxsize=None)
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
    """Split a (B, H) step into tiles (see the module docstring)."""
    jt, ks = SETTINGS["jt"], SETTINGS["ks"]
    tiles_j = math.ceil(H / jt)
    bt = SETTINGS["bt"]
    if bt is None:
        # float64 keeps the partial sums of at most 4 rows (shared memory of KS*G*BT*JT values)
        choices = (4, 2, 1) if np.dtype(dtype) == np.float64 else (8, 4, 2, 1)
        bt = 1
        for c in choices:
            if tiles_j * math.ceil(B / c) >= sm_count():
                bt = c
                break
    bt = max(1, min(bt, B))
    if (jt * ks) & (jt * ks - 1):
        raise ValueError(f"jt * ks must be a power of two (a tree reduction), got {jt} * {ks}")
    return Plan(jt, ks, bt, tiles_j, math.ceil(B / bt))


_grid_cache = {}


def cooperative_grid(kernel, args, p: Plan) -> int:
    """Blocks for a cooperative launch: one per tile, at most what can be resident at once."""
    if simulating():
        return 1  # the simulator's cooperative grids have one block
    argtypes = tuple(kernel.typeof_pyval(a) for a in args)
    key = (id(kernel), argtypes, p.threads)
    fit = _grid_cache.get(key)
    if fit is None:
        fit = kernel.compile(argtypes).max_cooperative_grid_blocks(p.jt * p.ks)
        _grid_cache[key] = fit
    n = min(p.tiles, fit)
    if SETTINGS["max_blocks"]:
        n = min(n, SETTINGS["max_blocks"])
    if n < 1:
        raise RuntimeError(f"{kernel.__name__}: no block of {p.jt}x{p.ks} threads fits on this GPU")
    return n


def launch_persistent(kernel, p: Plan, *args):
    """Launch a persistent (grid-synchronised) kernel over the tiles of plan ``p``."""
    kernel[cooperative_grid(kernel, args, p), p.threads](*args)


def check(name, *arrays):
    """All arrays C-contiguous device arrays of one float dtype; returns that dtype."""
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: arrays must be float32 or float64, got {dtype}")
    for a in arrays:
        if not cuda.is_cuda_array(a):
            raise TypeError(f"{name}: expected device arrays (rnnjit.kernels.cuda.to_device), got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name}: mixed dtypes {dtype} and {a.dtype}")
        if not a.is_c_contiguous():
            raise ValueError(f"{name}: arrays must be C-contiguous")
    return dtype


def copy(dst, src):
    """Device-to-device copy of a whole (contiguous) array."""
    dst.copy_to_device(src)
