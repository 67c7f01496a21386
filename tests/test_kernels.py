"""The readable step kernels and the fast sequence kernels compute the same thing."""

import inspect
import warnings

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
@pytest.mark.parametrize("N", [7, 2501, 3121], ids=["one-chunk", "three-chunks", "last-chunk-a-line-shorter"])
def test_weight_grad_gemm_matches_numpy(N, dtype):
    """dW = dG^T X through the packed micro-kernel in chunks of K (the last one shorter: at
    N = 3121, 1039 rows against 1041, a cache line shorter, so it gets buffers of its own), ragged
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


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="one CPU: Numba has one thread")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_grad_gemm_on_two_threads_gives_the_same_bits(dtype):
    """With two threads, a chunk of dG^T of PARALLEL_MIN_COPY elements or more is copied on both
    and the product splits its rows (72 rows of dW, 19 columns: one group of panels): the same
    bits as one thread."""
    import numba
    from rnnjit.kernels._smallgemm import PARALLEL_MIN_COPY, weight_grad_gemm
    rng = np.random.default_rng(5)
    N, G, I = 3121, 72, 19
    assert G * 1039 >= PARALLEL_MIN_COPY
    dG, X = rng.standard_normal((N, G)).astype(dtype), rng.standard_normal((N, I)).astype(dtype)
    before = numba.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            out[threads] = np.full((G, I), np.nan, dtype)
            weight_grad_gemm(dG, X, out[threads], True)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(out[1], out[2])
    ref = dG.astype(np.float64).T @ X
    np.testing.assert_allclose(out[2], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_grad_gemm_pads_its_chunks_without_changing_a_bit(dtype):
    """A chunk of dG^T is written into rows of an odd number of cache lines (``_odd_lines``: rows
    4 KB apart made writing it 8x slower), with zero rows past the chunk on both sides: the
    result is bit for bit the unpadded product's, dG^T copied and X packed as they are."""
    from rnnjit.kernels._smallgemm import _odd_lines, pack_weights, smallgemm, weight_grad_gemm
    for n in (1, 15, 16, 17, 1024, 1040, 1067):
        for itemsize in (4, 8):
            kp, per_line = _odd_lines(n, itemsize), 64 // itemsize
            assert kp >= n and kp % per_line == 0 and (kp // per_line) % 2 == 1 and kp - n < 2 * per_line
    rng = np.random.default_rng(4)
    for N, G, I in ((1024, 40, 19), (77, 64, 33)):      # one chunk each: 1024 rows padded to 1040
        dG, X = rng.standard_normal((N, G)).astype(dtype), rng.standard_normal((N, I)).astype(dtype)
        dW = np.full((G, I), np.nan, dtype)
        weight_grad_gemm(dG, X, dW, True)
        ref = np.empty((G, I), dtype)
        smallgemm(np.ascontiguousarray(dG.T), pack_weights(X, False, True), ref, 0.0, 0, 1)
        assert np.array_equal(dW, ref), (N, G, I)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smallgemm_matches_numpy(dtype):
    """C = A op(W) + beta C through the packed micro-kernel: 8-, 4- and 1-row tiles, column counts
    that fill eight or four panels, leave two (``_row_tile2``) or end in a ragged panel, K odd and even;
    every step's order over the panels (it alternates, see ``smallgemm``) gives the same bits."""
    from rnnjit.kernels._smallgemm import pack_weights, smallgemm
    rng = np.random.default_rng(1)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for M in (1, 2, 3, 4, 5, 6, 7, 9, 11, 13):
        for N, K in ((1, 3), (32, 7), (64, 256), (96, 5), (133, 64), (160, 1), (300, 9), (600, 4)):
            for trans in (False, True):
                W = rng.standard_normal((N, K) if trans else (K, N)).astype(dtype)
                A = rng.standard_normal((M, K)).astype(dtype)
                C0 = rng.standard_normal((M, N)).astype(dtype)
                opW = (W.T if trans else W).astype(np.float64)
                for beta in (0.0, 1.0):
                    ref = A.astype(np.float64) @ opW + beta * C0
                    first = None
                    for step in (0, 1, 2, 3):   # passes over the panels in one order, then the other
                        C = C0.copy()
                        smallgemm(A, pack_weights(W, trans, True), C, beta, step, 1)
                        np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * np.abs(ref).max(),
                                                   err_msg=f"M={M} N={N} K={K} trans={trans} beta={beta} step={step}")
                        first = C if first is None else first
                        assert np.array_equal(C, first), "the order over the panels changed a sum"


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


