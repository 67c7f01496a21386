"""Gated recurrent unit (Cho et al. 2014), PyTorch's formulation.

Gate order r, z, n (three blocks of H rows in ``W_ih`` and ``W_hh``). The reset gate multiplies
the *projected* previous state, bias included, which is what cuDNN and PyTorch compute:

    r_t  = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
    z_t  = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
    hn_t = W_hn h_{t-1} + b_hn
    n_t  = tanh(W_in x_t + b_in + r_t * hn_t)                  candidate state
    h_t  = (1 - z_t) * n_t + z_t * h_{t-1}

Backward, with dh the total gradient reaching h_t:

    dn = dh * (1 - z)          dz = dh * (h_{t-1} - n)          dh_{t-1} = dh * z  + ...
    dn_pre = dn * (1 - n^2)    dr_pre = dn_pre * hn * r(1-r)    dz_pre = dz * z(1-z)
    input side:     dax = [dr_pre, dz_pre, dn_pre]         -> dx_t = dax W_ih, dW_ih += dax^T x_t
    recurrent side: dah = [dr_pre, dz_pre, dn_pre * r]     -> dh_{t-1} += dah W_hh, dW_hh += dah^T h_{t-1}

The two sides differ only in the n block, so the sequence backward keeps both (``dGx``, ``dGh``).
The sequence kernels come in an input part (W_ih x_t + b_ih + [b_hr, b_hz, 0] for all steps, a
GEMM per chunk of steps or, for one-hot inputs, a gather of columns of W_ih: ``rnnjit.kernels.dense``; b_hn stays in
the recurrent part, inside r * (...)) and a recurrent part (``gru_recurrence``,
``gru_recurrence_backward``). Layout of states, the reverse direction and the fast path (fused per-row loops, numpy's
OpenBLAS, float32 activations that vectorise) and the argument checks: as in ``lstm.py``. ``gru_inference`` is
the forward without what backward needs (``rnnjit.no_grad()``), as ``lstm_inference``.
"""

import numpy as np
from numba import njit, prange

from ._blas import column_sums
from ._smallgemm import pack_weights, recurrent_gemm, use_packed, weight_grad_gemm
from .activations import fast_sigmoid, fast_tanh, sigmoid
from .checks import check_backward, check_forward, check_step_backward, checked_types
from .dense import (check_ids, copy_row, dense_inputs, gather_rows, input_grad, input_weight_grad, onehot_table,
                    project_chunk, project_chunks, ring_row, sequence_length)
