"""Slow, obviously-correct NumPy reference for PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

This module is a test oracle (in the spirit of stumpy's ``tests/naive.py``): it is written
for clarity, not speed, and uses nothing but NumPy. It follows PyTorch's conventions exactly:

* parameters live in a dict with PyTorch's names and shapes::

      weight_ih_l{k}[_reverse]  (G*H, I_k)     I_0 = input_size, I_k = H * num_directions
      weight_hh_l{k}[_reverse]  (G*H, H)
      bias_ih_l{k}[_reverse]    (G*H,)         (absent when bias=False)
      bias_hh_l{k}[_reverse]    (G*H,)

  with G = 1 (RNN), 4 (LSTM, gate order i, f, g, o) or 3 (GRU, gate order r, z, n);
* ``x`` is time-major ``(T, B, I)``; states are ``(num_layers * num_directions, B, H)`` with
  index ``layer * num_directions + direction``;
* the bidirectional output concatenates forward then reverse along the last axis; the reverse
  direction reads ``x[T-1], ..., x[0]``, its output at position ``t`` is its state after reading
  ``x[t]`` and its final state is the state after reading ``x[0]``.

Equations (``a_i = W_i x + b_i``, ``a_h = W_h h + b_h``, split into gate blocks)::

    RNN : h' = act(a_i + a_h)                               act = tanh | relu
    LSTM: i, f, g, o = sig, sig, tanh, sig of (a_i + a_h)
          c' = f * c + i * g ;  h' = o * tanh(c')
    GRU : r = sig(a_i[r] + a_h[r]) ; z = sig(a_i[z] + a_h[z])
          n = tanh(a_i[n] + r * a_h[n]) ;  h' = (1 - z) * n + z * h

Backward-through-time is written by hand, one timestep at a time. Every cell's step backward
produces two pre-activation gradients: ``d_ai`` (w.r.t. ``a_i``) and ``d_ah`` (w.r.t. ``a_h``).
For RNN and LSTM they are equal; for GRU they differ only in the ``n`` block (``d_ah[n] =
d_ai[n] * r``). The weight/bias/input/state gradients then follow uniformly::

    dW_ih += d_ai^T x    dW_hh += d_ah^T h    db_ih += sum_b d_ai    db_hh += sum_b d_ah
    dx     = d_ai W_ih   dh    += d_ah W_hh
"""

from __future__ import annotations

import numpy as np

__all__ = ["GATES", "init_params", "param_names", "naive_forward", "naive_backward"]

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _check_cell(cell):
    if cell not in GATES:
        raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")


def _suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def param_names(num_layers, bidirectional, bias=True):
    """PyTorch's parameter names, in PyTorch's order."""
    names = []
    for layer in range(num_layers):
        for direction in range(2 if bidirectional else 1):
            s = _suffix(layer, direction)
            names += [f"weight_ih{s}", f"weight_hh{s}"]
            if bias:
                names += [f"bias_ih{s}", f"bias_hh{s}"]
    return names


def init_params(cell, input_size, hidden_size, num_layers=1, bidirectional=False, bias=True,
                rng=None, dtype=np.float64):
    """Random parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] like PyTorch's default init."""
    _check_cell(cell)
    rng = np.random.default_rng(rng)
    G, H, D = GATES[cell], hidden_size, 2 if bidirectional else 1
    k = 1.0 / np.sqrt(H)
    params = {}
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else H * D
        for direction in range(D):
            s = _suffix(layer, direction)
            shapes = {f"weight_ih{s}": (G * H, in_size), f"weight_hh{s}": (G * H, H)}
            if bias:
                shapes[f"bias_ih{s}"] = (G * H,)
                shapes[f"bias_hh{s}"] = (G * H,)
            for name, shape in shapes.items():
                params[name] = rng.uniform(-k, k, size=shape).astype(dtype)
    return params


def _layer_params(params, layer, direction):
    s = _suffix(layer, direction)
    W_ih, W_hh = params[f"weight_ih{s}"], params[f"weight_hh{s}"]
    b_ih = params.get(f"bias_ih{s}")
    b_hh = params.get(f"bias_hh{s}")
    if b_ih is None:
        b_ih = np.zeros(W_ih.shape[0], dtype=W_ih.dtype)
    if b_hh is None:
        b_hh = np.zeros(W_hh.shape[0], dtype=W_hh.dtype)
    return W_ih, W_hh, b_ih, b_hh


def _time_order(T, direction):
    """Positions in the order the direction reads them."""
    return range(T) if direction == 0 else range(T - 1, -1, -1)


# --------------------------------------------------------------------------------------------
# single-step forward / backward for each cell
# --------------------------------------------------------------------------------------------


