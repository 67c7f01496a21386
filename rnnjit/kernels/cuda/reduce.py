"""Sums over whole device arrays, for the two numbers a training step reports: the loss and the
global gradient norm.

    sums(arrays, square, threshold) -> a (2,) float64 device array
        [0]  Σ a            (or Σ a² with square=True)   over every element of every array
        [1]  #{ |a| > threshold }                        (clipping by value: did any fire?)

The caller copies those two numbers to the host; nothing else comes back.

How the work is split (two passes, no atomics, so the result is the same every run):

1. ``_partial_sums``, once per array, on P blocks of RT threads: a grid-stride loop in which
   each thread adds up its share in float64, then a tree over the block (``tile.block_sum``);
   thread 0 writes the block's two partial sums to ``parts[array, block]``.
2. ``_finish``, one block of RT threads: each thread adds a strided share of all partial sums,
   then one more tree gives the totals.

The order of the additions depends only on the shapes and on P, never on timing.
"""

import math

import numpy as np
from numba import cuda

from .elementwise import flat, grid1d, zeros
from .graphs import queue
from .launch import simulating, sm_count
from .tile import block_sum

RT = 8 if simulating() else 256      # threads per block: a power of two (tree reduction)


@cuda.jit(cache=True)
def _partial_sums(a, square, threshold, parts, row):
    """parts[row, block] = (Σ a or Σ a², #{|a| > threshold}) over this block's grid-stride share."""
    sqs = cuda.shared.array(RT, np.float64)
    tid = cuda.threadIdx.x
    s = 0.0
    c = 0.0
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        x = np.float64(a[i])
        s += x * x if square else x
        if abs(x) > threshold:
            c += 1.0
    s = block_sum(sqs, tid, RT, s)
    cuda.syncthreads()                       # every thread has read sqs[0] before it is reused
    c = block_sum(sqs, tid, RT, c)
    if tid == 0:
        parts[row, cuda.blockIdx.x, 0] = s
        parts[row, cuda.blockIdx.x, 1] = c


@cuda.jit(cache=True)
def _finish(parts, scale, out):
    """out[k] = scale * Σ parts[:, :, k]: one block, a strided share per thread, then a tree."""
    sqs = cuda.shared.array(RT, np.float64)
    tid = cuda.threadIdx.x
    R, P, K = parts.shape
    for k in range(K):
        s = 0.0
        for i in range(tid, R * P, RT):
            s += parts[i // P, i % P, k]
        s = block_sum(sqs, tid, RT, s)
        if tid == 0:
            out[k] = s * scale
        cuda.syncthreads()


def sums(arrays, square=False, threshold=math.inf, scale=1.0):
    """(Σ a or Σ a², #{|a| > threshold}) over all elements of all device arrays, times ``scale``
    (1/N makes a mean), as a (2,) float64 device array (see the module docstring)."""
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return zeros(2, np.float64)
    P = min(grid1d(max(a.size for a in arrays))[0], 2 * sm_count())
    parts = cuda.device_array((len(arrays), P, 2), np.float64)
    for r, a in enumerate(arrays):
        queue(_partial_sums, P, RT, flat(a), bool(square), float(threshold), parts, r)
    out = cuda.device_array(2, np.float64)
    queue(_finish, 1, RT, parts, float(scale), out)
    return out
