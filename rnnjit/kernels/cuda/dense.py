"""The dense parts around a recurrent layer on the GPU: the CUDA twin of ``rnnjit/kernels/dense.py``.

Same equations, same names, device arrays in and out:

    embedding     e_t = E[x_t]                              dE[v] = Σ_{n: x_n = v} de_n
    one-hot       e_t = onehot(x_t)                         (input="onehot": no parameters)
    linear        z = h W^T + b                             dh = dz W,  dW = dz^T h,  db = Σ dz
    softmax       p = exp(z - max z) / Σ exp(z - max z)
    cross-entropy L = -(1/N) Σ_n log p_n[y_n]               dz = (p - onehot(y)) / N

and the few pieces the other models put around a layer (their CPU twins are a line of NumPy
each, in ``rnnjit.models.module.CpuKernels``):

    mse           L = (1/n) Σ_i (z_i - y_i)^2                dz = (2/n) (z - y)      (n elements)
    tanh          s = tanh(a)                               da = ds ⊙ (1 - s²)
    argmax        w_n = argmax_v z[n, v]                    (the first of equal maxima, as NumPy)
    masked        the cross-entropy over the rows whose target is not <pad>: L = (1/K) Σ_{n kept}
                  -log p_n[y_n], dz = 0 on the other rows (K, the count, found on the device)

How the work is split:

* ``embedding_forward`` / ``one_hot``: a grid-stride loop over the (N, D) output, one element
  per thread and pass (neighbouring threads: neighbouring columns of a row, coalesced).
* ``embedding_backward``: one thread per element (v, d) of dE, which walks all N ids in order and
  adds the rows that name v. That is V times more reading of ``ids`` than a scatter with atomic
  adds, but a character vocabulary is small, the sum runs in the CPU kernel's order (the result
  is the same every run, and the same as the CPU's), and no two threads write the same address.
* ``linear_forward`` / ``linear_backward``: the tiled GEMM of ``gemm.py`` (and its column sums
  for db), plus one grid-stride kernel that adds the bias to every row.
* ``softmax_cross_entropy`` / ``cross_entropy``: one thread per row n (a row is V scores, V is
  a vocabulary of characters: tens to a few hundred). The thread finds the row's max, sums the
  exponentials in float64, writes the row's loss and, for training, its row of dz. The row
  losses are then averaged by ``reduce.sums`` (deterministic), and the mean is the only number
  that goes back to the host.
* ``masked_softmax_cross_entropy`` / ``masked_cross_entropy``: the same one thread per row,
  with three small launches around it: one marks the rows that count (``_not_pad``), a
  ``reduce.sums`` counts them, and after the row losses are summed ``_divide`` takes the mean
  on the device. Nothing depends on how many rows count, so a CUDA graph holds it all.
* ``mse`` / ``mse_grad``: a grid-stride loop over the flat (N, K) arrays writes d = z - y (and,
  for training, dz = (2/n) d, with 2/n in z's precision as on the CPU); ``reduce.sums`` then adds
  up d² in float64, deterministically, and scales by 1/n.
* ``tanh`` / ``tanh_backward``: grid-stride loops over the flat array, one element per thread.
* ``argmax_rows``: one thread per row walks its V scores (a row is a vocabulary: small).
"""

import math

import numpy as np
from numba import cuda

from .elementwise import flat, launch1d
from .gemm import column_sums, gemm
from .reduce import sums


@cuda.jit(cache=True)
def _gather_rows(E, ids, out):
    """out[n, d] = E[ids[n], d]. Grid-stride over the flat (N, D) output."""
    N, D = out.shape
    for e in range(cuda.grid(1), N * D, cuda.gridsize(1)):
        n = e // D
        d = e - n * D
        out[n, d] = E[ids[n], d]


@cuda.jit(cache=True)
def _one_hot(ids, out):
    """out[n, v] = 1 if ids[n] == v else 0. Grid-stride over the flat (N, V) output."""
    N, V = out.shape
    for e in range(cuda.grid(1), N * V, cuda.gridsize(1)):
        n = e // V
        v = e - n * V
        out[n, v] = 1 if ids[n] == v else 0


@cuda.jit(cache=True)
def _scatter_add_rows(dE, ids, dout):
    """dE[v, d] = Σ over n with ids[n] == v of dout[n, d], in the order n = 0, 1, ...
    One thread per element of dE (grid-stride), each walking all N ids and summing in a register
    (a sum in dE itself made every match a load and a store to global memory: 0.45 ms of a
    CharLM step at B=32, T=100 on an H200)."""
    V, D = dE.shape
    N = ids.shape[0]
    acc = cuda.local.array(1, dtype=dE.dtype)   # one value of dE's dtype, kept in a register
    for e in range(cuda.grid(1), V * D, cuda.gridsize(1)):
        v = e // D
        d = e - v * D
        acc[0] = 0
        for n in range(N):
            if ids[n] == v:
                acc[0] += dout[n, d]
        dE[v, d] = acc[0]


