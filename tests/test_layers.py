"""Layers against the NumPy reference, finite differences and torch.nn, over every configuration."""

import numpy as np
import pytest

import rnnjit
from rnnjit.kernels import CELLS
from rnnjit.nn import LAYERS
from naive import naive_backward, naive_forward

# Every cell (the RNN twice: tanh and relu) x {1, 2} layers x {uni, bi} x {time-major, batch_first}.
CELL_VARIANTS = [(c, "tanh") for c in CELLS] + [("rnn", "relu")]
CONFIGS = [(c, nl, L, bi, bf) for c, nl in CELL_VARIANTS for L in (1, 2) for bi in (False, True)
           for bf in (False, True)]
IDS = [f"{c}{'-' + nl if c == 'rnn' else ''}-L{L}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}"
       for c, nl, L, bi, bf in CONFIGS]
T, B, I, H = 5, 3, 4, 6


def make_layer(cell, nl, L, bi, bf, dtype=np.float64, seed=0, **kw):
    extra = {"nonlinearity": nl} if cell == "rnn" else {}
    return LAYERS[cell](I, H, num_layers=L, bidirectional=bi, batch_first=bf, dtype=dtype, seed=seed,
                        **extra, **kw)


def problem(cell, L, bi, bf, dtype, seed=1):
    """Inputs, initial states and upstream gradients for a random loss."""
    rng = np.random.default_rng(seed)
    S, D = L * (2 if bi else 1), 2 if bi else 1
    x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(dtype)
    h0 = (rng.standard_normal((S, B, H)) * 0.5).astype(dtype)
    c0 = (rng.standard_normal((S, B, H)) * 0.5).astype(dtype)
    dout = rng.standard_normal((B, T, D * H) if bf else (T, B, D * H)).astype(dtype)
    dh = rng.standard_normal((S, B, H)).astype(dtype)
    dc = rng.standard_normal((S, B, H)).astype(dtype)
    return x, h0, c0, dout, dh, dc


def run(layer, x, h0, c0, dout, dh, dc):
    if layer.cell.has_cell_state:
        out, (h_n, c_n) = layer(x, (h0, c0))
        dx, (dh0, dc0) = layer.backward(dout, (dh, dc))
    else:
        out, h_n = layer(x, h0)
        dx, dh0 = layer.backward(dout, dh)
        c_n = dc0 = None
    return out, h_n, c_n, dx, dh0, dc0


def assert_close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
    assert err < rtol, f"{what}: relative error {err:.2e} >= {rtol:.0e}"


@pytest.mark.parametrize("cell,nl,L,bi,bf", CONFIGS, ids=IDS)
def test_matches_numpy_reference(cell, nl, L, bi, bf):
    layer = make_layer(cell, nl, L, bi, bf)
    x, h0, c0, dout, dh, dc = problem(cell, L, bi, bf, np.float64)
    out, h_n, c_n, dx, dh0, dc0 = run(layer, x, h0, c0, dout, dh, dc)

    tm = (lambda a: a.transpose(1, 0, 2)) if bf else (lambda a: a)
    lstm = cell == "lstm"
    r_out, r_hn, r_cn, cache = naive_forward(cell, layer.state_dict(), tm(x), h0, c0 if lstm else None,
                                             num_layers=L, bidirectional=bi, nonlinearity=nl)
    r_dx, r_dh0, r_dc0, r_grads, r_norms = naive_backward(cell, layer.state_dict(), cache, tm(dout), dh,
                                                          dc if lstm else None)
    assert_close(out, tm(r_out), 1e-12, "out")
    assert_close(h_n, r_hn, 1e-12, "h_n")
    assert_close(dx, tm(r_dx), 1e-10, "dx")
    assert_close(dh0, r_dh0, 1e-10, "dh0")
    if lstm:
        assert_close(c_n, r_cn, 1e-12, "c_n")
        assert_close(dc0, r_dc0, 1e-10, "dc0")
    assert set(layer.grads) == set(r_grads)
    for k in r_grads:
        assert_close(layer.grads[k], r_grads[k], 1e-10, k)
    assert layer.hidden_grad_norms.shape == (L * (2 if bi else 1), T)
    assert_close(layer.hidden_grad_norms, r_norms, 1e-10, "hidden_grad_norms")


@pytest.mark.parametrize("cell,nl,L,bi,bf", [c for c in CONFIGS if not c[4]],
                         ids=[i for c, i in zip(CONFIGS, IDS) if not c[4]])
