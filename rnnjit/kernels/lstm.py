"""Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch's formulation.

Gate order i, f, g, o (the rows of ``W_ih`` and ``W_hh`` are four blocks of H rows each):

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)      candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Backward, with dh and dc the total gradients reaching h_t and c_t:

    do = dh * tanh(c_t)
    dc = dc + dh * o_t * (1 - tanh(c_t)^2)
    di = dc * g_t      df = dc * c_{t-1}      dg = dc * i_t      dc_{t-1} = dc * f_t
    da = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]       (pre-activation gates)
    dx_t = da W_ih      dh_{t-1} = da W_hh      dW_ih += da^T x_t      dW_hh += da^T h_{t-1}

The file holds two versions of the same math:

* ``lstm_step_forward`` / ``lstm_step_backward``: one timestep, written with whole-array
  expressions that read like the equations above (the teaching path).
* ``lstm_forward`` / ``lstm_backward``: a whole sequence, the way cuDNN and torch-rnn do it
  (the training path), in two parts (``lstm_inference``: the forward without what backward
  needs, for ``rnnjit.no_grad()``):

  - the input part, W_ih x_t + b_ih + b_hh, no recurrence in it, so a GEMM over many steps at
    once: over all T (``dense.project_inputs``), or, as the sequence kernels do, over chunks of
    steps (256 KB of gates) computed just before the time loop reaches them, so that they are
    still in cache (``dense.project_chunk``: at B = 32, H = 512 all T steps' gates are 26 MB,
    written to memory and read back; chunks made a second layer's forward 15% faster). In
    backward, after the loop,
    ``dx = dG W_ih`` and ``dW_ih = dG^T x`` with one GEMM each (``dense.input_grad``,
    ``dense.input_weight_grad``). With one-hot inputs (``lstm_forward_onehot``) the projection
    is a gather of columns of W_ih, table[c] = W_ih[:, c] + b (``dense.onehot_table``), done
    step by step inside the time loop so that it stays in cache; dW_ih is a scatter-add
    (``dense.gather_weight_grad``), and dx is not needed.
  - the recurrent part (``lstm_recurrence``, ``lstm_recurrence_backward``): each step adds one
    recurrent GEMM to the step's input part and runs one fused loop over the gates of each
    batch row (``lstm_cell_forward``); backward keeps every step's gate gradients ``dG`` and
    forms ``dW_hh`` with one GEMM after the loop. The time loops themselves are ``lstm_steps``
    and ``lstm_steps_backward``, over a range of batch rows: all of them, or, with several
    threads, each thread's share (``shares.py``: the rows of a batch never meet in a
    recurrence, so each thread can run all T steps on its own rows).

  All workspaces are allocated before the loop. The products go to a packed micro-kernel
  (``_smallgemm``) or numpy's OpenBLAS (``_blas.gemm``), and in float32 the fused loops use a rational tanh and sigmoid that vectorise
  (``activations.fast_tanh``, error < 4e-7); float64 uses Cephes' exp and tanh written as
  arithmetic (within 2 ulp of libm's, and they vectorise too).

Sequence layout: ``x`` is (T, B, I). Hidden and cell states live in buffers of T + 1 rows,
``hs`` and ``cs``: in the forward direction ``hs[0]`` is h0 and ``hs[t + 1]`` is the state after
reading ``x[t]``; with ``reverse=True`` the sequence is read from t = T-1 down to 0, ``hs[T]``
is h0 and ``hs[t]`` is the state after reading ``x[t]``. Either way the outputs are a
contiguous view of T rows and the previous states are the other T rows, so ``dW_hh`` is a
single GEMM over them.

Every kernel starts by checking the shapes of its arguments against each other
(``checks.py``): a wrong one is a ValueError that names it, not a read past the end of an array.
``@checked_types`` checks their types (NumPy arrays, dimensions, one float dtype, C order) the
first time Numba meets them, before it compiles anything: a TypeError in one line, not a page.
"""

