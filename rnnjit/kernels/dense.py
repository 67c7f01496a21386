"""The dense parts around a recurrent layer: embedding, linear decoder, softmax cross-entropy.

    embedding     e_t = E[x_t]                              dE[x_t] += de_t
    linear        z = h W^T + b                             dh = dz W,  dW = dz^T h,  db = Σ dz
    softmax       p = exp(z - max z) / Σ exp(z - max z)
    cross-entropy L = -(1/N) Σ_n log p_n[y_n]               dz = (p - onehot(y)) / N

The loss is the mean over the N = T*B predictions, in nats; bits = nats / ln 2.
Softmax and cross-entropy are fused: one pass over each row gives the loss and its gradient,
and the probabilities are never stored.

The input side of a recurrent layer lives here too: it is a linear layer over all T*B inputs at
once (no recurrence), computed before the time loop and, in backward, after it.

    dense input   a_t = W_ih x_t + b             one GEMM for all steps (``project_inputs``), or,
                                                 in the sequence kernels, one per chunk of steps
                                                 just before the loop needs them (``project_chunk``)
                  dx_t = dA_t W_ih               only when someone needs it (``input_grad``)
                  dW_ih = Σ_t dA_t^T x_t         one GEMM (``input_weight_grad``)
    one-hot input W_ih e_c = column c of W_ih, so the projection is a gather
                  a_t = W_ih[:, c_t] + b = table[c_t]     (``gather_inputs``; ``onehot_table``)
                  dW_ih[:, c_t] += dA_t, a scatter-add    (``gather_weight_grad``)
                  and dx is not needed at all (nothing is upstream of the characters)

A GEMM with one-hot rows does V times more multiply-adds than the gather, all of them by 0 or 1.
"""

import numpy as np
from numba import njit

from ._blas import column_sums
from .checks import check_indices, check_linear, check_rows, checked_types
from .activations import fast_exp
from ._smallgemm import MIN_DENSE_ROWS, dense_gemm, pack_weights, recurrent_gemm, use_packed, weight_grad_gemm


@njit(cache=True, nogil=True, inline="always")
def copy_row(src, dst):
    """dst[:] = src for two 1-D arrays, as a plain loop: Numba's ``dst[:] = src`` (or
    ``a[n] = b``) goes through its general broadcasting assignment, which copied rows at 19 GB/s
    where this loop, vectorised, copies several times faster."""
    for g in range(dst.shape[0]):
        dst[g] = src[g]


@checked_types(ids=1)
@njit(cache=True, nogil=True)
def embedding_forward(E, ids):
    """ids (N,) int -> rows of E, (N, D)."""
    check_indices("embedding_forward", "ids", ids, E.shape[0], "ids name rows of E")
    N = ids.shape[0]
    out = np.empty((N, E.shape[1]), E.dtype)
    for n in range(N):
        copy_row(E[ids[n]], out[n])
    return out


@checked_types(ids=1, dout=2)
@njit(cache=True, nogil=True)
def embedding_backward(dE, ids, dout):
    """dE (V, D) is overwritten with the scatter-add of dout (N, D) into the rows named by ids."""
    check_rows("embedding_backward", "dout", "(N, D)", (ids.shape[0], dE.shape[1]), dout.shape,
               ": one row per id, one column per column of dE")
    check_indices("embedding_backward", "ids", ids, dE.shape[0], "ids name rows of dE")
    dE[:] = 0
    D = dE.shape[1]
    for n in range(ids.shape[0]):
        row, src = dE[ids[n]], dout[n]
        for d in range(D):
            row[d] += src[d]


@checked_types
@njit(cache=True, nogil=True)
def linear_forward(h, W, b):
    """h (N, H), W (V, H), b (V,) -> z (N, V), one GEMM."""
    check_linear("linear_forward", h.shape, W.shape, b.shape, None, None, None)
    z = np.empty((h.shape[0], W.shape[0]), h.dtype)
    for n in range(h.shape[0]):
        copy_row(b, z[n])
    dense_gemm(h, W, True, z, 1.0)
    return z


@checked_types
@njit(cache=True, nogil=True)
def linear_backward(h, W, dz, dW, db):
    """Writes dW (V, H) and db (V,); returns dh (N, H)."""
    check_linear("linear_backward", h.shape, W.shape, None, dz.shape, dW.shape, db.shape)
    weight_grad_gemm(dz, h, dW, dz.shape[0] >= MIN_DENSE_ROWS)
    copy_row(column_sums(dz), db)
    dh = np.empty((dz.shape[0], W.shape[1]), dz.dtype)
    dense_gemm(dz, W, False, dh, 0.0)
    return dh