# ---- shape checks: a wrong shape is a one-line ValueError that names the array -----------------

def kernel_module(cell):
    import importlib
    return importlib.import_module(f"rnnjit.kernels.{cell}")


def good_arrays(cell, T=3, B=2, I=5, H=4, dtype=np.float64):
    """Arguments of the right shapes for every kernel of a cell, by parameter name."""
    rng = np.random.default_rng(0)
    a = {"x": rng.standard_normal((T, B, I)).astype(dtype), "ids": rng.integers(0, I, (T, B)),
         "h0": rng.standard_normal((B, H)).astype(dtype), "c0": rng.standard_normal((B, H)).astype(dtype),
         "reverse": False, "use_relu": False}
    a.update(zip(("W_ih", "W_hh", "b_ih", "b_hh"), params(cell, I, H, dtype, rng)))
    fwd = call(getattr(kernel_module(cell), f"{cell}_forward"), a)
    a.update(zip({"rnn": ("hs",), "lstm": ("hs", "cs", "gates"), "gru": ("hs", "gates", "hns")}[cell],
                 fwd if isinstance(fwd, tuple) else (fwd,)))
    a.update(dout=rng.standard_normal((T, B, H)).astype(dtype), dh_n=rng.standard_normal((B, H)).astype(dtype),
             dc_n=rng.standard_normal((B, H)).astype(dtype))
    return a


def call(kernel, arrays, **replaced):
    """kernel(...) with its arguments taken by name from ``arrays``, some ``replaced``."""
    names = inspect.signature(kernel.py_func).parameters
    return kernel(*(replaced.get(n, arrays.get(n)) for n in names))


def wrong_shapes(cell, kind, T=3, B=2, I=5, H=4):
    """(argument, a wrong shape for it) for a cell's ``kind`` of sequence kernel."""
    G = CELLS[cell].gates
    if kind == "backward":
        cases = [("W_ih", (G * H + 1, I)), ("W_ih", (G * H, I + 2)), ("W_hh", (G * H - 1, H)),
                 ("W_hh", (G * H, H + 1)), ("hs", (T, B, H)), ("dout", (T, B, H + 1)), ("dout", (T + 1, B, H)),
                 ("dh_n", (B, H + 1)), ("dh_n", (B + 1, H))]
        if cell == "lstm":
            cases += [("cs", (T + 1, B, H + 1)), ("gates", (T, B, G * H - 1)), ("dc_n", (B + 1, H))]
        if cell == "gru":
            cases += [("gates", (T - 1, B, G * H)), ("hns", (T, B, H + 1))]
        return cases
    cases = [("h0", (B + 1, H)), ("W_ih", (G * H + 1, I)), ("W_hh", (G * H - 1, H)), ("W_hh", (G * H, H + 1)),
             ("b_ih", (G * H + 1,)), ("b_hh", (G * H - 1,))]
    if kind == "forward":   # one-hot inputs: W_ih has one column per symbol, as many as it likes
        cases += [("W_ih", (G * H, I + 2)), ("W_ih", (G * H, 1))]
    if cell == "lstm":
        cases += [("c0", (B, H + 1)), ("c0", (B + 1, H))]
    return cases