import numpy as np
from numba import njit, prange

from ._blas import column_sums
from ._smallgemm import pack_weights, recurrent_gemm, use_packed, weight_grad_gemm
from .activations import fast_tanh, lstm_gate_activations, sigmoid
from .checks import check_backward, check_forward, check_step_backward, checked_types
from .dense import (check_ids, copy_row, dense_inputs, gather_rows, input_grad, input_weight_grad, onehot_table,
                    project_chunk, project_chunks, ring_row, sequence_length)
from .shares import batch_shares, norm_units, norms_of_units, share_rows, unit_sums


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_step_forward(x, prev_h, prev_c, W_ih, W_hh, b_ih, b_hh):
    """One LSTM step. x (B, I), prev_h (B, H), prev_c (B, H) -> next_h, next_c, cache."""
    check_forward("lstm_step_forward", 4, x.shape, prev_h.shape, prev_c.shape, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape)
    H = prev_h.shape[1]
    a = x @ W_ih.T + b_ih + prev_h @ W_hh.T + b_hh
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, W_ih, W_hh, i, f, g, o, next_c)
    return next_h, next_c, cache


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward of one step -> dx, dprev_h, dprev_c, dW_ih, dW_hh, db (db is both db_ih and db_hh)."""
    x, prev_h, prev_c, W_ih, W_hh, i, f, g, o, next_c = cache
    check_step_backward("lstm_step_backward", dnext_h.shape, dnext_c.shape, prev_h.shape)
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.concatenate((di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)), axis=1)
    dx = da @ W_ih
    dprev_h = da @ W_hh
    dW_ih = da.T @ x
    dW_hh = da.T @ prev_h
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dW_ih, dW_hh, db


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def lstm_cell_forward(a, prev_c, next_c, next_h):
    """The fused gate math of one batch row: a (4H,) pre-activations i, f, g, o in, activated
    gates out (in place); writes c_t and h_t (H,). A loop LLVM turns into SIMD code."""
    H = prev_c.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    for j in range(H):
        i, f, g, o = lstm_gate_activations(ai[j], af[j], ag[j], ao[j])  # sigmoid, sigmoid, tanh, sigmoid
        c = f * prev_c[j] + i * g
        next_c[j] = c
        next_h[j] = o * fast_tanh(c)
        ai[j] = i
        af[j] = f
        ag[j] = g
        ao[j] = o


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def lstm_cell_backward(a, prev_c, c_t, dh, dout, dc, da):
    """Backward of ``lstm_cell_forward`` for one batch row. dh + dout is the total dL/dh_t; dc (H,)
    comes in as dL/dc_t and leaves as dL/dc_{t-1}; writes da (4H,)."""
    H = prev_c.shape[0]
    one = a.dtype.type(1)  # 1 in the arrays' dtype: a literal 1 would turn float32 math into float64
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    di, df, dg, do = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:]
    for j in range(H):
        i = ai[j]
        f = af[j]
        g = ag[j]
        o = ao[j]
        dhv = dh[j] + dout[j]
        tanh_c = fast_tanh(c_t[j])
        dcv = dc[j] + dhv * o * (one - tanh_c * tanh_c)
        di[j] = dcv * g * i * (one - i)
        df[j] = dcv * prev_c[j] * f * (one - f)
        dg[j] = dcv * i * (one - g * g)
        do[j] = dhv * tanh_c * o * (one - o)
        dc[j] = dcv * f


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_recurrence(gates, h0, c0, W_hh, reverse, ids=None, table=None, dense=None):
    """The recurrent part of the forward pass: the time loop.

    gates (T, B, 4H) comes in holding the input part of every step, W_ih x_t + b_ih + b_hh
    (``project_inputs``), and leaves holding the activated i, f, g, o. Each step adds the
    recurrent part W_hh h_{t-1} with one GEMM and runs the fused gate math.
    With one-hot inputs, ids (T, B) and table = ``onehot_table(W_ih, b_ih + b_hh)``, gates comes
    in empty and each step first gathers its input part, gates[t, b] = table[ids[t, b]], so that
    the rows are still in cache when the recurrent GEMM adds to them (a separate pass over all
    steps would write them to memory and read them back). With dense inputs,
    dense = ``dense_inputs(x, W_ih, b_ih + b_hh)``, gates also comes in empty, and every few
    steps one GEMM writes the input part of the next few (``project_chunk``), for the same reason.
    With several threads and a batch of 16 or more, each thread runs the loop on a share of the
    rows (``shares.py``). Returns hs, cs (T+1, B, H).

    In inference (``lstm_inference``) gates has fewer rows than the sequence has steps: one for
    one-hot inputs, a chunk's steps for dense ones, reused step after step (``dense.ring_row``),
    and cs comes back with two rows, c_{t-1} and c_t, taking turns.
    """
    T = sequence_length(gates, ids, dense)
    B = gates.shape[1]
    H = h0.shape[1]
    keep = gates.shape[0] == T   # every step's gates and c_t, for backward
    hs = np.empty((T + 1, B, H), gates.dtype)
    cs = np.empty((T + 1 if keep else 2, B, H), gates.dtype)
    first = T if reverse else 0
    for b in range(B):
        copy_row(h0[b], hs[first, b])
        copy_row(c0[b], cs[first % cs.shape[0], b])
    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, True, packed)  # W_hh^T packed once for the recurrent products
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        if dense is not None:
            gates = project_chunks(dense, gates, reverse)  # the input part of every step, before the loop
        lstm_steps_on_threads(gates, hs, cs, W_hh, Whp, packed, reverse, ids, table, dense, shares)
    else:
        lstm_steps(gates, hs, cs, W_hh, Whp, packed, reverse, ids, table, dense, np.int64(0), B, shares > 1)
    return hs, cs


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_steps(gates, hs, cs, W_hh, Whp, packed, reverse, ids, table, dense, b0, b1, share):
    """The time loop of ``lstm_recurrence`` over the batch rows b0 .. b1 - 1: all of them (share
    False: the products on all threads, the input part a chunk at a time inside the loop), or
    one thread's share (share True: the products on this thread, the input part made before)."""
    T = hs.shape[0] - 1
    R, C = gates.shape[0], cs.shape[0]   # T and T + 1, or fewer in inference (``lstm_recurrence``)
    nxt = 0 if reverse else 1  # row of hs holding the state after step t is t + nxt
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev_h = hs[t + 1 - nxt, b0:b1]
        prev_c = cs[(t + 1 - nxt) % C, b0:b1]
        next_h = hs[t + nxt, b0:b1]
        next_c = cs[(t + nxt) % C, b0:b1]
        a = gates[ring_row(t, T, R, reverse), b0:b1]
        if ids is not None:
            gather_rows(table, ids[t, b0:b1], a)  # the input part of this step
        if dense is not None and not share and s % dense[-1] == 0:
            project_chunk(dense, gates, s, reverse)  # the input part of this step and the next few
        recurrent_gemm(prev_h, W_hh, True, Whp, packed, a, 1.0, s, share)  # the recurrent GEMM, added to the inputs
        for b in range(b1 - b0):
            lstm_cell_forward(a[b], prev_c[b], next_c[b], next_h[b])