@checked_types
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def softmax_cross_entropy(z, y):
    """Mean cross-entropy of logits z (N, V) against targets y (N,), and dL/dz (N, V).

    Row by row: subtract the max for stability, exponentiate (``fast_exp``: a loop LLVM
    vectorises), normalise, and write p - onehot(y) scaled by 1/N in place of the logits'
    gradient. The loss is accumulated in float64.
    """
    check_rows("softmax_cross_entropy", "y", "(N,)", (z.shape[0],), y.shape, ": one target per row of z")
    check_indices("softmax_cross_entropy", "y", y, z.shape[1], "targets are columns of z")
    N, V = z.shape
    dz = np.empty_like(z)
    total = 0.0
    for n in range(N):
        zn, dzn = z[n], dz[n]
        m = zn[0]
        for v in range(1, V):
            m = max(m, zn[v])
        for v in range(V):
            dzn[v] = fast_exp(zn[v] - m)
        s = 0.0
        for v in range(V):
            s += dzn[v]
        total += np.log(s) - (zn[y[n]] - m)
        inv = 1.0 / (s * N)
        for v in range(V):
            dzn[v] *= inv
        dzn[y[n]] -= 1.0 / N
    return total / N, dz


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def cross_entropy(z, y):
    """Mean cross-entropy only (evaluation: no gradient)."""
    check_rows("cross_entropy", "y", "(N,)", (z.shape[0],), y.shape, ": one target per row of z")
    check_indices("cross_entropy", "y", y, z.shape[1], "targets are columns of z")
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


# ---- the input side of a recurrent layer ------------------------------------------------------

@njit(cache=True, nogil=True)
def project_inputs(x, W, b):
    """x (T, B, I), W (G, I), b (G,) -> a (T, B, G) = x W^T + b: the input part of every gate of
    every step, one GEMM before the time loop. The sequence kernels compute the same a chunk of
    steps at a time (``project_chunk``); this all-at-once form is the reference they are tested
    against, and what a recurrence called on its own expects in ``gates``."""
    T, B, I = x.shape
    return linear_forward(x.reshape(T * B, I), W, b).reshape(T, B, W.shape[0])


CHUNK_BYTES = 1 << 18   # the input part is computed this many bytes of gates at a time (a quarter of L2)


