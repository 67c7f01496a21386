"""The readable step kernels and the fast sequence kernels compute the same thing."""

import numpy as np
import pytest

from rnnjit.kernels import (CELLS, gru_step_backward, gru_step_forward, lstm_step_backward,
                            lstm_step_forward, rnn_step_backward, rnn_step_forward)


def params(cell, I, H, dtype, rng):
    G = CELLS[cell].gates
    return [(rng.uniform(-0.5, 0.5, shape)).astype(dtype) for shape in ((G * H, I), (G * H, H), (G * H,), (G * H,))]


def step_chain(cell, x, h0, c0, W_ih, W_hh, b_ih, b_hh, dout, use_relu, reverse):
    """Run the step kernels over the sequence, forward then backward, like a learner would."""
    T = x.shape[0]
    order = range(T - 1, -1, -1) if reverse else range(T)
    h, c, caches, outs = h0, c0, {}, np.empty(dout.shape, x.dtype)
    for t in order:
        if cell == "lstm":
            h, c, caches[t] = lstm_step_forward(x[t], h, c, W_ih, W_hh, b_ih, b_hh)
        elif cell == "gru":
            h, caches[t] = gru_step_forward(x[t], h, W_ih, W_hh, b_ih, b_hh)
        else:
            h, caches[t] = rnn_step_forward(x[t], h, W_ih, W_hh, b_ih, b_hh, use_relu)
        outs[t] = h
    dh, dc = np.zeros_like(h0), np.zeros_like(h0)
    dx = np.empty_like(x)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    for t in reversed(list(order)):
        if cell == "lstm":
            dx[t], dh, dc, gi, gh, db = lstm_step_backward(dh + dout[t], dc, caches[t])
        elif cell == "gru":
            dx[t], dh, gi, gh, db, _ = gru_step_backward(dh + dout[t], caches[t])
        else:
            dx[t], dh, gi, gh, db = rnn_step_backward(dh + dout[t], caches[t], use_relu)
        dW_ih += gi
        dW_hh += gh
    return outs, dx, dh, dW_ih, dW_hh


@pytest.mark.parametrize("B,H", [(3, 4), (9, 37)], ids=["B3", "B9-packed"])  # B >= 4: packed W_hh path
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell,nl", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", ""), ("gru", "")])
def test_step_kernels_match_sequence_kernels(cell, nl, reverse, dtype, B, H):
    rng = np.random.default_rng(0)
    T, I = 6, 5
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    W_ih, W_hh, b_ih, b_hh = params(cell, I, H, dtype, rng)
    spec = CELLS[cell]
    out, h_n, c_n, cache = spec.forward(x, h0, c0 if spec.has_cell_state else None, W_ih, W_hh, b_ih, b_hh,
                                        reverse, nl)
    zeros = np.zeros_like(h0)
    dx, dh0, _, dW_ih, dW_hh, _, _, norms = spec.backward(cache, dout, zeros, zeros if spec.has_cell_state else None)
    s_out, s_dx, s_dh0, s_dW_ih, s_dW_hh = step_chain(cell, x, h0, c0, W_ih, W_hh, b_ih, b_hh, dout,
                                                      nl == "relu", reverse)
    tol = 1e-12 if dtype == np.float64 else 5e-5  # float32: another summation order, another rounding
    for a, b in ((out, s_out), (dx, s_dx), (dh0, s_dh0), (dW_ih, s_dW_ih), (dW_hh, s_dW_hh)):
        assert a.dtype == dtype and b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert norms.shape == (T,) and np.all(norms > 0)