@pytest.mark.parametrize("kind", ["forward", "forward_onehot", "backward"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_kernels_reject_wrong_shapes(cell, kind):
    """Every public sequence kernel checks its arguments' shapes before touching them: a wrong
    one is a ValueError of one line that names the kernel and the array and says the shape it
    must have; the right shapes still run."""
    name = f"{cell}_{kind}"
    kernel = getattr(kernel_module(cell), name)
    arrays = good_arrays(cell)
    call(kernel, arrays)
    for arg, shape in wrong_shapes(cell, kind):
        with pytest.raises(ValueError) as e:
            call(kernel, arrays, **{arg: np.zeros(shape)})
        msg = str(e.value)
        assert msg.startswith(f"{name}: {arg} must be ") and msg.endswith(f"; got {shape}"), msg
        assert "\n" not in msg


@pytest.mark.parametrize("kind", ["forward", "forward_onehot", "recurrence_backward", "backward"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_kernels_reject_wrong_types(cell, kind):
    """A list, a float16, an int or mixed-precision array, one of the wrong dimensions, a
    transposed one, or an int for a flag: a one-line TypeError naming the kernel and the argument,
    before Numba compiles anything (no page of Numba's typing error, no int64 version)."""
    name = f"{cell}_{kind}"
    kernel = getattr(kernel_module(cell), name)
    arrays = good_arrays(cell)
    names = list(inspect.signature(kernel.py_func).parameters)
    first = names[0]                      # x, ids or W_hh: an array every kind of kernel has
    float_arg = next(n for n in names if n not in ("ids", "reverse", "use_relu"))
    good = arrays[float_arg]
    cases = [({first: arrays[first].tolist()}, rf"{first} must be a {arrays[first].ndim}-D NumPy array; got list"),
             ({first: arrays[first][None]}, rf"{first} must be a {arrays[first].ndim}-D array; got {arrays[first].ndim + 1}-D"),
             ({float_arg: good.astype(np.float16)}, rf"{float_arg} is float16: the kernels compute in float32 or float64"),
             ({float_arg: good.astype(np.int64)}, rf"{float_arg} is int64"),
             ({float_arg: good.astype(np.float32)}, r"the arrays must share one dtype; .* is float(32|64) but .* is "
                                                     r"float(32|64): convert them all"),
             ({float_arg: np.asfortranarray(good) if good.ndim > 1 else good[::1]}, None),
             ({"reverse": 1}, r"reverse must be True or False; got int")]
    if good.ndim > 1:
        cases[5] = ({float_arg: np.asfortranarray(good)}, rf"{float_arg} is not C-contiguous .*np.ascontiguousarray")
    else:
        cases.pop(5)
    if "ids" in names:
        cases.append(({"ids": arrays["ids"].astype(np.float64)}, r"ids must be an integer array"))
    for replaced, message in cases:
        with pytest.raises(TypeError, match=f"^{name}: {message}") as e:
            call(kernel, arrays, **replaced)
        assert "\n" not in str(e.value)
    call(kernel, {k: v.astype(np.float32) if getattr(v, "dtype", None) == np.float64 else v
                  for k, v in arrays.items()})     # float32 throughout still compiles and runs


def test_step_kernels_reject_wrong_types():
    from rnnjit.kernels import lstm_step_backward, lstm_step_forward
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 5)), rng.standard_normal((2, 4))
    W = params("lstm", 5, 4, np.float64, rng)
    with pytest.raises(TypeError, match=r"^lstm_step_forward: x must be a 2-D array; got 3-D"):
        lstm_step_forward(x[None], h, h, *W)
    with pytest.raises(TypeError, match=r"^lstm_step_forward: the arrays must share one dtype"):
        lstm_step_forward(x.astype(np.float32), h, h, *W)
    with pytest.raises(TypeError, match=r"^lstm_step_backward: cache must be the tuple of arrays the step's "
                                        r"forward returned; got list"):
        lstm_step_backward(h, h, [x])
    xs = rng.standard_normal((2, 3, 5))   # batch-first: x[:, t] is a strided view, which a step takes
    with warnings.catch_warnings():   # Numba's NumbaPerformanceWarning, when it compiles
        warnings.simplefilter("ignore")
        h1, c1, _ = lstm_step_forward(xs[:, 1], h, h, *W)
    h2, c2, _ = lstm_step_forward(np.ascontiguousarray(xs[:, 1]), h, h, *W)
    np.testing.assert_array_equal(h1, h2)


def test_wrong_shape_message_says_what_shape_to_use():
    arrays = good_arrays("lstm")
    from rnnjit.kernels import lstm_backward, lstm_forward
    with pytest.raises(ValueError, match=r"^lstm_forward: W_ih must be \(4\*H, I\) = \(16, 5\): 4\*H rows "
                                         r"\(H = 4, from h0\) and one column per feature of x \(I = 5\); got \(16, 7\)$"):
        call(lstm_forward, arrays, W_ih=np.zeros((16, 7)))
    with pytest.raises(ValueError, match=r"^lstm_backward: hs must be \(T\+1, B, H\) = \(4, 2, 4\): the states the "
                                         r"forward pass returned \(T = 3, B = 2 from x; H = 4 from W_hh\); got \(3, 2, 4\)$"):
        call(lstm_backward, arrays, hs=arrays["hs"][1:])


@pytest.mark.parametrize("cols", [1, 302])
def test_qa_case_raises_instead_of_a_blas_complaint(capfd, cols):
    """The QA pass's case: x of 300 features, W_ih of 1 column. OpenBLAS printed '** On entry to
    SGEMM parameter number 8 had an illegal value' (on stdout) and the kernel returned zeros; with
    302 columns it returned a result. Now both raise, and nothing is printed."""
    from rnnjit.kernels import lstm_forward
    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    capfd.readouterr()
    with pytest.raises(ValueError, match=rf"^lstm_forward: W_ih must be .* = \(16, 300\).*; got \(16, {cols}\)$"):
        lstm_forward(f32(5, 2, 300), f32(2, 4), f32(2, 4), f32(16, cols), f32(16, 4), f32(16), f32(16), False)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_kernels_reject_wrong_shapes(cell):
    from rnnjit.kernels import gru_step_forward, lstm_step_forward, rnn_step_forward
    rng = np.random.default_rng(0)
    B, I, H, G = 2, 5, 4, CELLS[cell].gates
    x, h = rng.standard_normal((B, I)), rng.standard_normal((B, H))
    W_ih, W_hh, b_ih, b_hh = params(cell, I, H, np.float64, rng)
    step = {"rnn": lambda *a: rnn_step_forward(x, h, *a, False), "lstm": lambda *a: lstm_step_forward(x, h, h, *a),
            "gru": lambda *a: gru_step_forward(x, h, *a)}[cell]
    with pytest.raises(ValueError, match=rf"^{cell}_step_forward: W_ih must be .*from prev_h.*; got \({G * H}, 6\)$"):
        step(np.zeros((G * H, 6)), W_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=rf"^{cell}_step_forward: b_hh must be .*; got \({G * H + 1},\)$"):
        step(W_ih, W_hh, b_ih, np.zeros(G * H + 1))
    cache = step(W_ih, W_hh, b_ih, b_hh)[-1]
    back = {"rnn": lambda d: rnn_step_backward(d, cache, False), "lstm": lambda d: lstm_step_backward(d, d, cache),
            "gru": lambda d: gru_step_backward(d, cache)}[cell]
    with pytest.raises(ValueError, match=rf"^{cell}_step_backward: dnext_h must be \(B, H\) = \(2, 4\).*; got \(2, 5\)$"):
        back(np.zeros((B, H + 1)))


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="one CPU: Numba has one thread")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallgemm_on_two_threads_gives_the_same_bits(dtype):
    """A product of PARALLEL_MIN_FLOPS or more splits its panels over Numba's threads (a share per
    thread), or its rows where there are too few panels (N <= 128: the last four shapes); each
    tile is summed as on one thread, so every shape of batch (the 8- and 4-row tiles, the rows
    left over, the tiles of a batch below four) gives the same bits on two threads."""
    import numba
    from rnnjit.kernels._smallgemm import PARALLEL_MIN_FLOPS, pack_weights, smallgemm
    rng = np.random.default_rng(2)
    before = numba.get_num_threads()
    try:
        for M, K, N in ((1, 512, 2048), (2, 400, 1300), (3, 300, 1200), (5, 256, 800), (13, 160, 500), (32, 64, 520),
                        (32, 256, 128), (37, 512, 64), (19, 1200, 100), (100, 300, 65)):
            assert 2 * M * K * N >= PARALLEL_MIN_FLOPS
            W = rng.standard_normal((N, K)).astype(dtype)
            A = rng.standard_normal((M, K)).astype(dtype)
            Wp = pack_weights(W, True, True)
            out = {}
            for threads in (1, 2):
                numba.set_num_threads(threads)
                C = np.ones((M, N), dtype)
                for step in range(3):
                    smallgemm(A, Wp, C, 1.0, step, threads)
                out[threads] = C
            assert np.array_equal(out[1], out[2]), (M, K, N)
            ref = 1 + 3 * (A.astype(np.float64) @ W.T.astype(np.float64))
            np.testing.assert_allclose(out[2], ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                       atol=(1e-3 if dtype == np.float32 else 1e-10) * np.abs(ref).max())
    finally:
        numba.set_num_threads(before)


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="one CPU: Numba has one thread")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_kernels_on_two_threads_give_the_same_bits(cell):
    """Forward and BPTT with their products split over two threads (B = 4, H = 256 and B = 2,
    H = 512: above PARALLEL_MIN_FLOPS): outputs, states and every gradient equal one thread's, bit
    for bit."""
    import numba
    rng = np.random.default_rng(3)
    c = CELLS[cell]
    before = numba.get_num_threads()
    try:
        for B, H in ((4, 256), (2, 512)):
            T, I = 3, 20
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            h0 = rng.standard_normal((B, H)).astype(np.float32)
            c0 = rng.standard_normal((B, H)).astype(np.float32) if cell == "lstm" else None
            weights = params(cell, I, H, np.float32, rng)
            dout, dh_n = rng.standard_normal((T, B, H)).astype(np.float32), rng.standard_normal((B, H)).astype(np.float32)
            dc_n = rng.standard_normal((B, H)).astype(np.float32) if cell == "lstm" else None
            runs = []
            for threads in (1, 2):
                numba.set_num_threads(threads)
                fwd = c.forward(x, h0, c0, *weights, False, "tanh")
                runs.append((fwd[:3], c.backward(fwd[3], dout, dh_n, dc_n)))
            for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
                assert (a is None and b is None) or np.array_equal(a, b), (B, H)
    finally:
        numba.set_num_threads(before)


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="one CPU: Numba has one thread")
@pytest.mark.parametrize("cell,dtype", [("rnn", np.float32), ("lstm", np.float32), ("gru", np.float32),
                                        ("lstm", np.float64)])