@njit(cache=True, nogil=True, parallel=True)
def lstm_steps_on_threads(gates, hs, cs, W_hh, Whp, packed, reverse, ids, table, dense, shares):
    """``lstm_steps`` on ``shares`` threads, each on its share of the batch (``shares.py``)."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, gates.shape[1])
        # (share: shares > 1, True, but a run-time value: a literal True would be a type of its own
        # to Numba and compile lstm_steps a second time)
        lstm_steps(gates, hs, cs, W_hh, Whp, packed, reverse, ids, table, dense, b0, b1, shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse):
    """Run an LSTM over a sequence: the recurrence, with the input part computed a chunk of steps
    (one GEMM) at a time inside it.

    Returns hs (T+1, B, H), cs (T+1, B, H) and gates (T, B, 4H), the activated i, f, g, o of
    every step (what backward needs).
    """
    check_forward("lstm_forward", 4, x.shape, h0.shape, c0.shape, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape)
    gates = np.empty((x.shape[0], x.shape[1], W_ih.shape[0]), x.dtype)
    hs, cs = lstm_recurrence(gates, h0, c0, W_hh, reverse, dense=dense_inputs(x, W_ih, b_ih + b_hh))
    return hs, cs, gates


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_forward_onehot(ids, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``lstm_forward`` of one-hot inputs given as indices ids (T, B): the input part is a gather
    of columns of W_ih (W_ih e_c = W_ih[:, c]) instead of a GEMM, done step by step inside the
    recurrence. Same results."""
    check_forward("lstm_forward_onehot", 4, ids.shape, h0.shape, c0.shape, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape, onehot=True)
    check_ids(ids, W_ih.shape[1])
    gates = np.empty((ids.shape[0], ids.shape[1], W_ih.shape[0]), W_ih.dtype)
    hs, cs = lstm_recurrence(gates, h0, c0, W_hh, reverse, ids, onehot_table(W_ih, b_ih + b_hh, ids))
    return hs, cs, gates


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_inference(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``lstm_forward`` without what backward needs (``torch.no_grad``'s forward): the gates of
    one chunk of steps at a time and the last two cell states, not all T. The same hs, bit for
    bit, in less memory (B = 128, H = 512, T = 100: 105 MB of gates less) and less time.

    Returns hs (T+1, B, H) and c_n (B, H), the cell state after the last step read.
    """
    check_forward("lstm_inference", 4, x.shape, h0.shape, c0.shape, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape)
    dense = dense_inputs(x, W_ih, b_ih + b_hh)
    gates = np.empty((min(dense[-1], x.shape[0]), x.shape[1], W_ih.shape[0]), x.dtype)
    hs, cs = lstm_recurrence(gates, h0, c0, W_hh, reverse, dense=dense)
    return hs, cs[0 if reverse else x.shape[0] % cs.shape[0]]


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_inference_onehot(ids, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse):
    """``lstm_inference`` of one-hot inputs given as indices ids (T, B): one row of gates, which
    each step gathers its input part into (``lstm_forward_onehot``)."""
    check_forward("lstm_inference_onehot", 4, ids.shape, h0.shape, c0.shape, W_ih.shape, W_hh.shape, b_ih.shape,
                  b_hh.shape, onehot=True)
    check_ids(ids, W_ih.shape[1])
    gates = np.empty((1, ids.shape[1], W_ih.shape[0]), W_ih.dtype)
    hs, cs = lstm_recurrence(gates, h0, c0, W_hh, reverse, ids, onehot_table(W_ih, b_ih + b_hh, ids))
    return hs, cs[0 if reverse else ids.shape[0] % cs.shape[0]]


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_recurrence_backward(W_hh, hs, cs, gates, dout, dh_n, dc_n, reverse):
    """The recurrent part of backpropagation through time.

    dout (T, B, H) is dL/dh_t from above (the outputs), dh_n and dc_n the gradients of the
    final state. Returns dG (T, B, 4H), the gradients of the pre-activation gates of every step
    (what the input part needs: dx = dG W_ih, dW_ih = dG^T x), dh0, dc0, dW_hh, db_ih, db_hh and
    ``norms`` (T,), the L2 norm of the total dL/dh_t at every timestep.
    """
    check_backward("lstm_recurrence_backward", 4, None, None, W_hh.shape, hs.shape, cs.shape, gates.shape, None,
                   dout.shape, dh_n.shape, dc_n.shape)
    T, B, H = dout.shape
    G = 4 * H
    nxt = 0 if reverse else 1
    dG = np.empty((T, B, G), dout.dtype)
    dh = dh_n.copy()
    dc = dc_n.copy()
    sums = np.empty((T, norm_units(B)), np.float64)

    packed = use_packed(B, T, W_hh.nbytes)
    Whp = pack_weights(W_hh, False, packed)  # W_hh packed once for dh_{t-1} = da W_hh
    shares = batch_shares(B, T, Whp.nbytes, packed)
    if shares > 1:
        lstm_steps_backward_on_threads(W_hh, Whp, packed, cs, gates, dout, dh, dc, dG, sums, reverse, shares)
    else:
        lstm_steps_backward(W_hh, Whp, packed, cs, gates, dout, dh, dc, dG, sums, reverse, np.int64(0), B,
                            shares > 1)
    norms = np.empty(T, np.float64)
    norms_of_units(sums, norms)

    dG2 = dG.reshape(T * B, G)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = np.empty((G, H), dout.dtype)
    weight_grad_gemm(dG2, prev_hs.reshape(T * B, H), dW_hh, packed)
    db = column_sums(dG2)
    return dG, dh, dc, dW_hh, db, db.copy(), norms


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_steps_backward(W_hh, Whp, packed, cs, gates, dout, dh, dc, dG, sums, reverse, b0, b1, share):
    """The time loop of ``lstm_recurrence_backward`` over the batch rows b0 .. b1 - 1, as in
    ``lstm_steps``: dh and dc (B, H) carry dL/dh and dL/dc back a step at a time, dG gets every
    step's gate gradients, sums the squared norms of dL/dh_t per unit of eight rows."""
    T = dout.shape[0]
    nxt = 0 if reverse else 1
    dh_rows = dh[b0:b1]
    dc_rows = dc[b0:b1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev_c = cs[t + 1 - nxt, b0:b1]
        c_t = cs[t + nxt, b0:b1]
        a = gates[t, b0:b1]
        dout_t = dout[t, b0:b1]
        da = dG[t, b0:b1]
        unit_sums(dh, dout[t], b0, b1, sums[t])
        for b in range(b1 - b0):
            lstm_cell_backward(a[b], prev_c[b], c_t[b], dh_rows[b], dout_t[b], dc_rows[b], da[b])
        recurrent_gemm(da, W_hh, False, Whp, packed, dh_rows, 0.0, s, share)  # dh_{t-1} = da W_hh


@njit(cache=True, nogil=True, parallel=True)
def lstm_steps_backward_on_threads(W_hh, Whp, packed, cs, gates, dout, dh, dc, dG, sums, reverse, shares):
    """``lstm_steps_backward`` on ``shares`` threads, each on its share of the batch."""
    for n in prange(shares):
        b0, b1 = share_rows(n, shares, dout.shape[1])
        lstm_steps_backward(W_hh, Whp, packed, cs, gates, dout, dh, dc, dG, sums, reverse, b0, b1, shares > 1)


@checked_types
@njit(cache=True, nogil=True, error_model="numpy")
def lstm_backward(x, W_ih, W_hh, hs, cs, gates, dout, dh_n, dc_n, reverse):
    """Backpropagation through time for ``lstm_forward``: the recurrent part, then the input part.

    Returns dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the
    total dL/dh_t at every timestep.
    """
    check_backward("lstm_backward", 4, x.shape, W_ih.shape, W_hh.shape, hs.shape, cs.shape, gates.shape, None,
                   dout.shape, dh_n.shape, dc_n.shape)
    dG, dh, dc, dW_hh, db_ih, db_hh, norms = lstm_recurrence_backward(W_hh, hs, cs, gates, dout, dh_n, dc_n,
                                                                     reverse)
    return input_grad(dG, W_ih), dh, dc, input_weight_grad(dG, x), dW_hh, db_ih, db_hh, norms