from .shares import batch_shares, norm_units, norms_of_units, share_rows, unit_sums


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_step_forward(x, prev_h, W_ih, W_hh, b_ih, b_hh):
    """One GRU step. x (B, I), prev_h (B, H) -> next_h, cache."""
    check_forward("gru_step_forward", 3, x.shape, prev_h.shape, None, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape)
    H = prev_h.shape[1]
    ax = x @ W_ih.T + b_ih
    ah = prev_h @ W_hh.T + b_hh
    r = sigmoid(ax[:, 0 * H:1 * H] + ah[:, 0 * H:1 * H])
    z = sigmoid(ax[:, 1 * H:2 * H] + ah[:, 1 * H:2 * H])
    hn = ah[:, 2 * H:3 * H]
    n = np.tanh(ax[:, 2 * H:3 * H] + r * hn)
    next_h = (1 - z) * n + z * prev_h
    cache = (x, prev_h, W_ih, W_hh, r, z, n, hn)
    return next_h, cache


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_step_backward(dnext_h, cache):
    """Backward of one step -> dx, dprev_h, dW_ih, dW_hh, db_ih, db_hh."""
    x, prev_h, W_ih, W_hh, r, z, n, hn = cache
    check_step_backward("gru_step_backward", dnext_h.shape, None, prev_h.shape)
    dn = dnext_h * (1 - z)
    dz = dnext_h * (prev_h - n)
    dn_pre = dn * (1 - n * n)
    dr_pre = dn_pre * hn * r * (1 - r)
    dz_pre = dz * z * (1 - z)
    dax = np.concatenate((dr_pre, dz_pre, dn_pre), axis=1)
    dah = np.concatenate((dr_pre, dz_pre, dn_pre * r), axis=1)
    dx = dax @ W_ih
    dprev_h = dnext_h * z + dah @ W_hh
    dW_ih = dax.T @ x
    dW_hh = dah.T @ prev_h
    return dx, dprev_h, dW_ih, dW_hh, dax.sum(axis=0), dah.sum(axis=0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def gru_cell_forward(ax, ah, b_hn, prev_h, next_h, hn):
    """The fused gate math of one batch row. ax (3H,) holds W_ih x + b_ih (+ b_hr, b_hz in the r and
    z blocks) and becomes the activated r, z, n (in place); ah (3H,) holds W_hh h_{t-1} without
    bias. Writes h_t and hn = W_hn h_{t-1} + b_hn (H,)."""
    H = prev_h.shape[0]
    one = prev_h.dtype.type(1)  # 1 in the arrays' dtype: a literal 1 would turn float32 math into float64
    ar, az, an = ax[:H], ax[H:2 * H], ax[2 * H:]
    hr, hz, hh = ah[:H], ah[H:2 * H], ah[2 * H:]
    for j in range(H):
        r = fast_sigmoid(ar[j] + hr[j])
        z = fast_sigmoid(az[j] + hz[j])
        hn_v = hh[j] + b_hn[j]
        n = fast_tanh(an[j] + r * hn_v)
        next_h[j] = (one - z) * n + z * prev_h[j]
        ar[j] = r
        az[j] = z
        an[j] = n
        hn[j] = hn_v


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def gru_cell_backward(a, hn, prev_h, dh, dout, dax, dah):
    """Backward of ``gru_cell_forward`` for one batch row. dh + dout is the total dL/dh_t; dh
    leaves holding dh * z (the direct path to h_{t-1}); writes dax, dah (3H,)."""
    H = prev_h.shape[0]
    one = prev_h.dtype.type(1)  # 1 in the arrays' dtype: a literal 1 would turn float32 math into float64
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    xr, xz, xn = dax[:H], dax[H:2 * H], dax[2 * H:]
    hr, hz, hh = dah[:H], dah[H:2 * H], dah[2 * H:]
    for j in range(H):
        r = ar[j]
        z = az[j]
        n = an[j]
        dhv = dh[j] + dout[j]
        dn_pre = dhv * (one - z) * (one - n * n)
        dr_pre = dn_pre * hn[j] * r * (one - r)
        dz_pre = dhv * (prev_h[j] - n) * z * (one - z)
        xr[j] = dr_pre
        xz[j] = dz_pre
        xn[j] = dn_pre
        hr[j] = dr_pre
        hz[j] = dz_pre
        hh[j] = dn_pre * r
        dh[j] = dhv * z


@njit(cache=True, nogil=True)
def gru_input_bias(b_ih, b_hh):
    """The bias of the input part: b_ih, plus b_hr and b_hz (they add to the inputs in the r and z
    blocks). b_hn stays out: it is inside r * (W_hn h + b_hn), in the recurrent part."""
    H = b_ih.shape[0] // 3
    bias = b_ih.copy()
    bias[:2 * H] += b_hh[:2 * H]
    return bias


@njit(cache=True, nogil=True, error_model="numpy")
def gru_recurrence(gates, h0, W_hh, b_hh, reverse, ids=None, table=None, dense=None):
    """The recurrent part of the forward pass: the time loop.

    gates (T, B, 3H) comes in holding the input part of every step, W_ih x_t + ``gru_input_bias``
    (``project_inputs``), and leaves holding r, z, n. Each step computes W_hh h_{t-1} with one
    GEMM and runs the fused gate math, adding b_hn inside r * (...). With one-hot inputs (ids,
    table = ``onehot_table(W_ih, gru_input_bias(b_ih, b_hh))``: as in ``lstm_recurrence``) each
    step first gathers its input part into gates; with dense inputs (dense =
    ``dense_inputs(x, W_ih, gru_input_bias(b_ih, b_hh))``: as in ``lstm_recurrence``) every few
    steps one GEMM writes the input part of the next few. With several threads and a batch of 16
    or more, each thread runs the loop on a share of the rows (``shares.py``).
    Returns hs (T+1, B, H) and hns (T, B, H) holding W_hn h_{t-1} + b_hn (what backward needs).

    In inference (``gru_inference``) gates has fewer rows than the sequence has steps, reused
    step after step as in ``lstm_recurrence``, and hns has one row.
    """
    T = sequence_length(gates, ids, dense)
    _, B, G = gates.shape
    H = h0.shape[1]
    keep = gates.shape[0] == T   # every step's gates and W_hn h_{t-1} + b_hn, for backward
    hs = np.empty((T + 1, B, H), gates.dtype)
    hns = np.empty((T if keep else 1, B, H), gates.dtype)
    hh = np.empty((B, G), gates.dtype)
    for b in range(B):
        copy_row(h0[b], hs[T if reverse else 0, b])
    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, True, packed)  # W_hh^T packed once for the recurrent products
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        if dense is not None:
            gates = project_chunks(dense, gates, reverse)  # the input part of every step, before the loop
        gru_steps_on_threads(gates, hs, hns, hh, W_hh, Whp, packed, b_hh, reverse, ids, table, dense, shares)
    else:
        gru_steps(gates, hs, hns, hh, W_hh, Whp, packed, b_hh, reverse, ids, table, dense, np.int64(0), B,
                  shares > 1)
    return hs, hns