@cuda.jit(cache=True)
def _add_bias_rows(z, b):
    """z[n, v] += b[v]. Grid-stride over the flat (N, V) array."""
    N, V = z.shape
    for e in range(cuda.grid(1), N * V, cuda.gridsize(1)):
        z[e // V, e % V] += b[e % V]


@cuda.jit(device=True, inline=True)
def _xent_row(z, n, target, row_loss, dz, grad, N):
    """Row n: row_loss[n] = log Σ_v exp(z_v - m) - (z_target - m), m = max_v z_v; with ``grad``,
    dz[n] = (softmax(z_n) - onehot(target)) / N. The same expressions, in the same precisions,
    as the CPU kernel (``math.exp`` of a float32 is a float32 exp, as ``np.exp`` is there;
    NumPy's ufuncs do not compile for CUDA)."""
    V = z.shape[1]
    m = z[n, 0]
    for v in range(1, V):
        m = max(m, z[n, v])
    s = 0.0
    for v in range(V):
        e = math.exp(z[n, v] - m)
        if grad:
            dz[n, v] = e
        s += e
    row_loss[n] = math.log(s) - (z[n, target] - m)
    if grad:
        inv = 1.0 / (s * N)
        for v in range(V):
            dz[n, v] *= inv
        dz[n, target] -= 1.0 / N


@cuda.jit(cache=True)
def _softmax_xent_rows(z, y, row_loss, dz, grad):
    """``_xent_row`` for every row n (one thread per row, grid-stride), the mean over all N rows."""
    N = z.shape[0]
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        _xent_row(z, n, y[n], row_loss, dz, grad, N)


@cuda.jit(cache=True)
def _not_pad(y, pad, keep):
    """keep[n] = 1 where y[n] is not ``pad``, else 0 (summed, how many targets count)."""
    for n in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        keep[n] = 1.0 if y[n] != pad else 0.0


@cuda.jit(cache=True)
def _masked_softmax_xent_rows(z, y, pad, kept, row_loss, dz, grad):
    """``_xent_row`` for the rows whose target is not ``pad``, the mean over the kept[0] such
    rows; a <pad> row's loss and dz are 0. One thread per row, grid-stride."""
    for n in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        if y[n] != pad:
            _xent_row(z, n, y[n], row_loss, dz, grad, kept[0])
        else:
            row_loss[n] = 0.0
            if grad:
                for v in range(z.shape[1]):
                    dz[n, v] = 0


@cuda.jit(cache=True)
def _divide(total, count):
    """total[0] /= count[0] (a mean over the kept rows; nothing when none is kept). One thread."""
    if cuda.grid(1) == 0 and count[0] > 0:
        total[0] = total[0] / count[0]


@cuda.jit(cache=True)
def _squared_error(z, y, d, dz, scale, grad):
    """d[i] = z[i] - y[i]; with ``grad``, dz[i] = scale * d[i] (scale = 2/n, in z's dtype).
    Grid-stride over the flat arrays."""
    for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        e = z[i] - y[i]
        d[i] = e
        if grad:
            dz[i] = scale * e


@cuda.jit(cache=True)
def _tanh(a, s):
    """s[i] = tanh(a[i]). Grid-stride over the flat arrays."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        s[i] = math.tanh(a[i])


@cuda.jit(cache=True)
def _tanh_backward(s, ds, da, one):
    """da[i] = ds[i] * (1 - s[i]^2), s = tanh(a). Grid-stride over the flat arrays. ``one`` is 1
    in s's dtype (a literal 1 would make a float32 kernel compute in float64)."""
    for i in range(cuda.grid(1), s.shape[0], cuda.gridsize(1)):
        da[i] = ds[i] * (one - s[i] * s[i])


@cuda.jit(cache=True)
def _argmax_rows(z, out):
    """out[n] = the first v with z[n, v] = max_v z[n, v]. One thread per row (grid-stride)."""
    N, V = z.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        best = 0
        for v in range(1, V):
            if z[n, v] > z[n, best]:
                best = v
        out[n] = best


# ---- host side ---------------------------------------------------------------------------------

def embedding_forward(E, ids):
    """ids (N,) int device array -> rows of E, (N, D)."""
    out = cuda.device_array((ids.shape[0], E.shape[1]), E.dtype)
    launch1d(_gather_rows, out.size, E, ids, out)
    return out


def embedding_backward(dE, ids, dout):
    """dE (V, D) is overwritten with the scatter-add of dout (N, D) into the rows named by ids."""
    launch1d(_scatter_add_rows, dE.size, dE, ids, dout)


def one_hot(ids, V, dtype):
    """ids (N,) -> (N, V) rows of the identity."""
    out = cuda.device_array((ids.shape[0], V), dtype)
    launch1d(_one_hot, out.size, ids, out)
    return out


def linear_forward(h, W, b):
    """h (N, H), W (V, H), b (V,) -> z (N, V) = h W^T + b."""
    z = gemm(h, W, trans_b=True)
    launch1d(_add_bias_rows, z.size, z, b)
    return z


def linear_backward(h, W, dz, dW, db):
    """Writes dW (V, H) and db (V,) in place; returns dh (N, H)."""
    gemm(dz, h, trans_a=True, out=dW)
    column_sums(dz, out=db)
    return gemm(dz, W)


def _xent(z, y, grad):
    N = z.shape[0]
    row_loss = cuda.device_array(N, np.float64)
    dz = cuda.device_array(z.shape, z.dtype) if grad else z   # z itself: never written
    launch1d(_softmax_xent_rows, N, z, y, row_loss, dz, bool(grad))
    return sums([row_loss], scale=1.0 / N)[:1], dz


def softmax_cross_entropy(z, y):
    """Mean cross-entropy of logits z (N, V) against targets y (N,), and dL/dz (N, V).

    The loss stays on the device, a (1,) float64 array (``to_host(loss)[0]`` is the float the CPU
    kernel returns): the caller decides when to wait for it."""
    return _xent(z, y, True)


def cross_entropy(z, y):
    """Mean cross-entropy only (evaluation: no gradient), a (1,) float64 device array."""
    return _xent(z, y, False)[0]


def _masked_xent(z, y, pad, grad):
    N = z.shape[0]
    keep = cuda.device_array(N, np.float64)
    launch1d(_not_pad, N, y, int(pad), keep)
    kept = sums([keep])
    row_loss = cuda.device_array(N, np.float64)
    dz = cuda.device_array(z.shape, z.dtype) if grad else z   # z itself: never written
    launch1d(_masked_softmax_xent_rows, N, z, y, int(pad), kept, row_loss, dz, bool(grad))
    loss = sums([row_loss])[:1]
    launch1d(_divide, 1, loss, kept)
    return loss, dz


def masked_softmax_cross_entropy(z, y, pad):
    """``softmax_cross_entropy`` over the rows whose target is not ``pad`` only: the mean over
    those rows, and dz (N, V) with zeros in the <pad> rows. The count of such rows is found on
    the device, so the work has the same shape for every batch of a given (N, V): a CUDA graph
    can hold it (the CPU twin gathers the kept rows instead, the same numbers)."""
    return _masked_xent(z, y, pad, True)


def masked_cross_entropy(z, y, pad):
    """The mean cross-entropy over the non-``pad`` targets only (evaluation), a (1,) device array."""
    return _masked_xent(z, y, pad, False)[0]


def _mse(z, y, grad):
    n = z.size
    d = cuda.device_array(n, z.dtype)
    dz = cuda.device_array(n, z.dtype) if grad else d        # d itself: never written
    launch1d(_squared_error, n, flat(z), flat(y), d, dz, z.dtype.type(2.0 / max(n, 1)), bool(grad))
    return sums([d], square=True, scale=1.0 / max(n, 1))[:1], dz.reshape(z.shape)


def mse_grad(z, y):
    """Mean squared error of predictions z against targets y (same shape), and dL/dz.

    The loss stays on the device, a (1,) float64 array, like ``softmax_cross_entropy``'s."""
    return _mse(z, y, True)


def mse(z, y):
    """Mean squared error only (evaluation: no gradient), a (1,) float64 device array."""
    return _mse(z, y, False)[0]


def tanh(a):
    """tanh(a), elementwise, as a new device array."""
    s = cuda.device_array(a.shape, a.dtype)
    launch1d(_tanh, a.size, flat(a), flat(s))
    return s


def tanh_backward(s, ds):
    """dL/da = ds * (1 - s^2) for s = tanh(a), as a new device array."""
    da = cuda.device_array(s.shape, s.dtype)
    launch1d(_tanh_backward, s.size, flat(s), flat(ds), flat(da), s.dtype.type(1))
    return da


def argmax_rows(z):
    """z (N, V) -> the index of each row's largest score, (N,) int64 on the device."""
    out = cuda.device_array(z.shape[0], np.int64)
    launch1d(_argmax_rows, z.shape[0], z, out)
    return out


__all__ = ["embedding_forward", "embedding_backward", "one_hot", "linear_forward", "linear_backward",
           "softmax_cross_entropy", "cross_entropy", "masked_softmax_cross_entropy", "masked_cross_entropy",
           "mse_grad", "mse", "tanh", "tanh_backward", "argmax_rows"]
