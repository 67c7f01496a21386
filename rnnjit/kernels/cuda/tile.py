"""What a persistent kernel's threads do inside a tile: the device functions that the cells'
kernels (``rnn.py``, ``lstm.py``, ``gru.py``, ``stepgemm.py``) and ``reduce.py`` share.

``launch.py`` decides on the host how a step is cut into tiles and launches the kernels; these
run on the GPU inside them, each inlined where it is called (but ``block_sum``):

* ``tile_origin``: where tile number t starts (its first unit and batch row);
* ``keep_weights``: the W_hh values a thread multiplies at every step, loaded once before the
  time loop (launch.py's "Weights held by the threads");
* ``load_slab``: a block copies rows of a step's operand into shared memory (launch.py's
  "Staging");
* ``slice_sum``: the k-slices' partial sums of one output, met in shared memory;
* ``block_sum``, ``store_tile_part`` and ``norms_from_parts``: a backward tile's share of the
  per-step gradient norms, and their sum over the tiles at the end.
"""

import math

from numba import cuda

from .ids import nonneg


@cuda.jit(device=True, inline="always")
def tile_origin(tile, tiles_j, JT, BT):
    """(j0, b0): the first unit and the first batch row of tile number ``tile``, tiles of JT
    units x BT rows numbered along the units first (``tiles_j`` tiles span the units)."""
    tile = nonneg(tile)
    tiles_j = nonneg(tiles_j)
    return (tile % tiles_j) * JT, (tile // tiles_j) * BT


@cuda.jit(device=True, inline="always")
def keep_weights(w_own, W, KN, KS, JT, tiles_j, gates, stride, K, H, units_on_rows):
    """Load, once, the weights this thread multiplies at every step (launch.py's module docstring):
    w_own[g*KN + kk] = W[g*stride + j, k] (``units_on_rows``: the forward kernels, reading W_hh
    itself) or W[k, g*stride + j] (the backward kernels), for k = threadIdx.y + kk*KS (clamped
    to K - 1), each gate g < ``gates``, and j this thread's unit, the same in every tile of its
    block."""
    j0, _ = tile_origin(cuda.blockIdx.x, tiles_j, JT, 0)
    j = nonneg(min(j0 + nonneg(cuda.threadIdx.x), H - 1))
    for kk in range(KN):
        k = nonneg(min(nonneg(cuda.threadIdx.y) + kk * KS, K - 1))
        for g in range(gates):
            w_own[g * KN + kk] = W[g * stride + j, k] if units_on_rows else W[k, g * stride + j]


@cuda.jit(device=True, inline="always")
def norms_from_parts(part, norms, tid, NT):
    """norms[t] = sqrt(sum over tiles of part[t, tile]), by the NT threads of one block (``tid``),
    one step each, in a fixed order: the last work of a backward kernel, after its grid has
    written every tile's sum of squares."""
    for t in range(tid, norms.shape[0], NT):
        s = 0.0
        for i in range(part.shape[1]):
            s += part[t, i]
        norms[t] = math.sqrt(s)


@cuda.jit(device=True, inline="always")
def slice_sum(red, row, col):
    """red[0, row, col] + red[1, row, col] + ... in that order: the k-slices' partial sums of
    one output (a unit's gate for one batch row), met in the shared array ``red``. A while loop:
    NVVM unrolls it (its length is the shared array's, a constant), and Numba's range loop,
    whose counter it cannot prove non-negative, it did not: 5 to 6 instructions a load
    (``benchmarks/sass_mix.py``)."""
    row = nonneg(row)
    col = nonneg(col)
    s = red[0, row, col]
    y = 1
    while y < red.shape[0]:
        s += red[y, row, col]
        y += 1
    return s


@cuda.jit(device=True)
def block_sum(sqs, tid, n, value):
    """The sum of ``value`` over the n threads of a block (n a power of two), by a tree in the
    shared array ``sqs``; every thread gets it. Callers sync before reusing ``sqs``."""
    sqs[tid] = value
    cuda.syncthreads()
    stride = n // 2
    while stride > 0:
        if tid < stride:
            sqs[tid] += sqs[tid + stride]
        cuda.syncthreads()
        stride //= 2
    return sqs[0]


@cuda.jit(device=True, inline="always")
def load_slab(slab, src, b0, B, k0, K, tid, NT):
    """slab[r, c] = src[b0 + r, k0 + c] (rows clamped to B - 1, columns to K - 1: those values
    are never multiplied) by all NT threads of the block, consecutive threads taking consecutive
    columns, every load of the slab in flight at once; then a barrier, after which any thread
    may read any of it."""
    R, C = slab.shape
    q = nonneg(tid)
    while q < R * C:
        r = q // C
        c = q - r * C
        slab[r, c] = src[nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + c, K - 1))]
        q += NT
    cuda.syncthreads()


@cuda.jit(device=True, inline="always")
def store_tile_part(sqs, tid, n, sq, part, t, tile, keep):
    """The end of a backward kernel's tile: part[t, tile] = the block's sum of ``sq`` (the tile's
    share of norms[t]) when ``keep``, then a barrier, after which ``sqs`` (and the caller's other
    shared arrays) may be reused by the next tile."""
    total = block_sum(sqs, tid, n, sq)
    if tid == 0 and keep:
        part[t, tile] = total
    cuda.syncthreads()