@njit(cache=True, nogil=True, error_model="numpy")
def gru_steps(gates, hs, hns, hh, W_hh, Whp, packed, b_hh, reverse, ids, table, dense, b0, b1, share):
    """The time loop of ``gru_recurrence`` over the batch rows b0 .. b1 - 1: all of them, or one
    thread's share (as ``lstm_steps``). hh (B, 3H) holds each step's W_hh h_{t-1}."""
    T = hs.shape[0] - 1
    H = hs.shape[2]
    R, N = gates.shape[0], hns.shape[0]   # T and T, or fewer in inference (``gru_recurrence``)
    nxt = 0 if reverse else 1
    b_hn = b_hh[2 * H:]
    hh_rows = hh[b0:b1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev_h = hs[t + 1 - nxt, b0:b1]
        next_h = hs[t + nxt, b0:b1]
        a = gates[ring_row(t, T, R, reverse), b0:b1]
        hn = hns[t % N, b0:b1]
        if ids is not None:
            gather_rows(table, ids[t, b0:b1], a)  # the input part of this step
        if dense is not None and not share and s % dense[-1] == 0:
            project_chunk(dense, gates, s, reverse)  # the input part of this step and the next few
        recurrent_gemm(prev_h, W_hh, True, Whp, packed, hh_rows, 0.0, s, share)  # the recurrent GEMM
        for b in range(b1 - b0):
            gru_cell_forward(a[b], hh_rows[b], b_hn, prev_h[b], next_h[b], hn[b])


@njit(cache=True, nogil=True, parallel=True)
def gru_steps_on_threads(gates, hs, hns, hh, W_hh, Whp, packed, b_hh, reverse, ids, table, dense, shares):
    """``gru_steps`` on ``shares`` threads, each on its share of the batch (``shares.py``)."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, gates.shape[1])
        gru_steps(gates, hs, hns, hh, W_hh, Whp, packed, b_hh, reverse, ids, table, dense, b0, b1, shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """Run a GRU over a sequence: the recurrence, with the input part computed a chunk of steps
    (one GEMM) at a time inside it.

    Returns hs (T+1, B, H), gates (T, B, 3H) holding r, z, n of every step, and hns (T, B, H)
    holding W_hn h_{t-1} + b_hn (what backward needs).
    """
    check_forward("gru_forward", 3, x.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape)
    gates = np.empty((x.shape[0], x.shape[1], W_ih.shape[0]), x.dtype)
    hs, hns = gru_recurrence(gates, h0, W_hh, b_hh, reverse, dense=dense_inputs(x, W_ih, gru_input_bias(b_ih, b_hh)))
    return hs, gates, hns


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_forward_onehot(ids, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``gru_forward`` of one-hot inputs given as indices ids (T, B): the input part is a gather
    of columns of W_ih (plus the same bias) instead of a GEMM, done step by step inside the
    recurrence."""
    check_forward("gru_forward_onehot", 3, ids.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape, onehot=True)
    check_ids(ids, W_ih.shape[1])
    gates = np.empty((ids.shape[0], ids.shape[1], W_ih.shape[0]), W_ih.dtype)
    hs, hns = gru_recurrence(gates, h0, W_hh, b_hh, reverse, ids, onehot_table(W_ih, gru_input_bias(b_ih, b_hh), ids))
    return hs, gates, hns


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_inference(x, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``gru_forward`` without what backward needs (``torch.no_grad``'s forward): the gates of
    one chunk of steps at a time and one row of W_hn h_{t-1} + b_hn, not all T. The same hs, bit
    for bit. Returns hs (T+1, B, H)."""
    check_forward("gru_inference", 3, x.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape)
    dense = dense_inputs(x, W_ih, gru_input_bias(b_ih, b_hh))
    gates = np.empty((min(dense[-1], x.shape[0]), x.shape[1], W_ih.shape[0]), x.dtype)
    hs, _ = gru_recurrence(gates, h0, W_hh, b_hh, reverse, dense=dense)
    return hs


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_inference_onehot(ids, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``gru_inference`` of one-hot inputs given as indices ids (T, B): one row of gates, which
    each step gathers its input part into (``gru_forward_onehot``)."""
    check_forward("gru_inference_onehot", 3, ids.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape, onehot=True)
    check_ids(ids, W_ih.shape[1])
    gates = np.empty((1, ids.shape[1], W_ih.shape[0]), W_ih.dtype)
    hs, _ = gru_recurrence(gates, h0, W_hh, b_hh, reverse, ids, onehot_table(W_ih, gru_input_bias(b_ih, b_hh), ids))
    return hs


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_recurrence_backward(W_hh, hs, gates, hns, dout, dh_n, reverse):
    """The recurrent part of backpropagation through time.

    Returns dGx (T, B, 3H), the gradients of the input side of the gates of every step (what the
    input part needs: dx = dGx W_ih, dW_ih = dGx^T x), dh0, dW_hh, db_ih, db_hh and ``norms``
    (T,), the L2 norm of the total dL/dh_t at every timestep.
    """
    check_backward("gru_recurrence_backward", 3, None, None, W_hh.shape, hs.shape, None, gates.shape, hns.shape,
                   dout.shape, dh_n.shape, None)
    T, B, H = dout.shape
    G = 3 * H
    nxt = 0 if reverse else 1
    dGx = np.empty((T, B, G), dout.dtype)
    dGh = np.empty((T, B, G), dout.dtype)
    dh = dh_n.copy()
    sums = np.empty((T, norm_units(B)), np.float64)

    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, False, packed)  # W_hh packed once for dh_{t-1} = da W_hh
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        gru_steps_backward_on_threads(W_hh, Whp, packed, hs, gates, hns, dout, dh, dGx, dGh, sums, reverse, shares)
    else:
        gru_steps_backward(W_hh, Whp, packed, hs, gates, hns, dout, dh, dGx, dGh, sums, reverse, np.int64(0), B,
                           shares > 1)
    norms = np.empty(T, np.float64)
    norms_of_units(sums, norms)

    dGh2 = dGh.reshape(T * B, G)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = np.empty((G, H), dout.dtype)
    weight_grad_gemm(dGh2, prev_hs.reshape(T * B, H), dW_hh, packed)
    return dGx, dh, dW_hh, column_sums(dGx.reshape(T * B, G)), column_sums(dGh2), norms


@njit(cache=True, nogil=True, error_model="numpy")
def gru_steps_backward(W_hh, Whp, packed, hs, gates, hns, dout, dh, dGx, dGh, sums, reverse, b0, b1, share):
    """The time loop of ``gru_recurrence_backward`` over the batch rows b0 .. b1 - 1, as in
    ``lstm_steps_backward``."""
    T = dout.shape[0]
    nxt = 0 if reverse else 1
    dh_rows = dh[b0:b1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev_h = hs[t + 1 - nxt, b0:b1]
        a = gates[t, b0:b1]
        hn = hns[t, b0:b1]
        dax = dGx[t, b0:b1]
        dah = dGh[t, b0:b1]
        dout_t = dout[t, b0:b1]
        unit_sums(dh, dout[t], b0, b1, sums[t])
        for b in range(b1 - b0):
            gru_cell_backward(a[b], hn[b], prev_h[b], dh_rows[b], dout_t[b], dax[b], dah[b])
        recurrent_gemm(dah, W_hh, False, Whp, packed, dh_rows, 1.0, s, share)  # dh_{t-1} = dh * z + dah W_hh


@njit(cache=True, nogil=True, parallel=True)
def gru_steps_backward_on_threads(W_hh, Whp, packed, hs, gates, hns, dout, dh, dGx, dGh, sums, reverse, shares):
    """``gru_steps_backward`` on ``shares`` threads, each on its share of the batch."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, dout.shape[1])
        gru_steps_backward(W_hh, Whp, packed, hs, gates, hns, dout, dh, dGx, dGh, sums, reverse, b0, b1,
                           shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def gru_backward(x, W_ih, W_hh, hs, gates, hns, dout, dh_n, reverse):
    """Backpropagation through time for ``gru_forward``: the recurrent part, then the input part.

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep.
    """
    check_backward("gru_backward", 3, x.shape, W_ih.shape, W_hh.shape, hs.shape, None, gates.shape, hns.shape,
                   dout.shape, dh_n.shape, None)
    dGx, dh, dW_hh, db_ih, db_hh, norms = gru_recurrence_backward(W_hh, hs, gates, hns, dout, dh_n, reverse)
    return input_grad(dGx, W_ih), dh, input_weight_grad(dGx, x), dW_hh, db_ih, db_hh, norms
