"""The vanilla (Elman) recurrent network, PyTorch's formulation, with tanh or relu.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        act = tanh or relu

Backward, with dh the total gradient reaching h_t:

    da = dh * act'(a_t)        tanh'(a) = 1 - h_t^2        relu'(a) = [h_t > 0]
    dx_t = da W_ih      dh_{t-1} = da W_hh      dW_ih += da^T x_t      dW_hh += da^T h_{t-1}

The factor W_hh^T act'(a) is applied once per step on the way back: over many steps its
repeated product shrinks or grows the gradient geometrically. That is the vanishing and
exploding gradient problem, and ``norms`` (returned by backward) shows it step by step.

The derivative is written in terms of the output h_t, so the forward pass keeps nothing but
the states. Layout of states and the reverse direction: as in ``lstm.py``.
"""

import numpy as np
from numba import njit

from .activations import relu


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_step_forward(x, prev_h, W_ih, W_hh, b_ih, b_hh, use_relu):
    """One step. x (B, I), prev_h (B, H) -> next_h, cache."""
    a = x @ W_ih.T + b_ih + prev_h @ W_hh.T + b_hh
    next_h = relu(a) if use_relu else np.tanh(a)
    cache = (x, prev_h, W_ih, W_hh, next_h)
    return next_h, cache


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_step_backward(dnext_h, cache, use_relu):
    """Backward of one step -> dx, dprev_h, dW_ih, dW_hh, db (db is both db_ih and db_hh)."""
    x, prev_h, W_ih, W_hh, next_h = cache
    if use_relu:
        da = dnext_h * (next_h > 0)
    else:
        da = dnext_h * (1 - next_h * next_h)
    dx = da @ W_ih
    dprev_h = da @ W_hh
    dW_ih = da.T @ x
    dW_hh = da.T @ prev_h
    return dx, dprev_h, dW_ih, dW_hh, da.sum(axis=0)


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, use_relu):
    """Run the network over a sequence. Returns hs (T+1, B, H)."""
    T, B, I = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, B, H), x.dtype)
    xa = np.empty((T, B, H), x.dtype)
    hh = np.empty((B, H), x.dtype)
    bias = b_ih + b_hh
    nxt = 0 if reverse else 1
    hs[T if reverse else 0] = h0

    np.dot(x.reshape(T * B, I), W_ih.T, xa.reshape(T * B, H))  # inputs of all steps: one GEMM
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev_h = hs[t + 1 - nxt]
        next_h = hs[t + nxt]
        np.dot(prev_h, W_hh.T, hh)  # the recurrent GEMM
        for b in range(B):
            for j in range(H):
                a = xa[t, b, j] + hh[b, j] + bias[j]
                next_h[b, j] = max(a, 0) if use_relu else np.tanh(a)
    return hs


@njit(cache=True, nogil=True, error_model="numpy")
def rnn_backward(x, W_ih, W_hh, hs, dout, dh_n, reverse, use_relu):
    """Backpropagation through time for ``rnn_forward``.

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep.
    """
    T, B, I = x.shape
    H = hs.shape[2]
    nxt = 0 if reverse else 1
    dG = np.empty((T, B, H), x.dtype)
    dh = dh_n.copy()
    norms = np.empty(T, np.float64)

    for s in range(T):
        t = s if reverse else T - 1 - s
        h = hs[t + nxt]
        da = dG[t]
        sq = 0.0
        for b in range(B):
            for j in range(H):
                dhv = dh[b, j] + dout[t, b, j]
                sq += dhv * dhv
                if use_relu:
                    da[b, j] = dhv if h[b, j] > 0 else 0
                else:
                    da[b, j] = dhv * (1 - h[b, j] * h[b, j])
        norms[t] = np.sqrt(sq)
        np.dot(da, W_hh, dh)  # dh_{t-1} = da W_hh

    dG2 = dG.reshape(T * B, H)
    dx = np.dot(dG2, W_ih).reshape(T, B, I)
    dW_ih = np.dot(dG2.T, x.reshape(T * B, I))
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = np.dot(dG2.T, prev_hs.reshape(T * B, H))
    db = dG2.sum(axis=0)
    return dx, dh, dW_ih, dW_hh, db, db.copy(), norms