def _step_forward(cell, nonlinearity, x, h, c, W_ih, W_hh, b_ih, b_hh):
    """One timestep. Returns (h_new, c_new or None, record for the backward)."""
    H = W_hh.shape[1]
    a_i = x @ W_ih.T + b_ih  # (B, G*H)
    a_h = h @ W_hh.T + b_hh  # (B, G*H)
    rec = {"x": x, "h": h}
    if cell == "rnn":
        a = a_i + a_h
        if nonlinearity == "tanh":
            h_new = np.tanh(a)
        elif nonlinearity == "relu":
            h_new = np.maximum(a, 0.0)
        else:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        rec.update(a=a, h_new=h_new)
        return h_new, None, rec
    if cell == "lstm":
        a = a_i + a_h
        i = _sigmoid(a[:, 0 * H:1 * H])
        f = _sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = _sigmoid(a[:, 3 * H:4 * H])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        rec.update(c=c, i=i, f=f, g=g, o=o, tc=tc)
        return h_new, c_new, rec
    if cell == "gru":
        r = _sigmoid(a_i[:, 0 * H:1 * H] + a_h[:, 0 * H:1 * H])
        z = _sigmoid(a_i[:, 1 * H:2 * H] + a_h[:, 1 * H:2 * H])
        ah_n = a_h[:, 2 * H:3 * H]
        n = np.tanh(a_i[:, 2 * H:3 * H] + r * ah_n)
        h_new = (1.0 - z) * n + z * h
        rec.update(r=r, z=z, n=n, ah_n=ah_n)
        return h_new, None, rec
    raise ValueError(cell)


def _step_backward(cell, nonlinearity, rec, dh, dc):
    """Backward of one timestep given the TOTAL gradients dh (and dc) w.r.t. its outputs.

    Returns (d_ai, d_ah, dh_prev_direct, dc_prev): pre-activation gradients for the input and
    hidden affine maps, the part of dL/dh_prev that does not go through W_hh (GRU's z * dh;
    zero otherwise) and dL/dc_prev (LSTM only, else None).
    """
    if cell == "rnn":
        if nonlinearity == "tanh":
            da = dh * (1.0 - rec["h_new"] ** 2)
        else:
            da = dh * (rec["a"] > 0.0)
        return da, da, np.zeros_like(dh), None
    if cell == "lstm":
        i, f, g, o, tc = rec["i"], rec["f"], rec["g"], rec["o"], rec["tc"]
        dc_total = dc + dh * o * (1.0 - tc ** 2)
        di = dc_total * g
        df = dc_total * rec["c"]
        dg = dc_total * i
        do = dh * tc
        da = np.concatenate(
            [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g ** 2), do * o * (1.0 - o)],
            axis=1,
        )
        dc_prev = dc_total * f
        return da, da, np.zeros_like(dh), dc_prev
    if cell == "gru":
        r, z, n, ah_n, h = rec["r"], rec["z"], rec["n"], rec["ah_n"], rec["h"]
        dn = dh * (1.0 - z)
        dz = dh * (h - n)
        dh_prev_direct = dh * z
        dan = dn * (1.0 - n ** 2)  # grad w.r.t. the argument of tanh in n
        dr = dan * ah_n
        dar = dr * r * (1.0 - r)
        daz = dz * z * (1.0 - z)
        d_ai = np.concatenate([dar, daz, dan], axis=1)
        d_ah = np.concatenate([dar, daz, dan * r], axis=1)
        return d_ai, d_ah, dh_prev_direct, None
    raise ValueError(cell)


# --------------------------------------------------------------------------------------------
# full forward / backward
# --------------------------------------------------------------------------------------------


