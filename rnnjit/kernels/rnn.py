"""The vanilla (Elman) recurrent network, PyTorch's formulation, with tanh or relu.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        act = tanh or relu

Backward, with dh the total gradient reaching h_t:

    da = dh * act'(a_t)        tanh'(a) = 1 - h_t^2        relu'(a) = [h_t > 0]
    dx_t = da W_ih      dh_{t-1} = da W_hh      dW_ih += da^T x_t      dW_hh += da^T h_{t-1}

The factor W_hh^T act'(a) is applied once per step on the way back: over many steps its
repeated product shrinks or grows the gradient geometrically. That is the vanishing and
exploding gradient problem, and ``norms`` (returned by backward) shows it step by step.

The derivative is written in terms of the output h_t, so the forward pass keeps nothing but
the states. The sequence kernels come in an input part (W_ih x_t + b for all steps, a GEMM per
chunk of steps or, for one-hot inputs, a gather: ``rnnjit.kernels.dense``) and a recurrent part
(``rnn_recurrence``, ``rnn_recurrence_backward``). Layout of states, the reverse direction and the fast path (fused
per-row loops, numpy's OpenBLAS, float32 activations that vectorise) and the argument checks: as in
``lstm.py``.
"""

import numpy as np
from numba import njit, prange

from ._blas import column_sums
from ._smallgemm import pack_weights, recurrent_gemm, use_packed, weight_grad_gemm
from .activations import fast_tanh, relu
from .checks import check_backward, check_forward, check_step_backward, checked_types
from .dense import (check_ids, copy_row, dense_inputs, gather_rows, input_grad, input_weight_grad, onehot_table,
                    project_chunk, project_chunks, ring_row, sequence_length)
