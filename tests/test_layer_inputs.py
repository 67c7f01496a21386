"""What a layer accepts as x, states and dout besides native, writeable NumPy arrays of its
dtype: other byte orders, lists, read-only arrays; and its messages for unbatched states."""

import dataclasses

import numpy as np
import pytest

import rnnjit
from rnnjit.nn import LAYERS

T, B, I, H = 5, 2, 3, 4


def problem(cell, seed=0):
    """A 2-layer layer, x, a state argument and dout, all float32."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[cell](I, H, num_layers=2, seed=seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((2, B, H)).astype(np.float32)
    hx = (h0, h0 * 0.5) if cell == "lstm" else h0
    dout = rng.standard_normal((T, B, H)).astype(np.float32)
    return layer, x, hx, dout


def spy_on_kernels(layer):
    """Records every NumPy array the layer hands to its cell's kernels."""
    seen = []

    def spied(kernel):
        def call(*args, **kw):
            seen.extend(a for a in (*args, *(kw.get("into") or ())) if isinstance(a, np.ndarray))
            return kernel(*args, **kw)
        return call

    c = layer.cell
    layer.cell = dataclasses.replace(c, forward=spied(c.forward), backward=spied(c.backward),
                                     forward_onehot=spied(c.forward_onehot))
    return seen


def run(layer, x, hx, dout):
    out, state = layer(x, hx)
    dx, dstate = layer.backward(dout, hx)      # hx doubles as the final state's gradient
    both = lambda s: s if isinstance(s, tuple) else (s,)
    return [out, dx, *both(state), *both(dstate)]


def convert(hx, f):
    return tuple(f(s) for s in hx) if isinstance(hx, tuple) else f(hx)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_big_endian_arrays_give_the_native_results(cell):
    layer, x, hx, dout = problem(cell)
    want = run(layer, x, hx, dout)
    big = lambda a: a.astype(">f4")
    seen = spy_on_kernels(layer)
    got = run(layer, big(x), convert(hx, big), big(dout))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert all(a.dtype.isnative for a in seen)


def test_big_endian_float64_is_still_a_dtype_error():
    with pytest.raises(TypeError, match=r"^x has dtype float64, but the layer is float32: pass x\.astype"):
        rnnjit.GRU(I, H)(np.ones((T, B, I), ">f8"))


@pytest.mark.parametrize("cell", list(LAYERS))
def test_lists_are_read_in_the_layer_dtype(cell):
    layer, x, hx, dout = problem(cell)
    want = run(layer, x, hx, dout)
    got = run(layer, x.tolist(), convert(hx, np.ndarray.tolist), dout.tolist())
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    out, _ = rnnjit.GRU(I, H, dtype=np.float64)([[[1, 2, 3]]])           # ints in a list, too
    assert out.dtype == np.float64 and out.shape == (1, 1, H)


@pytest.mark.parametrize("x, error, pattern", [
    ([[[0.1, 0.2, 0.3]], [[0.1, 0.2]]], ValueError, r"^x is a list that is not a rectangular array: "),
    ([[["a", "b", "c"]]], TypeError, r"^x must hold numbers, got a list that NumPy reads as str"),
])
def test_lists_that_are_not_arrays_of_numbers(x, error, pattern):
    with pytest.raises(error, match=pattern) as e:
        rnnjit.GRU(I, H)(x)
    assert "\n" not in str(e.value)


def test_arrays_of_another_float_dtype_are_still_refused():
    with pytest.raises(TypeError, match=r"^h0 has dtype float64, but the layer is float32$"):
        rnnjit.GRU(I, H)(np.ones((T, B, I), np.float32), np.zeros((1, B, H)))


@pytest.mark.parametrize("cell", list(LAYERS))
def test_read_only_arrays_reach_the_kernels_writeable(cell):
    """Numba compiles a separate version of every kernel for read-only arrays (seconds each)."""
    layer, x, hx, dout = problem(cell)
    want = run(layer, x, hx, dout)

    def frozen(a):
        a = a.copy()
        a.setflags(write=False)
        return a

    seen = spy_on_kernels(layer)
    got = run(layer, frozen(x), convert(hx, frozen), frozen(dout))
    ids = frozen(np.arange(T * B, dtype=np.int64).reshape(T, B) % I)
    layer.forward_onehot(ids, hx)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert seen and all(a.flags.writeable for a in seen)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_unbatched_states_are_spoken_of_without_a_batch_axis(cell):
    """x (T, I) takes states (layers*directions, H): the message names that and what was passed."""
    layer = LAYERS[cell](I, H, num_layers=2, bidirectional=True)
    x = np.zeros((T, I), np.float32)
    good, bad = np.zeros((4, H), np.float32), np.zeros((4, H + 1), np.float32)
    hx = (lambda h, c: (h, c)) if cell == "lstm" else (lambda h, c: h)
    for args, name in (((bad, good), "h0"), ((good, bad), "c0")):
        if name == "c0" and cell != "lstm":
            continue
        with pytest.raises(ValueError) as e:
            layer(x, hx(*args))
        assert str(e.value) == (f"{name} must have shape (4, {H}) (layers*directions, hidden) for unbatched x, "
                                f"got (4, {H + 1})")
    out, state = layer(x, hx(good, good))
    with pytest.raises(ValueError, match=rf"^dh_n must have shape \(4, {H}\) .* got \(4, 1, {H + 1}\)$"):
        layer.backward(np.zeros_like(out), hx(bad[:, None], good))
    batched = layer(x[:, None], hx(good[:, None], good[:, None]))[0]     # (S, 1, H) still passes
    np.testing.assert_array_equal(layer(x, hx(good[:, None], good[:, None]))[0], batched[:, 0])
    np.testing.assert_array_equal(out, batched[:, 0])


def test_layer_load_state_dict_is_all_or_nothing_with_one_line_errors():
    """The layers load as the models do (``shapes.loadable``): a torch tensor that requires grad
    loads, a bfloat16 one or a string array is one line naming the key, and a failed load changes
    nothing."""
    layer = rnnjit.GRU(I, H, num_layers=2, seed=0)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    state = {k: v + 1 for k, v in before.items()}
    state["bias_hh_l1"] = np.array(["x"] * (3 * H))
    with pytest.raises(ValueError, match=r"^load_state_dict: bias_hh_l1 has dtype <U1, expected real numbers"):
        layer.load_state_dict(state)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    t = pytest.importorskip("torch")
    ref = t.nn.GRU(I, H, num_layers=2)
    layer.load_state_dict(dict(ref.named_parameters()))          # requires_grad: detached, loaded
    np.testing.assert_array_equal(layer.state_dict()["weight_hh_l1"], ref.weight_hh_l1.detach().numpy())
    with pytest.raises(ValueError, match=r"^load_state_dict: weight_ih_l0 is a tensor of torch.bfloat16"):
        layer.load_state_dict({k: v.to(t.bfloat16) for k, v in ref.state_dict().items()})
