"""The NumPy reference in ``tests/naive.py`` against PyTorch (float64) and finite differences."""

import numpy as np
import pytest

try:  # tests/ is on sys.path (rootdir-prepend, no __init__.py)
    from naive import init_params, naive_backward, naive_forward
except ImportError:  # pragma: no cover - tests/ as a package
    from tests.naive import init_params, naive_backward, naive_forward

torch = pytest.importorskip("torch")

T, B, I, H = 5, 3, 4, 6
RTOL = 1e-10

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


def _close(a, b, name, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    scale = max(np.max(np.abs(b)), 1e-30)
    err = np.max(np.abs(a - b)) / scale if a.size else 0.0
    assert err <= rtol, f"{name}: relative error {err:.3e} > {rtol:.0e}"


def _torch_module(cell, nonlinearity, num_layers, bidirectional, bias, params):
    kw = dict(input_size=I, hidden_size=H, num_layers=num_layers, bias=bias,
              bidirectional=bidirectional, dtype=torch.float64)
    if cell == "rnn":
        mod = torch.nn.RNN(nonlinearity=nonlinearity, **kw)
    elif cell == "lstm":
        mod = torch.nn.LSTM(**kw)
    else:
        mod = torch.nn.GRU(**kw)
    named = dict(mod.named_parameters())
    assert set(named) == set(params), (sorted(named), sorted(params))
    with torch.no_grad():
        for name, p in named.items():
            assert tuple(p.shape) == params[name].shape, name
            p.copy_(torch.from_numpy(params[name]))
    return mod


def _problem(cell, num_layers, bidirectional, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    params = init_params(cell, I, H, num_layers, bidirectional, bias=bias, rng=rng)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((num_layers * D, B, H)) * 0.5
    c0 = rng.standard_normal((num_layers * D, B, H)) * 0.5 if cell == "lstm" else None
    G = rng.standard_normal((T, B, D * H))
    Gh = rng.standard_normal((num_layers * D, B, H))
    Gc = rng.standard_normal((num_layers * D, B, H)) if cell == "lstm" else None
    return params, x, h0, c0, G, Gh, Gc


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell,nonlinearity", CELLS, ids=CELL_IDS)
def test_matches_torch(cell, nonlinearity, num_layers, bidirectional):
    _check_against_torch(cell, nonlinearity, num_layers, bidirectional, bias=True)


@pytest.mark.parametrize("cell,nonlinearity", CELLS, ids=CELL_IDS)
def test_matches_torch_no_bias(cell, nonlinearity):
    _check_against_torch(cell, nonlinearity, 2, True, bias=False)


def _check_against_torch(cell, nonlinearity, num_layers, bidirectional, bias):
    params, x, h0, c0, G, Gh, Gc = _problem(cell, num_layers, bidirectional, bias)
    if not bias:
        assert not any(k.startswith("bias") for k in params)

    out, h_n, c_n, cache = naive_forward(cell, params, x, h0, c0, num_layers=num_layers,
                                         bidirectional=bidirectional, nonlinearity=nonlinearity)
    dx, dh0, dc0, grads, norms = naive_backward(cell, params, cache, G, Gh, Gc)

    mod = _torch_module(cell, nonlinearity, num_layers, bidirectional, bias, params)
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    if cell == "lstm":
        tc0 = torch.tensor(c0, requires_grad=True)
        tout, (th_n, tc_n) = mod(tx, (th0, tc0))
        loss = (tout * torch.from_numpy(G)).sum() + (th_n * torch.from_numpy(Gh)).sum() \
            + (tc_n * torch.from_numpy(Gc)).sum()
    else:
        tout, th_n = mod(tx, th0)
        loss = (tout * torch.from_numpy(G)).sum() + (th_n * torch.from_numpy(Gh)).sum()
    loss.backward()

    _close(out, tout.detach().numpy(), "out")
    _close(h_n, th_n.detach().numpy(), "h_n")
    _close(dx, tx.grad.numpy(), "dx")
    _close(dh0, th0.grad.numpy(), "dh0")
    if cell == "lstm":
        _close(c_n, tc_n.detach().numpy(), "c_n")
        _close(dc0, tc0.grad.numpy(), "dc0")
    else:
        assert c_n is None and dc0 is None
    assert set(grads) == set(params)
    for name, p in mod.named_parameters():
        assert grads[name].shape == params[name].shape
        _close(grads[name], p.grad.numpy(), f"d{name}")
    D = 2 if bidirectional else 1
    assert norms.shape == (num_layers * D, T)
    assert np.all(np.isfinite(norms)) and np.all(norms >= 0)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell,nonlinearity", CELLS, ids=CELL_IDS)
def test_hidden_grad_norms_match_torch_cells(cell, nonlinearity, bidirectional):
    """1 layer: step torch cells by hand, retain_grad() on every h_t, compare the norms."""
    params, x, h0, c0, G, Gh, Gc = _problem(cell, 1, bidirectional, seed=1)
    out, h_n, c_n, cache = naive_forward(cell, params, x, h0, c0, num_layers=1,
                                         bidirectional=bidirectional, nonlinearity=nonlinearity)
    *_, norms = naive_backward(cell, params, cache, G, Gh, Gc)

    D = 2 if bidirectional else 1
    hs_all, loss = [], 0.0
    outs = [[None] * D for _ in range(T)]
    for d in range(D):
        s = "_l0" + ("_reverse" if d else "")
        if cell == "rnn":
            tcell = torch.nn.RNNCell(I, H, nonlinearity=nonlinearity, dtype=torch.float64)
        elif cell == "lstm":
            tcell = torch.nn.LSTMCell(I, H, dtype=torch.float64)
        else:
            tcell = torch.nn.GRUCell(I, H, dtype=torch.float64)
        with torch.no_grad():
            for name, p in tcell.named_parameters():
                p.copy_(torch.from_numpy(params[name + s]))
        h = torch.tensor(h0[d])
        c = torch.tensor(c0[d]) if cell == "lstm" else None
        hs = [None] * T
        for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
            xt = torch.tensor(x[t])
            if cell == "lstm":
                h, c = tcell(xt, (h, c))
            else:
                h = tcell(xt, h)
            h.retain_grad()
            hs[t] = h
            outs[t][d] = h
        hs_all.append(hs)
        loss = loss + (h * torch.from_numpy(Gh[d])).sum()
        if cell == "lstm":
            loss = loss + (c * torch.from_numpy(Gc[d])).sum()
    tout = torch.stack([torch.cat(o, dim=1) for o in outs])
    loss = loss + (tout * torch.from_numpy(G)).sum()
    loss.backward()

    _close(out, tout.detach().numpy(), "out (cells)")
    expected = np.array([[np.linalg.norm(hs_all[d][t].grad.numpy()) for t in range(T)]
                         for d in range(D)])
    _close(norms, expected, "hidden_grad_norms")


@pytest.mark.parametrize("cell,nonlinearity", [("lstm", "tanh"), ("gru", "tanh"),
                                               ("rnn", "tanh")], ids=["lstm", "gru", "rnn"])
def test_finite_differences(cell, nonlinearity):
    num_layers, bidirectional = 2, True
    params, x, h0, c0, G, Gh, Gc = _problem(cell, num_layers, bidirectional, seed=2)

    def loss(p, x=x, h0=h0, c0=c0):
        out, h_n, c_n, _ = naive_forward(cell, p, x, h0, c0, num_layers=num_layers,
                                         bidirectional=bidirectional, nonlinearity=nonlinearity)
        val = np.sum(out * G) + np.sum(h_n * Gh)
        if cell == "lstm":
            val += np.sum(c_n * Gc)
        return val

    _, _, _, cache = naive_forward(cell, params, x, h0, c0, num_layers=num_layers,
                                   bidirectional=bidirectional, nonlinearity=nonlinearity)
    dx, dh0, dc0, grads, _ = naive_backward(cell, params, cache, G, Gh, Gc)

    eps = 1e-6
    rng = np.random.default_rng(3)
    checks = ["weight_ih_l0", "weight_hh_l0_reverse", "bias_hh_l1", "weight_hh_l1"]
    for name in checks:
        for _ in range(2):
            idx = tuple(rng.integers(0, n) for n in params[name].shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd = (loss(plus) - loss(minus)) / (2 * eps)
            assert abs(fd - grads[name][idx]) <= 1e-6 * max(1.0, abs(fd)), (name, idx, fd,
                                                                            grads[name][idx])
    # one input entry and one initial-state entry
    xp, xm = x.copy(), x.copy()
    xp[2, 1, 3] += eps
    xm[2, 1, 3] -= eps
    fd = (loss(params, x=xp) - loss(params, x=xm)) / (2 * eps)
    assert abs(fd - dx[2, 1, 3]) <= 1e-6 * max(1.0, abs(fd))
    hp, hm = h0.copy(), h0.copy()
    hp[3, 0, 1] += eps
    hm[3, 0, 1] -= eps
    fd = (loss(params, h0=hp) - loss(params, h0=hm)) / (2 * eps)
    assert abs(fd - dh0[3, 0, 1]) <= 1e-6 * max(1.0, abs(fd))


def test_defaults_and_init():
    params = init_params("gru", I, H, 2, True, rng=0)
    assert params["weight_ih_l0"].shape == (3 * H, I)
    assert params["weight_ih_l1_reverse"].shape == (3 * H, 2 * H)
    assert params["bias_hh_l1"].shape == (3 * H,)
    assert all(np.max(np.abs(v)) <= 1 / np.sqrt(H) for v in params.values())
    assert all(v.dtype == np.float64 for v in params.values())
    assert init_params("lstm", I, H, dtype=np.float32)["weight_hh_l0"].dtype == np.float32
    x = np.random.default_rng(0).standard_normal((T, B, I))
    out, h_n, c_n, cache = naive_forward("gru", params, x, None, num_layers=2, bidirectional=True)
    out2, *_ = naive_forward("gru", params, x, np.zeros((4, B, H)), num_layers=2,
                             bidirectional=True)
    np.testing.assert_array_equal(out, out2)
    # dh_n defaults to zero: only the output gradient flows back
    dx, dh0, dc0, grads, norms = naive_backward("gru", params, cache, np.zeros_like(out))
    assert not np.any(dx) and not np.any(dh0) and dc0 is None and not np.any(norms)