from .shares import batch_shares, norm_units, norms_of_units, share_rows, unit_sums


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_step_forward(x, prev_h, W_ih, W_hh, b_ih, b_hh, use_relu):
    """One step. x (B, I), prev_h (B, H) -> next_h, cache."""
    check_forward("rnn_step_forward", 1, x.shape, prev_h.shape, None, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape)
    a = x @ W_ih.T + b_ih + prev_h @ W_hh.T + b_hh
    next_h = relu(a) if use_relu else np.tanh(a)
    cache = (x, prev_h, W_ih, W_hh, next_h)
    return next_h, cache


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_step_backward(dnext_h, cache, use_relu):
    """Backward of one step -> dx, dprev_h, dW_ih, dW_hh, db (db is both db_ih and db_hh)."""
    x, prev_h, W_ih, W_hh, next_h = cache
    check_step_backward("rnn_step_backward", dnext_h.shape, None, prev_h.shape)
    if use_relu:
        da = dnext_h * (next_h > 0)
    else:
        da = dnext_h * (1 - next_h * next_h)
    dx = da @ W_ih
    dprev_h = da @ W_hh
    dW_ih = da.T @ x
    dW_hh = da.T @ prev_h
    return dx, dprev_h, dW_ih, dW_hh, da.sum(axis=0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def rnn_cell_forward(a, next_h, use_relu):
    """One batch row: a (H,) pre-activations -> next_h = act(a)."""
    if use_relu:
        zero = a.dtype.type(0)  # max(a[j], 0) would compare in float64
        for j in range(a.shape[0]):
            next_h[j] = max(a[j], zero)
    else:
        for j in range(a.shape[0]):
            next_h[j] = fast_tanh(a[j])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def rnn_cell_backward(h, dh, dout, da, use_relu):
    """One batch row: da = (dh + dout) * act'(a), written with the output h (H,)."""
    zero, one = h.dtype.type(0), h.dtype.type(1)  # literals would turn float32 math into float64
    if use_relu:
        for j in range(h.shape[0]):
            da[j] = dh[j] + dout[j] if h[j] > 0 else zero
    else:
        for j in range(h.shape[0]):
            da[j] = (dh[j] + dout[j]) * (one - h[j] * h[j])


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_recurrence(xa, h0, W_hh, reverse, use_relu, ids=None, table=None, dense=None):
    """The recurrent part of the forward pass. xa (T, B, H) holds the input part of every step,
    W_ih x_t + b_ih + b_hh (it is overwritten); each step adds W_hh h_{t-1} with one GEMM and
    applies the nonlinearity. With one-hot inputs (ids, table: as in ``lstm_recurrence``) each
    step first gathers its input part into xa; with dense inputs (dense =
    ``dense_inputs(x, W_ih, b_ih + b_hh)``) every few steps one GEMM writes the input part of the
    next few (``project_chunk``). With several threads and a batch of 16 or more, each thread
    runs the loop on a share of the rows (``shares.py``). Returns hs (T+1, B, H).

    Backward needs only hs, so xa is a workspace: it may have fewer rows than the sequence has
    steps, one for one-hot inputs and a chunk's steps for dense ones, reused step after step
    (``dense.ring_row``; ``rnn_forward`` passes such a one).
    """
    T = sequence_length(xa, ids, dense)
    _, B, H = xa.shape
    hs = np.empty((T + 1, B, H), xa.dtype)
    for b in range(B):
        copy_row(h0[b], hs[T if reverse else 0, b])
    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, True, packed)  # W_hh^T packed once for the recurrent products
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        if dense is not None:
            xa = project_chunks(dense, xa, reverse)  # the input part of every step, before the loop
        rnn_steps_on_threads(xa, hs, W_hh, Whp, packed, reverse, use_relu, ids, table, dense, shares)
    else:
        rnn_steps(xa, hs, W_hh, Whp, packed, reverse, use_relu, ids, table, dense, np.int64(0), B, shares > 1)
    return hs


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_steps(xa, hs, W_hh, Whp, packed, reverse, use_relu, ids, table, dense, b0, b1, share):
    """The time loop of ``rnn_recurrence`` over the batch rows b0 .. b1 - 1: all of them, or one
    thread's share (as ``lstm_steps``)."""
    T = hs.shape[0] - 1
    R = xa.shape[0]   # T, or fewer (``rnn_recurrence``)
    nxt = 0 if reverse else 1
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev_h = hs[t + 1 - nxt, b0:b1]
        next_h = hs[t + nxt, b0:b1]
        a = xa[ring_row(t, T, R, reverse), b0:b1]
        if ids is not None:
            gather_rows(table, ids[t, b0:b1], a)  # the input part of this step
        if dense is not None and not share and s % dense[-1] == 0:
            project_chunk(dense, xa, s, reverse)  # the input part of this step and the next few
        recurrent_gemm(prev_h, W_hh, True, Whp, packed, a, 1.0, s, share)  # the recurrent GEMM, added to the inputs
        for b in range(b1 - b0):
            rnn_cell_forward(a[b], next_h[b], use_relu)