@njit(cache=True, nogil=True)
def dense_inputs(x, W, b, steps=0):
    """The dense input of a sequence kernel's recurrence: (x, W, W^T packed once, whether packed,
    b, steps per chunk), with as many steps per chunk as fill CHUNK_BYTES of gates unless
    ``steps`` says. See ``project_chunk``."""
    T, B, I = x.shape
    G = W.shape[0]
    use = T * B >= MIN_DENSE_ROWS
    if steps <= 0:
        steps = max(1, CHUNK_BYTES // (B * G * x.itemsize))
    return x, W, pack_weights(W, True, use), use, b, steps


@njit(cache=True, nogil=True, inline="always")
def sequence_length(gates, ids, dense):
    """T of a recurrence: the steps of its one-hot ids or dense x, else of its gates."""
    if ids is not None:
        return ids.shape[0]
    if dense is not None:
        return dense[0].shape[0]
    return gates.shape[0]


@njit(cache=True, nogil=True, inline="always")
def ring_row(t, T, R, reverse):
    """The row of a gates buffer of R rows that holds step t of T: t itself when R = T (training
    keeps every step's gates for backward); in a shorter buffer (inference, ``lstm_inference``),
    rows are reused, and a chunk of steps that ``project_chunk`` writes with one GEMM, which
    starts at a multiple of R in reading order, lands in consecutive rows from row 0 (read in
    reverse, the last and shorter chunk ends at row R - 1)."""
    shift = (R - T % R) % R if reverse else 0
    return (t + shift) % R


@njit(cache=True, nogil=True)
def project_chunk(dense, gates, s, reverse):
    """The input part of the next chunk of steps, a = x W^T + b, one GEMM over its rows.

    ``project_inputs`` does all T steps at once, but at B = 32, H = 512 that writes 26 MB of
    gates to memory before the time loop reads them back. The recurrences call this instead at
    every ``steps``-th step s (in reading order), for the steps s .. s + steps - 1, so that the
    gates are still in cache when the loop reaches them; W is packed once per sequence. gates has
    T rows, or, in inference, as many as a chunk has steps (``ring_row``).
    """
    x, W, Wp, use, b, steps = dense
    T, B, I = x.shape
    G = W.shape[0]
    n = min(steps, T - s)
    t0 = T - s - n if reverse else s
    r0 = ring_row(t0, T, gates.shape[0], reverse)
    a = gates[r0:r0 + n].reshape(n * B, G)
    for r in range(n * B):
        copy_row(b, a[r])
    recurrent_gemm(x[t0:t0 + n].reshape(n * B, I), W, True, Wp, use, a, 1.0, s, np.bool_(False))  # all threads


@njit(cache=True, nogil=True)
def project_chunks(dense, gates, reverse):
    """``project_chunk`` for every chunk of steps, before a time loop that does not call it: one
    whose threads each run a share of the batch (``shares.py``) and read their rows of every
    step's gates. The same chunks, so the same sums, as inside the loop. Returns the gates: the
    ones given, or, when they are an inference buffer of fewer rows than steps (``ring_row``), a
    buffer of all T steps made here."""
    T = dense[0].shape[0]
    if gates.shape[0] < T:
        gates = np.empty((T, gates.shape[1], gates.shape[2]), gates.dtype)
    for s in range(0, T, dense[-1]):
        project_chunk(dense, gates, s, reverse)
    return gates


@njit(cache=True, nogil=True)
def check_ids(ids, V):
    """Raise unless every index in ids (any shape) is in [0, V)."""
    flat = ids.reshape(-1)
    for n in range(flat.shape[0]):
        if flat[n] < 0 or flat[n] >= V:
            raise ValueError("one-hot input: an index is outside [0, input_size)")


@njit(cache=True, nogil=True)
def onehot_table(W, b, ids=None):
    """W (G, V), b (G,) -> table (V, G) with table[c] = W[:, c] + b = W e_c + b: the input part
    of the gates for character c, one contiguous row per character.

    With ids (any shape), only the rows of the characters in ids are filled (the others are left
    unset): sampling one character at a time reads one row, and building all V rows (a transposed
    copy of W_ih, 0.5 MB for an LSTM with H = 512) took most of the time of each character."""
    G, V = W.shape
    table = np.empty((V, G), W.dtype)
    wanted = np.ones(V, np.bool_)
    if ids is not None:
        flat = ids.reshape(-1)
        if flat.shape[0] < V:
            wanted[:] = False
            for n in range(flat.shape[0]):
                wanted[flat[n]] = True
    for c in range(V):
        if wanted[c]:
            for g in range(G):
                table[c, g] = W[g, c] + b[g]
    return table


@njit(cache=True, nogil=True)
def gather_rows(table, ids, a):
    """a[n] = table[ids[n]] for the rows of one step: ids (B,), a (B, G)."""
    for n in range(ids.shape[0]):
        copy_row(table[ids[n]], a[n])


@njit(cache=True, nogil=True)
def gather_inputs(ids, W, b):
    """ids (T, B) ints, W (G, V), b (G,) -> a (T, B, G) with a[t, n] = W[:, ids[t, n]] + b: the
    projection of one-hot inputs, a column gather instead of a (T*B x V) (V x G) GEMM. (The
    sequence kernels gather step by step inside their time loop, ``gather_rows``, so that each
    row is still in cache when the step's recurrent GEMM adds to it.)"""
    T, B = ids.shape
    check_ids(ids, W.shape[1])
    table = onehot_table(W, b)
    a = np.empty((T, B, W.shape[0]), W.dtype)
    for t in range(T):
        gather_rows(table, ids[t], a[t])
    return a


@njit(cache=True, nogil=True)
def input_grad(dA, W):
    """dA (T, B, G), W (G, I) -> dx (T, B, I) = dA W, one GEMM."""
    T, B, G = dA.shape
    dx = np.empty((T, B, W.shape[1]), dA.dtype)
    dense_gemm(dA.reshape(T * B, G), W, False, dx.reshape(T * B, W.shape[1]), 0.0)
    return dx


@njit(cache=True, nogil=True)
def input_weight_grad(dA, x):
    """dA (T, B, G), x (T, B, I) -> dW_ih (G, I) = Σ_t dA_t^T x_t, one GEMM (``weight_grad_gemm``)."""
    T, B, G = dA.shape
    I = x.shape[2]
    dW = np.empty((G, I), dA.dtype)
    weight_grad_gemm(dA.reshape(T * B, G), x.reshape(T * B, I), dW, use_packed(B, T))
    return dW


@njit(cache=True, nogil=True)
def gather_weight_grad(dA, ids, V):
    """dA (T, B, G), ids (T, B) -> dW_ih (G, V): the gradient of ``gather_inputs``, a scatter-add
    of every step's gate gradients into the column of the character it read."""
    T, B, G = dA.shape
    flat = ids.reshape(T * B)
    check_ids(flat, V)
    dA2 = dA.reshape(T * B, G)
    dWt = np.zeros((V, G), dA.dtype)
    for n in range(T * B):
        row = dWt[flat[n]]
        src = dA2[n]
        for g in range(G):
            row[g] += src[g]
    return np.ascontiguousarray(dWt.T)