def test_kernels_import_on_their_own():
    """``rnnjit.kernels`` needs nothing above it: not the layers, not rich, not textual."""
    import subprocess
    import sys
    code = ("import sys, rnnjit.kernels.lstm as k; "
            "bad = [m for m in ('rnnjit.nn', 'rnnjit.train', 'rich', 'textual') if m in sys.modules]; "
            "print(k.lstm_step_forward.__name__, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["lstm_step_forward", "[]"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [7, 2501], ids=["one-chunk", "three-chunks"])
def test_weight_grad_gemm_matches_numpy(N, dtype):
    """dW = dG^T X through the packed micro-kernel in chunks of K (the last one shorter), ragged
    column panels and leftover rows; and through BLAS when not packed."""
    from rnnjit.kernels._smallgemm import weight_grad_gemm
    rng = np.random.default_rng(0)
    dG, X = rng.standard_normal((N, 37)).astype(dtype), rng.standard_normal((N, 19)).astype(dtype)
    ref = dG.astype(np.float64).T @ X
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for use in (True, False):
        dW = np.full((37, 19), np.nan, dtype)
        weight_grad_gemm(dG, X, dW, use)
        np.testing.assert_allclose(dW, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smallgemm_matches_numpy(dtype):
    """C = A op(W) + beta C through the packed micro-kernel: 8-, 4- and 1-row tiles, column counts
    that fill eight or four panels, leave two (``_row_tile2``) or end in a ragged panel, K odd and even."""
    from rnnjit.kernels._smallgemm import pack_weights, smallgemm
    rng = np.random.default_rng(1)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for M in (1, 2, 3, 4, 5, 9, 13):
        for N, K in ((1, 3), (32, 7), (64, 256), (96, 5), (133, 64), (160, 1), (300, 9), (600, 4)):
            for trans in (False, True):
                W = rng.standard_normal((N, K) if trans else (K, N)).astype(dtype)
                A = rng.standard_normal((M, K)).astype(dtype)
                C0 = rng.standard_normal((M, N)).astype(dtype)
                opW = (W.T if trans else W).astype(np.float64)
                for beta in (0.0, 1.0):
                    C = C0.copy()
                    smallgemm(A, pack_weights(W, trans, True), C, beta)
                    ref = A.astype(np.float64) @ opW + beta * C0
                    np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * np.abs(ref).max(),
                                               err_msg=f"M={M} N={N} K={K} trans={trans} beta={beta}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_input_part_in_chunks_equals_all_steps_at_once(cell, B, dtype):
    """The recurrences compute the dense input part a chunk of steps at a time inside the time
    loop (``dense.project_chunk``); any chunk length, in both directions, gives what one GEMM
    over all steps before the loop gives (``dense.project_inputs``)."""
    from rnnjit.kernels import dense, gru, lstm, rnn
    rng = np.random.default_rng(4)
    T, I, H = 7, 5, 6
    G = {"rnn": H, "lstm": 4 * H, "gru": 3 * H}[cell]
    x = rng.standard_normal((T, B, I)).astype(dtype)
    W_ih, W_hh = (rng.standard_normal((G, n)).astype(dtype) * 0.5 for n in (I, H))
    b, b_hh = rng.standard_normal(G).astype(dtype), rng.standard_normal(G).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    if cell == "gru":
        b = gru.gru_input_bias(b, b_hh)

    def recur(gates, reverse, inputs):
        if cell == "lstm":
            return lstm.lstm_recurrence(gates, h0, h0 * 0.5, W_hh, reverse, dense=inputs)
        if cell == "gru":
            return gru.gru_recurrence(gates, h0, W_hh, b_hh, reverse, dense=inputs)
        return (rnn.rnn_recurrence(gates, h0, W_hh, reverse, False, dense=inputs),)

    tol = 1e-12 if dtype == np.float64 else 1e-5
    for reverse in (False, True):
        ref_gates = dense.project_inputs(x, W_ih, b)
        ref = recur(ref_gates, reverse, None)
        for steps in (1, 3, 7, 10):
            gates = np.full((T, B, G), np.nan, dtype)
            got = recur(gates, reverse, dense.dense_inputs(x, W_ih, b, steps))
            for what, r, g in zip(("states", "second result"), ref, got):
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=f"{what}, steps={steps}, reverse={reverse}")
            np.testing.assert_allclose(gates, ref_gates, rtol=tol, atol=tol, err_msg=f"gates, steps={steps}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_gate_activations(dtype):
    """The LSTM's four gate activations at once (``activations.lstm_gate_activations``): in float32
    four rational functions sharing one division, within 7e-7 of the exact sigmoid and tanh; in
    float64 full precision (1e-15)."""
    from numba import njit

    from rnnjit.kernels.activations import lstm_gate_activations

    @njit
    def apply(x):
        out = np.empty((4, x.shape[1]), x.dtype)
        for n in range(x.shape[1]):
            out[0, n], out[1, n], out[2, n], out[3, n] = lstm_gate_activations(x[0, n], x[1, n], x[2, n], x[3, n])
        return out

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((4, 20000)) * 3, rng.uniform(-20, 20, (4, 20000)),
                        rng.standard_normal((4, 2000)) * 1e-4, np.full((4, 1), 0.0)], axis=1).astype(dtype)
    got = apply(x).astype(np.float64)
    x64 = x.astype(np.float64)
    sig = 1 / (1 + np.exp(-x64))
    ref = np.stack([sig[0], sig[1], np.tanh(x64[2]), sig[3]])
    assert np.abs(got - ref).max() < (7e-7 if dtype == np.float32 else 1e-15)


def test_float64_activations_are_full_precision():
    """The vectorising float64 exp, tanh and sigmoid of the sequence kernels stay within 2 ulp of libm's."""
    from numba import njit

    from rnnjit.kernels.activations import exp_f64, fast_sigmoid, fast_tanh

    @njit
    def apply(x):
        out = np.empty((3, x.shape[0]))
        for n in range(x.shape[0]):
            out[0, n] = exp_f64(x[n] * 20)
            out[1, n] = fast_tanh(x[n])
            out[2, n] = fast_sigmoid(x[n])
        return out

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-30, 30, 20000), rng.standard_normal(20000) * 1e-3,
                        np.linspace(-0.7, 0.7, 2001), [0.0, 1e-300, -1e-300, 35.0, -35.0]])
    exp, tanh, sig = apply(x)
    for got, ref in ((exp, np.exp(x * 20)), (tanh, np.tanh(x)), (sig, 1 / (1 + np.exp(-x)))):
        ulps = np.abs(got - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(np.float64).tiny))
        assert ulps.max() <= 2


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cpu_backward_writes_into_the_given_arrays(cell):
    """The CPU side of ``into=`` (kernels/cells.py): the arrays handed in are written and
    returned as themselves, a None is left to the kernel, and the values do not change."""
    from rnnjit.kernels import CELLS
    rng = np.random.default_rng(0)
    T, B, I, H, G = 3, 2, 4, 5, CELLS[cell].gates
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    weights = [rng.uniform(-0.5, 0.5, s) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    dout, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H)) if cell == "lstm" else None
    c = CELLS[cell]
    ref = c.backward(c.forward(x, h0, c0, *weights, False, "tanh")[3], dout, dh_n, dc_n)
    into = [np.full_like(h0, np.nan), None if c0 is None else np.full_like(c0, np.nan),
            *(np.full_like(w, np.nan) for w in weights[:3]), None, np.full(T, np.nan)]
    got = c.backward(c.forward(x, h0, c0, *weights, False, "tanh")[3], dout, dh_n, dc_n, into=tuple(into))
    assert all(got[1 + i] is a for i, a in enumerate(into) if a is not None)
    for r, g in zip(ref[1:], got[1:]):
        if r is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, r)