@njit(cache=True, nogil=True, parallel=True)
def rnn_steps_on_threads(xa, hs, W_hh, Whp, packed, reverse, use_relu, ids, table, dense, shares):
    """``rnn_steps`` on ``shares`` threads, each on its share of the batch (``shares.py``)."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, xa.shape[1])
        rnn_steps(xa, hs, W_hh, Whp, packed, reverse, use_relu, ids, table, dense, b0, b1, shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, use_relu):
    """Run the network over a sequence: the recurrence, with the input part computed a chunk of
    steps (one GEMM) at a time inside it.
    Returns hs (T+1, B, H), all that backward needs: the pre-activations live in a workspace of
    one chunk of steps, so this is also the RNN's inference (there is no ``rnn_inference``)."""
    check_forward("rnn_forward", 1, x.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape)
    dense = dense_inputs(x, W_ih, b_ih + b_hh)
    xa = np.empty((min(dense[-1], x.shape[0]), x.shape[1], W_ih.shape[0]), x.dtype)
    return rnn_recurrence(xa, h0, W_hh, reverse, use_relu, dense=dense)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_forward_onehot(ids, h0, W_ih, W_hh, b_ih, b_hh, reverse, use_relu):
    """``rnn_forward`` of one-hot inputs given as indices ids (T, B): the input part is a gather
    of columns of W_ih instead of a GEMM, done step by step inside the recurrence."""
    check_forward("rnn_forward_onehot", 1, ids.shape, h0.shape, None, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape, onehot=True)
    check_ids(ids, W_ih.shape[1])
    xa = np.empty((1, ids.shape[1], W_ih.shape[0]), W_ih.dtype)   # one step's pre-activations at a time
    return rnn_recurrence(xa, h0, W_hh, reverse, use_relu, ids, onehot_table(W_ih, b_ih + b_hh, ids))


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_recurrence_backward(W_hh, hs, dout, dh_n, reverse, use_relu):
    """The recurrent part of backpropagation through time.

    Returns dG (T, B, H), the gradients of the pre-activations of every step (the input part
    takes them from here), dh0, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep.
    """
    check_backward("rnn_recurrence_backward", 1, None, None, W_hh.shape, hs.shape, None, None, None, dout.shape,
                   dh_n.shape, None)
    T, B, H = dout.shape
    nxt = 0 if reverse else 1
    dG = np.empty((T, B, H), dout.dtype)
    dh = dh_n.copy()
    sums = np.empty((T, norm_units(B)), np.float64)

    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, False, packed)  # W_hh packed once for dh_{t-1} = da W_hh
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        rnn_steps_backward_on_threads(W_hh, Whp, packed, hs, dout, dh, dG, sums, reverse, use_relu, shares)
    else:
        rnn_steps_backward(W_hh, Whp, packed, hs, dout, dh, dG, sums, reverse, use_relu, np.int64(0), B, shares > 1)
    norms = np.empty(T, np.float64)
    norms_of_units(sums, norms)

    dG2 = dG.reshape(T * B, H)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = np.empty((H, H), dout.dtype)
    weight_grad_gemm(dG2, prev_hs.reshape(T * B, H), dW_hh, packed)
    db = column_sums(dG2)
    return dG, dh, dW_hh, db, db.copy(), norms


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_steps_backward(W_hh, Whp, packed, hs, dout, dh, dG, sums, reverse, use_relu, b0, b1, share):
    """The time loop of ``rnn_recurrence_backward`` over the batch rows b0 .. b1 - 1, as in
    ``lstm_steps_backward``."""
    T = dout.shape[0]
    nxt = 0 if reverse else 1
    dh_rows = dh[b0:b1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        h = hs[t + nxt, b0:b1]
        da = dG[t, b0:b1]
        dout_t = dout[t, b0:b1]
        unit_sums(dh, dout[t], b0, b1, sums[t])
        for b in range(b1 - b0):
            rnn_cell_backward(h[b], dh_rows[b], dout_t[b], da[b], use_relu)
        recurrent_gemm(da, W_hh, False, Whp, packed, dh_rows, 0.0, s, share)  # dh_{t-1} = da W_hh


@njit(cache=True, nogil=True, parallel=True)
def rnn_steps_backward_on_threads(W_hh, Whp, packed, hs, dout, dh, dG, sums, reverse, use_relu, shares):
    """``rnn_steps_backward`` on ``shares`` threads, each on its share of the batch."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, dout.shape[1])
        rnn_steps_backward(W_hh, Whp, packed, hs, dout, dh, dG, sums, reverse, use_relu, b0, b1, shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def rnn_backward(x, W_ih, W_hh, hs, dout, dh_n, reverse, use_relu):
    """Backpropagation through time for ``rnn_forward``: the recurrent part, then the input part.

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep.
    """
    check_backward("rnn_backward", 1, x.shape, W_ih.shape, W_hh.shape, hs.shape, None, None, None, dout.shape,
                   dh_n.shape, None)
    dG, dh, dW_hh, db_ih, db_hh, norms = rnn_recurrence_backward(W_hh, hs, dout, dh_n, reverse, use_relu)
    return input_grad(dG, W_ih), dh, input_weight_grad(dG, x), dW_hh, db_ih, db_hh, norms
