"""The dense parts around a recurrent layer: embedding, linear decoder, softmax cross-entropy.

    embedding     e_t = E[x_t]                              dE[x_t] += de_t
    linear        z = h W^T + b                             dh = dz W,  dW = dz^T h,  db = Σ dz
    softmax       p = exp(z - max z) / Σ exp(z - max z)
    cross-entropy L = -(1/N) Σ_n log p_n[y_n]               dz = (p - onehot(y)) / N

The loss is the mean over the N = T*B predictions, in nats; bits = nats / ln 2.
Softmax and cross-entropy are fused: one pass over each row gives the loss and its gradient,
and the probabilities are never stored.
"""

import numpy as np
from numba import njit

from ._blas import column_sums, gemm


@njit(cache=True, nogil=True)
def embedding_forward(E, ids):
    """ids (N,) int -> rows of E, (N, D)."""
    N = ids.shape[0]
    out = np.empty((N, E.shape[1]), E.dtype)
    for n in range(N):
        out[n] = E[ids[n]]
    return out


@njit(cache=True, nogil=True)
def embedding_backward(dE, ids, dout):
    """dE (V, D) is overwritten with the scatter-add of dout (N, D) into the rows named by ids."""
    dE[:] = 0
    for n in range(ids.shape[0]):
        dE[ids[n]] += dout[n]


@njit(cache=True, nogil=True)
def linear_forward(h, W, b):
    """h (N, H), W (V, H), b (V,) -> z (N, V), one GEMM."""
    z = np.empty((h.shape[0], W.shape[0]), h.dtype)
    for n in range(h.shape[0]):
        z[n] = b
    gemm(h, False, W, True, z, 1.0, 1.0)
    return z


@njit(cache=True, nogil=True)
def linear_backward(h, W, dz, dW, db):
    """Writes dW (V, H) and db (V,); returns dh (N, H)."""
    gemm(dz, True, h, False, dW, 1.0, 0.0)
    db[:] = column_sums(dz)
    dh = np.empty((dz.shape[0], W.shape[1]), dz.dtype)
    gemm(dz, False, W, False, dh, 1.0, 0.0)
    return dh


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy(z, y):
    """Mean cross-entropy of logits z (N, V) against targets y (N,), and dL/dz (N, V).

    Row by row: subtract the max for stability, exponentiate, normalise, and write p - onehot(y)
    scaled by 1/N in place of the logits' gradient. The loss is accumulated in float64.
    """
    N, V = z.shape
    dz = np.empty_like(z)
    total = 0.0
    for n in range(N):
        m = z[n, 0]
        for v in range(1, V):
            m = max(m, z[n, v])
        s = 0.0
        for v in range(V):
            e = np.exp(z[n, v] - m)
            dz[n, v] = e
            s += e
        total += np.log(s) - (z[n, y[n]] - m)
        inv = 1.0 / (s * N)
        for v in range(V):
            dz[n, v] *= inv
        dz[n, y[n]] -= 1.0 / N
    return total / N, dz


@njit(cache=True, nogil=True, error_model="numpy")
def cross_entropy(z, y):
    """Mean cross-entropy only (evaluation: no gradient)."""
    N, V = z.shape
    total = 0.0
    for n in range(N):
        m = z[n, 0]
        for v in range(1, V):
            m = max(m, z[n, v])
        s = 0.0
        for v in range(V):
            s += np.exp(z[n, v] - m)
        total += np.log(s) - (z[n, y[n]] - m)
    return total / N
