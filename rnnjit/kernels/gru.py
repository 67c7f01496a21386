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
Layout of states and the reverse direction: as in ``lstm.py``.
"""

import numpy as np
from numba import njit

from .activations import sigmoid


@njit(cache=True, nogil=True, error_model="numpy")
def gru_step_forward(x, prev_h, W_ih, W_hh, b_ih, b_hh):
    """One GRU step. x (B, I), prev_h (B, H) -> next_h, cache."""
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


@njit(cache=True, nogil=True, error_model="numpy")
def gru_step_backward(dnext_h, cache):
    """Backward of one step -> dx, dprev_h, dW_ih, dW_hh, db_ih, db_hh."""
    x, prev_h, W_ih, W_hh, r, z, n, hn = cache
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


@njit(cache=True, nogil=True, error_model="numpy")
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """Run a GRU over a sequence.

    Returns hs (T+1, B, H), gates (T, B, 3H) holding r, z, n of every step, and hns (T, B, H)
    holding W_hn h_{t-1} + b_hn (what backward needs).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    G = 3 * H
    hs = np.empty((T + 1, B, H), x.dtype)
    gates = np.empty((T, B, G), x.dtype)
    hns = np.empty((T, B, H), x.dtype)
    hh = np.empty((B, G), x.dtype)
    nxt = 0 if reverse else 1
    hs[T if reverse else 0] = h0

    np.dot(x.reshape(T * B, I), W_ih.T, gates.reshape(T * B, G))  # inputs of all steps: one GEMM
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev_h = hs[t + 1 - nxt]
        next_h = hs[t + nxt]
        a = gates[t]
        hn = hns[t]
        np.dot(prev_h, W_hh.T, hh)  # the recurrent GEMM
        for b in range(B):
            for j in range(H):
                r = sigmoid(a[b, j] + b_ih[j] + hh[b, j] + b_hh[j])
                z = sigmoid(a[b, H + j] + b_ih[H + j] + hh[b, H + j] + b_hh[H + j])
                hn_v = hh[b, 2 * H + j] + b_hh[2 * H + j]
                n = np.tanh(a[b, 2 * H + j] + b_ih[2 * H + j] + r * hn_v)
                next_h[b, j] = (1 - z) * n + z * prev_h[b, j]
                a[b, j] = r
                a[b, H + j] = z
                a[b, 2 * H + j] = n
                hn[b, j] = hn_v
    return hs, gates, hns


@njit(cache=True, nogil=True, error_model="numpy")
def gru_backward(x, W_ih, W_hh, hs, gates, hns, dout, dh_n, reverse):
    """Backpropagation through time for ``gru_forward``.

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep.
    """
    T, B, I = x.shape
    H = hs.shape[2]
    G = 3 * H
    nxt = 0 if reverse else 1
    dGx = np.empty((T, B, G), x.dtype)
    dGh = np.empty((T, B, G), x.dtype)
    dh = dh_n.copy()
    dh_rec = np.empty((B, H), x.dtype)
    norms = np.empty(T, np.float64)

    for s in range(T):
        t = s if reverse else T - 1 - s
        prev_h = hs[t + 1 - nxt]
        a = gates[t]
        hn = hns[t]
        dax = dGx[t]
        dah = dGh[t]
        sq = 0.0
        for b in range(B):
            for j in range(H):
                r = a[b, j]
                z = a[b, H + j]
                n = a[b, 2 * H + j]
                dhv = dh[b, j] + dout[t, b, j]
                sq += dhv * dhv
                dn_pre = dhv * (1 - z) * (1 - n * n)
                dr_pre = dn_pre * hn[b, j] * r * (1 - r)
                dz_pre = dhv * (prev_h[b, j] - n) * z * (1 - z)
                dax[b, j] = dr_pre
                dax[b, H + j] = dz_pre
                dax[b, 2 * H + j] = dn_pre
                dah[b, j] = dr_pre
                dah[b, H + j] = dz_pre
                dah[b, 2 * H + j] = dn_pre * r
                dh[b, j] = dhv * z
        norms[t] = np.sqrt(sq)
        np.dot(dah, W_hh, dh_rec)  # dh_{t-1} = dh * z + dah W_hh
        dh += dh_rec

    dGx2 = dGx.reshape(T * B, G)
    dGh2 = dGh.reshape(T * B, G)
    dx = np.dot(dGx2, W_ih).reshape(T, B, I)
    dW_ih = np.dot(dGx2.T, x.reshape(T * B, I))
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = np.dot(dGh2.T, prev_hs.reshape(T * B, H))
    return dx, dh, dW_ih, dW_hh, dGx2.sum(axis=0), dGh2.sum(axis=0), norms