def test_finite_differences(cell, nl, L, bi, bf):
    errors = rnnjit.gradcheck(make_layer(cell, nl, L, bi, bf), max_entries=12)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
    assert {"input", "h0"} <= set(errors)


torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-8), (np.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,nl,L,bi,bf", CONFIGS, ids=IDS)
def test_matches_torch(cell, nl, L, bi, bf, dtype, rtol):
    t = _torch()
    tdt = t.float64 if dtype == np.float64 else t.float32
    kw = {"nonlinearity": nl} if cell == "rnn" else {}
    ref = {"rnn": t.nn.RNN, "lstm": t.nn.LSTM, "gru": t.nn.GRU}[cell](
        I, H, num_layers=L, bidirectional=bi, batch_first=bf, dtype=tdt, **kw)
    layer = make_layer(cell, nl, L, bi, bf, dtype=dtype)
    layer.load_state_dict(ref.state_dict())  # torch's weights into rnnjit: names, shapes, gate order
    x, h0, c0, dout, dh, dc = problem(cell, L, bi, bf, dtype)
    out, h_n, c_n, dx, dh0, dc0 = run(layer, x, h0, c0, dout, dh, dc)

    tx, th0, tc0 = (t.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if cell == "lstm":
        tout, (thn, tcn) = ref(tx, (th0, tc0))
        loss = (tout * t.tensor(dout)).sum() + (thn * t.tensor(dh)).sum() + (tcn * t.tensor(dc)).sum()
    else:
        tout, thn = ref(tx, th0)
        loss = (tout * t.tensor(dout)).sum() + (thn * t.tensor(dh)).sum()
    loss.backward()
    assert_close(out, tout.detach().numpy(), rtol, "out")
    assert_close(h_n, thn.detach().numpy(), rtol, "h_n")
    assert_close(dx, tx.grad.numpy(), rtol, "dx")
    assert_close(dh0, th0.grad.numpy(), rtol, "dh0")
    if cell == "lstm":
        assert_close(c_n, tcn.detach().numpy(), rtol, "c_n")
        assert_close(dc0, tc0.grad.numpy(), rtol, "dc0")
    for name, p in ref.named_parameters():
        assert_close(layer.grads[name], p.grad.numpy(), rtol, name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_dict_round_trips_to_torch(cell):
    t = _torch()
    layer = LAYERS[cell](I, H, num_layers=2, bidirectional=True, seed=3)
    ref = {"rnn": t.nn.RNN, "lstm": t.nn.LSTM, "gru": t.nn.GRU}[cell](I, H, num_layers=2, bidirectional=True)
    ref.load_state_dict({k: t.tensor(v) for k, v in layer.state_dict().items()})  # rnnjit -> torch
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    out = layer(x)[0]
    assert_close(out, ref(t.tensor(x))[0].detach().numpy(), 1e-5, "out")


@pytest.mark.parametrize("cell", list(CELLS))
def test_unbatched_input_matches_batch_of_one(cell):
    layer = LAYERS[cell](I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((T, I))
    out3d = layer(x[:, None, :])[0]
    out2d = layer(x)[0]
    assert out2d.shape == (T, 2 * H)
    np.testing.assert_allclose(out2d, out3d[:, 0, :])
    dx = layer.backward(np.ones_like(out2d))[0]
    assert dx.shape == (T, I)


@pytest.mark.parametrize("cell", list(CELLS))
def test_bias_false(cell):
    layer = LAYERS[cell](I, H, num_layers=2, bias=False, dtype=np.float64, seed=0)
    assert not any(k.startswith("bias") for k in layer.state_dict())
    errors = rnnjit.gradcheck(layer, max_entries=8)
    assert max(errors.values()) < 1e-6


def test_init_is_seeded_and_uniform():
    a, b, c = (rnnjit.LSTM(I, 64, seed=s) for s in (7, 7, 8))
    w = a.state_dict()["weight_hh_l0"]
    np.testing.assert_array_equal(w, b.state_dict()["weight_hh_l0"])
    assert not np.array_equal(w, c.state_dict()["weight_hh_l0"])
    assert np.abs(w).max() <= 1 / 8 and np.abs(w).max() > 0.9 / 8


def test_dropout_only_in_training_and_seeded():
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    make = lambda: rnnjit.GRU(I, H, num_layers=3, dropout=0.5, seed=1)
    a, b = make(), make()
    out_a, out_b = a(x)[0], b(x)[0]
    np.testing.assert_array_equal(out_a, out_b)          # same seed, same masks
    assert not np.array_equal(out_a, a(x)[0])            # a new mask each call
    a.eval()
    np.testing.assert_array_equal(a(x)[0], a(x)[0])      # no dropout in eval mode
    ref = rnnjit.GRU(I, H, num_layers=3, dropout=0.0, seed=1)
    np.testing.assert_allclose(a(x)[0], ref(x)[0])


def test_dropout_gradient_uses_the_same_mask():
    layer = rnnjit.LSTM(I, H, num_layers=2, dropout=0.5, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, G = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    state = layer.dropout_rng.bit_generator.state
    out, _ = layer(x)
    dx, _ = layer.backward(G)
    eps, i = 1e-6, (2, 1, 3)
    numeric = []
    for sgn in (1, -1):
        xp = x.copy()
        xp[i] += sgn * eps
        layer.dropout_rng.bit_generator.state = state   # replay the same dropout mask
        numeric.append((layer(xp)[0] * G).sum())
    assert abs((numeric[0] - numeric[1]) / (2 * eps) - dx[i]) < 1e-6 * max(1, abs(dx[i]))


@pytest.mark.parametrize("Bb,Hh", [(9, 37), (1, 133), (3, 133)], ids=["B9", "B1", "B3"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-8), (np.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,nl", CELL_VARIANTS, ids=[f"{c}-{n}" for c, n in CELL_VARIANTS])
def test_packed_recurrent_products_match_torch(cell, nl, dtype, rtol, Bb, Hh):
    """The packed-weight recurrent product (kernels/_smallgemm.py): odd sizes cover partial column
    panels and leftover rows (B = 9), and batches below 4, whose rows go four panels at a time and
    then one (H = 133)."""
    t = _torch()
    tdt = t.float64 if dtype == np.float64 else t.float32
    kw = {"nonlinearity": nl} if cell == "rnn" else {}
    Ii, Tt = 5, 6
    ref = {"rnn": t.nn.RNN, "lstm": t.nn.LSTM, "gru": t.nn.GRU}[cell](Ii, Hh, num_layers=2, bidirectional=True,
                                                                      dtype=tdt, **kw)
    layer = LAYERS[cell](Ii, Hh, num_layers=2, bidirectional=True, dtype=dtype, **kw)
    layer.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((Tt, Bb, Ii)).astype(dtype)
    dout = rng.standard_normal((Tt, Bb, 2 * Hh)).astype(dtype)
    out = layer(x)[0]
    dx = layer.backward(dout)[0]
    tx = t.tensor(x, requires_grad=True)
    tout = ref(tx)[0]
    (tout * t.tensor(dout)).sum().backward()
    assert_close(out, tout.detach().numpy(), rtol, "out")
    assert_close(dx, tx.grad.numpy(), rtol, "dx")
    for name, p in ref.named_parameters():
        assert_close(layer.grads[name], p.grad.numpy(), rtol, name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_batches_of_four_and_more_by_finite_differences(cell):
    layer = LAYERS[cell](3, 33, num_layers=1, bidirectional=True, dtype=np.float64, seed=0)
    errors = rnnjit.gradcheck(layer, seq_len=3, batch=9, max_entries=8)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype,also", [(np.int64, False), (np.float16, False), (np.float64, True)])
def test_wrong_dtype_suggests_only_what_works(dtype, also):
    """The cast always works; a layer of x's dtype only exists for float32 and float64."""
    with pytest.raises(TypeError) as e:
        rnnjit.LSTM(8, 16)(np.zeros((5, 3, 8), dtype))
    msg = str(e.value)
    assert "\n" not in msg and "x.astype(np.float32)" in msg
    assert ("build the layer" in msg) == also
    assert "dtype=np.float64" in msg if also else "dtype=" not in msg
    rnnjit.LSTM(8, 16)(np.zeros((5, 3, 8), dtype).astype(np.float32))   # the advice works


@pytest.mark.parametrize("bad", [42, None, "lstm", np.zeros(3)])
def test_gradcheck_takes_a_layer(bad):
    with pytest.raises(TypeError, match=r"^gradcheck takes a recurrent layer .*got \w+$"):
        rnnjit.gradcheck(bad)


def test_dir_lists_the_lazy_names_without_importing_them():
    import subprocess
    import sys
    code = ("import sys, rnnjit; names = dir(rnnjit); "
            "print(sorted(set(names) & {'RNN', 'LSTM', 'GRU', 'gradcheck', '__version__'}), "
            "'rnnjit.nn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "['GRU', 'LSTM', 'RNN', '__version__', 'gradcheck'] False"
    assert {"RNN", "LSTM", "GRU", "gradcheck"} <= set(dir(rnnjit))
