"""One-hot inputs read as a column gather, and backward without the input's gradient.

W_ih e_c is column c of W_ih: ``forward_onehot(ids)`` gathers columns where ``forward(eye[ids])``
multiplies a one-hot matrix, and its dW_ih is a scatter-add where the dense path has a GEMM.
``backward(..., input_grad=False)`` skips dx = dG W_ih. Both must change nothing but the time:
same outputs, states, loss and every gradient as the dense one-hot path.
"""

import numpy as np
import pytest

from rnnjit.kernels import dense
from rnnjit.models import CharLM
from rnnjit.nn import LAYERS

CELL_VARIANTS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", ""), ("gru", "")]
TOL = {np.float64: 1e-12, np.float32: 1e-5}
T, V, H = 6, 7, 9


def close(a, b, dtype, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
    assert err < TOL[dtype], f"{what}: relative error {err:.2e}"


def make(cell, nl, L, bi, dtype, **kw):
    extra = {"nonlinearity": nl} if cell == "rnn" else {}
    return LAYERS[cell](V, H, num_layers=L, bidirectional=bi, dtype=dtype, seed=0, **extra, **kw)


def run(layer, x, onehot, input_grad, dout, dh):
    """forward (dense one-hot vectors or their indices) and backward -> every result, by name."""
    lstm = layer.cell.has_cell_state
    state = (dh, dh) if lstm else dh
    out, hn = layer.forward_onehot(x) if onehot else layer.forward(x)
    dx, dh0 = layer.backward(dout, state, input_grad=input_grad)
    res = {"out": out, "dx": dx, "norms": layer.hidden_grad_norms}
    res.update({"h_n": hn[0], "c_n": hn[1], "dh0": dh0[0], "dc0": dh0[1]} if lstm else {"h_n": hn, "dh0": dh0})
    res.update({"grad " + k: g.copy() for k, g in layer.grads.items()})
    return res


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("B", [1, 5], ids=["B1", "B5-packed"])
@pytest.mark.parametrize("cell,nl", CELL_VARIANTS, ids=[f"{c}{'-' + n if n else ''}" for c, n in CELL_VARIANTS])
def test_gather_and_skipped_dx_match_the_dense_one_hot_path(cell, nl, B, L, bi, dtype):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (T, B))
    ids[0, 0] = V - 1  # the last column too
    onehot = np.eye(V, dtype=dtype)[ids]
    D = 2 if bi else 1
    dout = rng.standard_normal((T, B, D * H)).astype(dtype)
    dh = rng.standard_normal((L * D, B, H)).astype(dtype)
    layer = make(cell, nl, L, bi, dtype)
    ref = run(layer, onehot, False, True, dout, dh)                     # the dense path, as before
    assert ref["dx"].shape == (T, B, V)
    for onehot_in, input_grad in ((ids, True), (ids, False), (onehot, False)):
        got = run(layer, onehot_in, onehot_in is ids, input_grad, dout, dh)
        assert set(got) == set(ref)
        for k in ref:
            if k == "dx" and not input_grad:
                assert got[k] is None
                continue
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
            close(got[k], ref[k], dtype, k)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_onehot_layouts(cell):
    """batch_first ids (B, T) and unbatched ids (T,) give what the dense one-hot vectors give."""
    rng = np.random.default_rng(2)
    ids = rng.integers(0, V, (3, T))  # (B, T)
    eye = np.eye(V)
    bf = LAYERS[cell](V, H, num_layers=2, batch_first=True, dtype=np.float64, seed=0)
    np.testing.assert_allclose(bf.forward_onehot(ids)[0], bf.forward(eye[ids])[0], rtol=1e-13)
    dx = bf.backward(np.ones((3, T, H)), input_grad=True)[0]
    assert dx.shape == (3, T, V)
    tm = LAYERS[cell](V, H, dtype=np.float64, seed=0)
    out = tm.forward_onehot(ids[0])[0]
    assert out.shape == (T, H)
    np.testing.assert_allclose(out, tm.forward(eye[ids[0]])[0], rtol=1e-13)
    dx, dh0 = tm.backward(np.ones((T, H)), input_grad=False)
    assert dx is None and np.shape(dh0[0] if cell == "lstm" else dh0) == (1, H)


def test_forward_onehot_errors():
    layer = LAYERS["lstm"](V, H)
    with pytest.raises(TypeError, match="integers"):
        layer.forward_onehot(np.zeros((T, 2)))
    with pytest.raises(ValueError, match=r"\[0, input_size=7\)"):
        layer.forward_onehot(np.full((T, 2), V))
    with pytest.raises(ValueError, match="shape"):
        layer.forward_onehot(np.zeros((T, 2, 1), np.int64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_input_kernels(dtype):
    """gather_inputs / gather_weight_grad against the GEMMs they replace."""
    rng = np.random.default_rng(3)
    G = 11
    ids = rng.integers(0, V, (4, 3))
    W, b = rng.standard_normal((G, V)).astype(dtype), rng.standard_normal(G).astype(dtype)
    dA = rng.standard_normal((4, 3, G)).astype(dtype)
    x = np.eye(V, dtype=dtype)[ids]
    close(dense.gather_inputs(ids, W, b), dense.project_inputs(x, W, b), dtype, "gather_inputs")
    few = ids[:1, :1]                      # fewer ids than characters: only their rows are built
    close(dense.onehot_table(W, b, few)[few[0, 0]], dense.onehot_table(W, b)[few[0, 0]], dtype, "table row")
    close(dense.gather_weight_grad(dA, ids, V), dense.input_weight_grad(dA, x), dtype, "gather_weight_grad")
    close(dense.input_grad(dA, W), dA @ W, dtype, "input_grad")
    with pytest.raises(ValueError, match="outside"):
        dense.gather_inputs(np.full((2, 2), -1), W, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_lm_onehot_gather_matches_dense_path(cell, L, dtype):
    """CharLM(input="onehot") on the CPU gathers; the same model through the dense one-hot GEMM
    (forward_onehot replaced by forward of the vectors) gives the same loss and gradients."""
    Vc, Hc, Tc, Bc = 13, 8, 5, 4
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, Vc, (Tc, Bc)), rng.integers(0, Vc, (Tc, Bc))
    results = []
    for gather in (True, False):
        model = CharLM(Vc, Hc, L, cell, input="onehot", dtype=dtype, seed=5)
        if not gather:
            rnn, eye = model.rnn, np.eye(Vc, dtype=dtype)
            model.rnn.forward_onehot = lambda ids, state: rnn.forward(eye[ids], state)
        loss, state = model.forward_backward(x, y, model.initial_state(Bc))
        results.append((loss, state, {k: g.copy() for k, _, g in model.parameters()}))
    (loss, state, grads), (ref_loss, ref_state, ref_grads) = results
    assert abs(loss - ref_loss) <= TOL[dtype] * abs(ref_loss)
    for a, b in zip(np.atleast_1d(state), np.atleast_1d(ref_state)):
        close(a, b, dtype, "state")
    for k in ref_grads:
        close(grads[k], ref_grads[k], dtype, k)
