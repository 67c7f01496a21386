"""Small elementwise and layout kernels that keep the layers' arrays on the GPU.

The recurrent kernels (``rnn.py``, ``lstm.py``, ``gru.py``) do the heavy work; between them a
stacked, bidirectional layer with dropout needs only a little glue, which on the CPU is a line
of NumPy each. Here each is one tiny kernel, so that nothing has to go back to the host:

    fill(a, v)                 a[...] = v                      (zeros: a fresh array of 0s)
    multiply(a, b)             a * b                           (dropout: out * mask)
    add(a, b)                  a + b                           (dx of the two directions)
    put_columns(dst, src, c0)  dst[..., c0:c0+w] = src         (out[:, :, d*H:(d+1)*H] = o_d)
    take_columns(src, c0, w)   src[..., c0:c0+w] (contiguous)  (the gradient of one direction)
    swap01(a)                  a.transpose(1, 0, 2) (contiguous)   (batch_first)
    dropout_mask(shape, seed, keep)    mask = [u < keep] / keep,  u ~ U[0, 1)

How the work is split: every kernel here is a *grid-stride loop* over the flat index of its
output. Thread i of a grid of n threads handles elements i, i + n, i + 2n, ... so any grid
covers any size and neighbouring threads touch neighbouring addresses (coalesced). ``grid1d``
picks the grid: 256-thread blocks, enough of them to fill the GPU but no more than the work
needs (one block of 8 threads in the simulator, which runs every thread as a Python thread).

Dropout draws its random numbers on the device from a counter-based hash (``uniform``): the
number for element i of a mask is a pure function of (seed, i), so every thread computes its
own without any generator state, and one seed (drawn per mask from the layer's NumPy
``dropout_rng``, which checkpoints already save) makes a run repeatable. The masks therefore
differ from the CPU layer's (which draws them with NumPy), but have the same distribution.
"""

import numpy as np
from numba import cuda

from .graphs import queue
from .launch import simulating, sm_count