def test_batch_shares_on_two_threads_give_the_same_bits(cell, dtype):
    """A batch of 16 or more with a small W_hh runs its time loops on two threads, each on its
    share of the rows (``shares.py``): 16 rows (two shares of eight), 21 (the last share takes
    the five left over) and 40 (16 and 24), dense and one-hot inputs, both directions; outputs,
    states, every gradient and the per-step norms equal one thread's, bit for bit (float64 for
    one cell: its products have 4-row tiles)."""
    import numba
    from rnnjit.kernels.shares import batch_shares
    rng = np.random.default_rng(6)
    c = CELLS[cell]
    before = numba.get_num_threads()
    try:
        for B, H, reverse in ((16, 24, False), (21, 16, True), (40, 8, False)):
            T, I, V = 5, 7, 11
            x = rng.standard_normal((T, B, I)).astype(dtype)
            ids = rng.integers(0, V, (T, B))
            h0 = rng.standard_normal((B, H)).astype(dtype)
            c0 = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
            weights = params(cell, I, H, dtype, rng)
            onehot_weights = params(cell, V, H, dtype, rng)
            dout, dh_n = rng.standard_normal((T, B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)
            dc_n = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
            runs = []
            for threads in (1, 2):
                numba.set_num_threads(threads)
                assert batch_shares(B, T, c.gates * H * H * np.dtype(dtype).itemsize, True) == threads
                run = []
                for fwd in (c.forward(x, h0, c0, *weights, reverse, "tanh"),
                            c.forward_onehot(ids, h0, c0, *onehot_weights, reverse, "tanh")):
                    run += list(fwd[:3]) + list(c.backward(fwd[3], dout, dh_n, dc_n))
                runs.append(run)
            for a, b in zip(*runs):
                assert (a is None and b is None) or np.array_equal(a, b), (B, H, reverse)
    finally:
        numba.set_num_threads(before)


def test_batch_shares_cover_the_rows_in_units_of_eight():
    """share_rows cuts a batch into contiguous shares that start at multiples of eight and end at
    B; unit_sums fills, over the shares, every unit's sum of squares once."""
    from rnnjit.kernels.shares import norm_units, share_rows, unit_sums
    rng = np.random.default_rng(7)
    for B in (1, 7, 8, 15, 16, 21, 40, 63):
        for shares in range(1, max(1, B // 8) + 1):
            rows = [share_rows(n, shares, B) for n in range(shares)]
            assert rows[0][0] == 0 and rows[-1][1] == B
            assert all(b0 % 8 == 0 and b0 < b1 for b0, b1 in rows)
            assert all(rows[n][1] == rows[n + 1][0] for n in range(shares - 1))
            X, Y = rng.standard_normal((B, 5)), rng.standard_normal((B, 5))
            out = np.full(norm_units(B), np.nan)
            for b0, b1 in rows:
                unit_sums(X, Y, b0, b1, out)
            np.testing.assert_allclose(out.sum(), ((X + Y) ** 2).sum(), rtol=1e-12)
            assert not np.isnan(out).any()


def test_the_products_stay_on_one_thread_with_numbas_workqueue_pool():
    """Numba's workqueue pool (no OpenMP, no TBB) aborts the process when two Python threads run
    parallel code at once (the TUI trains in a worker thread): with it, rnnjit keeps Numba at one
    thread, and ``set_threads`` does not raise it."""
    import os
    import subprocess
    import sys
    code = ("import numba, rnnjit.kernels; from rnnjit.threads import set_threads; "
            "print(numba.threading_layer(), numba.get_num_threads(), set_threads(2)['numba'])")
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["workqueue", "1", "1"], out.stdout + out.stderr


@pytest.mark.parametrize("env_levels", [None, "3"])
def test_numbas_openmp_runtime_is_left_at_one_level_of_parallelism(env_levels):
    """Numba's OpenMP pool allows 255 nested levels in the libgomp it loads, which a later ``import
    torch`` shares: torch's GRU then ran 40x slower on two threads (``kernels/_pool.py``). After the
    kernels load the runtime allows one level, unless OMP_MAX_ACTIVE_LEVELS asks for more."""
    import os
    import subprocess
    import sys
    code = ("import ctypes, importlib.util, numba, rnnjit.kernels; "
            "print(numba.threading_layer()); "
            "print(ctypes.CDLL(importlib.util.find_spec('numba.np.ufunc.omppool').origin).omp_get_max_active_levels())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_MAX_ACTIVE_LEVELS", "OMP_NESTED")}
    if env_levels:
        env["OMP_MAX_ACTIVE_LEVELS"] = env_levels
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = out.stdout.split()
    if not lines or lines[0] != "omp":
        pytest.skip(f"Numba's threading layer here is not OpenMP: {out.stdout.strip() or out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr
    # with the variable set, the level is Numba's own (it raises it to allow nesting), not ours
    assert (lines[1] == "1") == (env_levels is None), out.stdout


@pytest.mark.parametrize("env", [None, "MALLOC_MMAP_THRESHOLD_"])
def test_large_arrays_come_from_the_heap_after_the_kernels_load(env):
    """``kernels/_malloc.py``: with glibc, after ``import rnnjit.kernels`` a 16 MB array is not a
    fresh mmap (the pages a step frees are kept for the next); a fresh interpreter without the
    import, or with MALLOC_MMAP_THRESHOLD_ set, maps it."""
    import os
    import subprocess
    import sys
    code = ("import ctypes, sys, numpy as np\n"
            "class M(ctypes.Structure):\n"
            "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',\n"
            "                'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
            "libc = ctypes.CDLL(None)\n"
            "if not hasattr(libc, 'mallinfo2'): print('no-mallinfo2'); sys.exit()\n"
            "libc.mallinfo2.restype = M\n"
            "if sys.argv[1] == 'import':\n"
            "    import rnnjit.kernels\n"
            "a = np.empty(16 << 20, np.uint8)\n"
            "print(libc.mallinfo2().hblkhd >= 16 << 20)\n")
    env_vars = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                                 "GLIBC_TUNABLES")}
    if env:
        env_vars[env] = str(128 << 10)
    runs = {}
    for mode in ("import", "bare"):
        out = subprocess.run([sys.executable, "-c", code, mode], env=env_vars, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        runs[mode] = out.stdout.strip()
    if "no-mallinfo2" in runs.values():
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read")
    assert runs == {"import": "True" if env else "False", "bare": "True"}, runs


def test_shape_checks_compile_no_string_code(tmp_path):
    """The checks raise ``ShapeError``/``IndexRangeError`` with the pieces of the message, and
    Python writes it: no string code is compiled for them. (Built in compiled code, the messages
    made the default model's first step from an empty cache take 61 s, not 23.) A fresh Numba
    cache, so that everything a kernel calls is compiled here and seen."""
    import os
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import numpy as np
        from numba.core import event
        modules = []
        class Seen(event.Listener):
            def on_start(self, ev):
                modules.append(ev.data["dispatcher"].py_func.__module__)
            def on_end(self, ev):
                pass
        event.register("numba:compile", Seen())
        from rnnjit.kernels import rnn_forward
        from rnnjit.kernels.dense import embedding_forward
        rng = np.random.default_rng(0)
        rnn_forward(rng.standard_normal((3, 2, 5)), np.zeros((2, 4)), rng.standard_normal((4, 5)),
                    rng.standard_normal((4, 4)), np.zeros(4), np.zeros(4), False, False)
        embedding_forward(np.zeros((4, 3)), np.array([1, 2]))
        try:
            rnn_forward(np.zeros((3, 2, 5)), np.zeros((2, 4)), np.zeros((4, 6)), np.zeros((4, 4)),
                        np.zeros(4), np.zeros(4), False, False)
        except ValueError as e:
            print("message:", e)
        print("checks" if "rnnjit.kernels.checks" in modules else "no checks compiled")
        print("string code:", sorted({m for m in modules if "unicode" in m}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "message: rnn_forward: W_ih must be (H, I) = (4, 5): H rows (H = 4, from h0)" in out, out
    assert "checks\n" in out, out
    assert "string code: []" in out, out


def test_shape_errors_survive_pickling():
    """The errors keep their pieces as ``args``, so they cross process boundaries (a worker's
    exception re-raised by a pool) with their message."""
    import pickle
    from rnnjit.kernels.checks import IndexRangeError, ShapeError
    e = ShapeError("lstm_forward", 4, "{c}", "(B, H)", (2, 4), (3, 4), ", the shape of {h}", ())
    assert str(e) == "lstm_forward: c0 must be (B, H) = (2, 4), the shape of h0; got (3, 4)"
    assert str(pickle.loads(pickle.dumps(e))) == str(e)
    e = IndexRangeError("embedding_forward", "ids", 0, 9, 4, "ids name rows of E")
    assert str(pickle.loads(pickle.dumps(e))) == "embedding_forward: ids[0] = 9 is outside [0, 4): ids name rows of E"


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_part_on_its_own_checks_shapes(cell):
    """``*_recurrence_backward`` (what the layers' CPU backward calls) checks its arguments too,
    with T and B taken from dout."""
    arrays = good_arrays(cell)
    kernel = getattr(kernel_module(cell), f"{cell}_recurrence_backward")
    call(kernel, arrays)
    with pytest.raises(ValueError, match=rf"^{cell}_recurrence_backward: hs must be .*from dout.*; got \(3, 2, 4\)$"):
        call(kernel, arrays, hs=arrays["hs"][1:])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_empty_sequence_is_not_an_error(cell):
    """T = 0 is a sequence of no steps: the final state is h0 and the gradients are zero (as on
    the GPU); the checks let it through."""
    arrays = good_arrays(cell, T=0)
    m = kernel_module(cell)
    fwd = call(getattr(m, f"{cell}_forward"), arrays)
    hs = fwd[0] if isinstance(fwd, tuple) else fwd
    np.testing.assert_array_equal(hs[0], arrays["h0"])
    grads = call(getattr(m, f"{cell}_backward"), arrays)
    np.testing.assert_array_equal(grads[1], arrays["dh_n"])           # dh0
    for g in grads[-5:-1]:                                            # dW_ih, dW_hh, db_ih, db_hh
        assert not g.any()


def test_host_checks_for_the_cuda_twins():
    """The CUDA twins' host functions run the same checks in plain Python (shapes only, so NumPy
    arrays stand in for device arrays here), and check the arrays of ``into``."""
    from rnnjit.kernels.checks import check_backward_host, check_forward_host
    a = good_arrays("lstm")
    fwd = [a[n] for n in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")]
    check_forward_host("lstm_forward", 4, *fwd)
    with pytest.raises(ValueError, match=r"^lstm_forward: W_ih must be \(4\*H, I\) = \(16, 5\).*; got \(16, 1\)$"):
        check_forward_host("lstm_forward", 4, *fwd[:3], np.zeros((16, 1)), *fwd[4:])
    bwd = [a[n] for n in ("x", "W_ih", "W_hh", "hs", "cs", "gates")] + [None] + [a[n] for n in ("dout", "dh_n", "dc_n")]
    into = [np.zeros(s) for s in ((2, 4), (2, 4), (16, 5), (16, 4), (16,), (16,), (3,))]
    check_backward_host("lstm_backward", 4, *bwd, into=tuple(into))
    with pytest.raises(ValueError, match=r"^lstm_backward: dout must be .*; got \(3, 2, 5\)$"):
        check_backward_host("lstm_backward", 4, *bwd[:7], np.zeros((3, 2, 5)), *bwd[8:])
    with pytest.raises(ValueError, match=r"^lstm_backward: into's dW_hh must be \(16, 4\).*; got \(16, 5\)$"):
        check_backward_host("lstm_backward", 4, *bwd, into=(*into[:3], np.zeros((16, 5)), *into[4:]))
    with pytest.raises(ValueError, match=r"^lstm_backward: into must hold 7 arrays"):
        check_backward_host("lstm_backward", 4, *bwd, into=(None,) * 6)


# ---- the dense kernels: wrong shapes, types and indices are one line too ----------------------

def test_dense_kernels_check_their_arguments():
    from rnnjit.kernels.dense import (cross_entropy, embedding_backward, embedding_forward, linear_backward,
                                      linear_forward, softmax_cross_entropy)
    f = np.float32
    E, h, W, b = np.zeros((4, 3), f), np.ones((3, 5), f), np.ones((4, 5), f), np.zeros(4, f)
    cases = [
        (ValueError, r"^embedding_forward: ids\[0\] = 10000000 is outside \[0, 4\)",   # read far outside: a segfault
         lambda: embedding_forward(E, np.array([10**7]))),
        (ValueError, r"^embedding_forward: ids\[1\] = -1 is outside", lambda: embedding_forward(E, np.array([1, -1]))),
        (TypeError, r"^embedding_forward: ids must be a 1-D array; got 2-D", lambda: embedding_forward(E, np.array([[1]]))),
        (ValueError, r"^embedding_backward: dout must be \(N, D\) = \(1, 3\).*; got \(1, 2\)$",
         lambda: embedding_backward(E.copy(), np.array([1]), np.zeros((1, 2), f))),
        (ValueError, r"^softmax_cross_entropy: y\[1\] = 9 is outside \[0, 4\)",
         lambda: softmax_cross_entropy(np.zeros((2, 4), f), np.array([0, 9]))),
        (ValueError, r"^softmax_cross_entropy: y must be \(N,\) = \(2,\).*; got \(3,\)$",
         lambda: softmax_cross_entropy(np.zeros((2, 4), f), np.array([0, 1, 2]))),
        (TypeError, r"^cross_entropy: y must be an integer array", lambda: cross_entropy(np.zeros((2, 4), f), np.zeros(2))),
        (ValueError, r"^linear_forward: W must be \(V, H\) = \(4, 5\).*; got \(4, 6\)$",
         lambda: linear_forward(h, np.ones((4, 6), f), b)),
        (ValueError, r"^linear_forward: b must be \(V,\) = \(4,\).*; got \(2,\)$", lambda: linear_forward(h, W, b[:2])),
        (TypeError, r"^linear_forward: h must be a 2-D NumPy array; got list", lambda: linear_forward([[1.0]], W, b)),
        (TypeError, r"^linear_forward: h has non-native byte order", lambda: linear_forward(h.astype(">f4"), W, b)),
        (ValueError, r"^linear_backward: dW must be \(V, H\) = \(4, 5\), the shape of W; got \(4, 4\)$",
         lambda: linear_backward(h, W, np.ones((3, 4), f), np.zeros((4, 4), f), b.copy())),
        (ValueError, r"^linear_backward: dz must be \(N, V\) = \(3, 4\).*; got \(3, 3\)$",
         lambda: linear_backward(h, W, np.ones((3, 3), f), np.zeros((4, 5), f), b.copy())),
    ]
    for error, message, call_it in cases:
        with pytest.raises(error, match=message) as e:
            call_it()
        assert "\n" not in str(e.value)
    z = linear_forward(h, W, b)                       # the right arguments still run
    loss, dz = softmax_cross_entropy(z, np.array([0, 3, 1]))
    assert np.isclose(loss, np.log(4)) and dz.shape == (3, 4)
    assert np.isclose(cross_entropy(z, np.array([0, 3, 1])), np.log(4))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_read_only_inputs_are_copied_not_compiled_for(cell):
    """A read-only array is a type of its own to Numba (seconds of compiling per kernel): the
    kernels copy such inputs and run the version they have; one they write into is refused."""
    kernel = getattr(kernel_module(cell), f"{cell}_forward")
    arrays = good_arrays(cell)
    want = call(kernel, arrays)
    compiled = len(kernel.signatures)
    frozen = {}
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
        frozen[name] = value
    got = call(kernel, frozen)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(g, w)
    assert len(kernel.signatures) == compiled


def test_read_only_output_arrays_are_refused():
    from rnnjit.kernels.dense import linear_backward
    f = np.float32
    dW, db = np.zeros((4, 5), f), np.zeros(4, f)
    db.setflags(write=False)
    with pytest.raises(TypeError, match="^linear_backward: db is read-only, and the kernel writes its result into it"):
        linear_backward(np.ones((3, 5), f), np.ones((4, 5), f), np.ones((3, 4), f), dW, db)