def naive_forward(cell: str, params: dict, x, h0, c0=None, num_layers=1, bidirectional=False,
                  nonlinearity="tanh"):
    """Forward pass of a (multi-layer, optionally bidirectional) RNN / LSTM / GRU.

    cell in {"rnn", "lstm", "gru"}; x (T, B, I); h0, c0 (num_layers*D, B, H) or None (zeros).
    Returns (out (T, B, D*H), h_n, c_n or None, cache).
    """
    _check_cell(cell)
    x = np.asarray(x)
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = params["weight_hh_l0"].shape[1]
    dtype = np.result_type(x.dtype, params["weight_hh_l0"].dtype)
    x = x.astype(dtype, copy=False)
    h0 = np.zeros((num_layers * D, B, H), dtype) if h0 is None else np.asarray(h0, dtype)
    is_lstm = cell == "lstm"
    if is_lstm:
        c0 = np.zeros((num_layers * D, B, H), dtype) if c0 is None else np.asarray(c0, dtype)

    h_n = np.zeros((num_layers * D, B, H), dtype)
    c_n = np.zeros((num_layers * D, B, H), dtype) if is_lstm else None
    records = {}  # (layer, direction) -> list of per-position records (indexed by position t)
    layer_in = x
    for layer in range(num_layers):
        layer_out = np.zeros((T, B, D * H), dtype)
        for direction in range(D):
            W_ih, W_hh, b_ih, b_hh = _layer_params(params, layer, direction)
            idx = layer * D + direction
            h = h0[idx]
            c = c0[idx] if is_lstm else None
            recs = [None] * T
            for t in _time_order(T, direction):
                h, c, recs[t] = _step_forward(cell, nonlinearity, layer_in[t], h, c,
                                              W_ih, W_hh, b_ih, b_hh)
                layer_out[t, :, direction * H:(direction + 1) * H] = h
            h_n[idx] = h
            if is_lstm:
                c_n[idx] = c
            records[(layer, direction)] = recs
        layer_in = layer_out

    cache = {
        "cell": cell, "num_layers": num_layers, "bidirectional": bidirectional,
        "nonlinearity": nonlinearity, "T": T, "B": B, "H": H, "input_size": x.shape[2],
        "dtype": dtype, "records": records,
    }
    return layer_in, h_n, c_n, cache


def naive_backward(cell, params, cache, dout, dh_n=None, dc_n=None):
    """Backward-through-time for :func:`naive_forward`.

    dout (T, B, D*H) = dL/dout; dh_n, dc_n (num_layers*D, B, H) = dL/dh_n, dL/dc_n (default 0).
    Returns (dx, dh0, dc0 or None, grads, hidden_grad_norms) where ``grads`` has the same keys
    and shapes as ``params`` and ``hidden_grad_norms[l*D + d, t]`` is the L2 norm (over batch
    and hidden units) of the total dL/dh_t of layer l, direction d, at sequence position t
    (gradient from the output at t plus the gradient from the recurrence).
    """
    _check_cell(cell)
    if cache["cell"] != cell:
        raise ValueError(f"cache is for cell {cache['cell']!r}, not {cell!r}")
    num_layers, nonlin = cache["num_layers"], cache["nonlinearity"]
    T, B, H, dtype = cache["T"], cache["B"], cache["H"], cache["dtype"]
    D = 2 if cache["bidirectional"] else 1
    is_lstm = cell == "lstm"
    dh_n = np.zeros((num_layers * D, B, H), dtype) if dh_n is None else np.asarray(dh_n, dtype)
    if is_lstm:
        dc_n = np.zeros((num_layers * D, B, H), dtype) if dc_n is None else np.asarray(dc_n, dtype)

    grads = {name: np.zeros_like(p, dtype=dtype) for name, p in params.items()}
    dh0 = np.zeros((num_layers * D, B, H), dtype)
    dc0 = np.zeros((num_layers * D, B, H), dtype) if is_lstm else None
    norms = np.zeros((num_layers * D, T), dtype)

    d_layer_out = np.asarray(dout, dtype)  # dL/d(output of the current layer), (T, B, D*H)
    for layer in reversed(range(num_layers)):
        in_size = params[f"weight_ih_l{layer}"].shape[1]
        d_layer_in = np.zeros((T, B, in_size), dtype)
        for direction in range(D):
            s = _suffix(layer, direction)
            W_ih, W_hh, _, _ = _layer_params(params, layer, direction)
            has_bias = f"bias_ih{s}" in params
            idx = layer * D + direction
            recs = cache["records"][(layer, direction)]
            dh_rec = dh_n[idx].copy()  # gradient arriving through the recurrence
            dc = dc_n[idx].copy() if is_lstm else None
            # walk positions in the reverse of the order this direction read them
            for t in reversed(list(_time_order(T, direction))):
                rec = recs[t]
                dh = d_layer_out[t, :, direction * H:(direction + 1) * H] + dh_rec
                norms[idx, t] = np.sqrt(np.sum(dh ** 2))
                d_ai, d_ah, dh_direct, dc = _step_backward(cell, nonlin, rec, dh, dc)
                grads[f"weight_ih{s}"] += d_ai.T @ rec["x"]
                grads[f"weight_hh{s}"] += d_ah.T @ rec["h"]
                if has_bias:
                    grads[f"bias_ih{s}"] += d_ai.sum(axis=0)
                    grads[f"bias_hh{s}"] += d_ah.sum(axis=0)
                d_layer_in[t] += d_ai @ W_ih
                dh_rec = dh_direct + d_ah @ W_hh
            dh0[idx] = dh_rec
            if is_lstm:
                dc0[idx] = dc
        d_layer_out = d_layer_in
    return d_layer_out, dh0, dc0, grads, norms