def grid1d(n):
    """(blocks, threads) for a grid-stride loop over n elements."""
    if simulating():
        return 1, 8
    threads = 256
    return max(1, min((n + threads - 1) // threads, 32 * sm_count())), threads


def flat(a):
    """A 1-D view of a C-contiguous device array (the grid-stride kernels index it flat); a 1-D
    array as it is (a reshape makes a new array object, which costs the host microseconds)."""
    return a if a.ndim == 1 else a.reshape(a.size)


# ---- the kernels -------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _fill(a, value):
    """a[i] = value. Grid-stride over the flat array."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@cuda.jit(cache=True)
def _multiply(out, a, b):
    """out[i] = a[i] * b[i]. Grid-stride over the flat arrays."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * b[i]


@cuda.jit(cache=True)
def _add(out, a, b):
    """out[i] = a[i] + b[i]. Grid-stride over the flat arrays."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] + b[i]


@cuda.jit(cache=True)
def _copy_columns(dst, dst_c0, src, src_c0, width):
    """dst[r, dst_c0 + j] = src[r, src_c0 + j] for j < width. Grid-stride over the rows * width
    copied elements (consecutive threads: consecutive columns of one row)."""
    n = dst.shape[0] * width
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = i // width
        j = i - r * width
        dst[r, dst_c0 + j] = src[r, src_c0 + j]


@cuda.jit(cache=True)
def _swap01(a, out):
    """out[j, i, k] = a[i, j, k]. Grid-stride over the flat output (coalesced writes; the reads
    are runs of the last axis)."""
    I, J, K = a.shape
    for e in range(cuda.grid(1), I * J * K, cuda.gridsize(1)):
        k = e % K
        i = (e // K) % I
        j = e // (K * I)
        out[j, i, k] = a[i, j, k]


_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)
_S15, _S16 = np.uint64(15), np.uint64(16)


@cuda.jit(device=True, inline="always")
def _hash32(x):
    """A 32-bit integer hash (Wellons' "lowbias32"): every input bit flips about half the output
    bits. x is a uint64 below 2^32; every product stays below 2^64, so no overflow anywhere."""
    x ^= x >> _S16
    x = (x * _C1) & _M32
    x ^= x >> _S15
    x = (x * _C2) & _M32
    x ^= x >> _S16
    return x


@cuda.jit(device=True, inline="always")
def uniform(seed, i):
    """A number in [0, 1) that depends only on (seed, i): counter-based random numbers."""
    h = _hash32((_hash32(np.uint64(seed) & _M32) + np.uint64(i)) & _M32)
    return np.float64(h) / 4294967296.0


@cuda.jit(device=True, inline="always")
def _mask_values(mask, seed, keep):
    """mask[i] = 1/keep with probability keep, else 0 (inverted dropout). Grid-stride, flat."""
    scale = 1.0 / keep
    for i in range(cuda.grid(1), mask.shape[0], cuda.gridsize(1)):
        mask[i] = scale if uniform(seed, i) < keep else 0.0


@cuda.jit(cache=True)
def _dropout_mask(mask, seed, keep):
    """An inverted-dropout mask from ``seed``."""
    _mask_values(mask, seed, keep)


@cuda.jit(cache=True)
def _dropout_mask_drawn(mask, seeds, keep):
    """The same mask, its seed read from the device (seeds[0]): the masks of a CUDA graph, whose
    seeds are drawn afresh before every replay (``graphs.drawn``)."""
    _mask_values(mask, seeds[0], keep)


# ---- host side: each returns a device array ----------------------------------------------------

def launch1d(kernel, n, *args):
    """Launch a grid-stride kernel over n elements (nothing to do when n is 0)."""
    if n:
        blocks, threads = grid1d(n)
        queue(kernel, blocks, threads, *args)


def fill(a, value):
    """a[...] = value, in place; returns a."""
    launch1d(_fill, a.size, flat(a), a.dtype.type(value))
    return a


def zeros(shape, dtype):
    """A device array of zeros (``cuda.device_array`` leaves memory uninitialised)."""
    return fill(cuda.device_array(shape, dtype), 0)


def multiply(a, b):
    """a * b, elementwise, as a new device array of a's shape."""
    out = cuda.device_array(a.shape, a.dtype)
    launch1d(_multiply, a.size, flat(out), flat(a), flat(b))
    return out


def add(a, b):
    """a + b, elementwise, as a new device array of a's shape."""
    out = cuda.device_array(a.shape, a.dtype)
    launch1d(_add, a.size, flat(out), flat(a), flat(b))
    return out


def _rows(a):
    """A C-contiguous (..., C) device array as a 2-D (rows, C) view."""
    C = a.shape[a.ndim - 1]      # (the simulator's shapes take no negative indices)
    return a.reshape(a.size // C, C)


def put_columns(dst, src, c0):
    """dst[..., c0:c0 + w] = src (w = src.shape[-1]), in place."""
    w = src.shape[src.ndim - 1]
    launch1d(_copy_columns, src.size, _rows(dst), c0, _rows(src), 0, w)


def take_columns(src, c0, width):
    """src[..., c0:c0 + width] as a new C-contiguous device array."""
    out = cuda.device_array(tuple(src.shape)[:-1] + (width,), src.dtype)
    launch1d(_copy_columns, out.size, _rows(out), 0, _rows(src), c0, width)
    return out


def swap01(a):
    """a.transpose(1, 0, 2) of a 3-D device array, as a new C-contiguous device array."""
    out = cuda.device_array((a.shape[1], a.shape[0], a.shape[2]), a.dtype)
    launch1d(_swap01, a.size, a, out)
    return out


def dropout_mask(shape, dtype, seed, keep):
    """An inverted-dropout mask: 1/keep with probability keep, else 0 (see the module docstring).
    ``seed``: an int, or a (1,) uint64 device array holding it (``graphs.drawn``)."""
    mask = cuda.device_array(shape, dtype)
    if hasattr(seed, "copy_to_host"):
        launch1d(_dropout_mask_drawn, mask.size, flat(mask), seed, float(keep))
    else:
        launch1d(_dropout_mask, mask.size, flat(mask), int(seed) & 0xFFFFFFFF, float(keep))
    return mask


__all__ = ["grid1d", "launch1d", "flat", "fill", "zeros", "multiply", "add", "put_columns", "take_columns",
           "swap01", "dropout_mask", "uniform"]
