"""Each optimizer against a hand computation, and clipping."""

import numpy as np
import pytest

from rnnjit.train.optim import OPTIMIZERS, Adagrad, Adam, RMSprop, SGD, clip_gradients


def one_param(dtype=np.float64):
    p = np.array([1.0, -2.0, 0.5], dtype)
    g = np.array([0.1, 0.2, -0.3], dtype)
    return p, g


def test_sgd_momentum_by_hand():
    p, g = one_param()
    opt = SGD([("w", p, g)], lr=0.1, momentum=0.9)
    opt.step()
    np.testing.assert_allclose(p, [1 - 0.01, -2 - 0.02, 0.5 + 0.03])
    opt.step()  # v = 0.9 g + g = 1.9 g
    np.testing.assert_allclose(p, np.array([1.0, -2.0, 0.5]) - 0.1 * g - 0.1 * 1.9 * g)


def test_adagrad_by_hand():
    p, g = one_param()
    opt = Adagrad([("w", p, g)], lr=0.5, eps=1e-8)
    p0 = p.copy()
    opt.step()
    opt.step()
    s = 2 * g * g
    np.testing.assert_allclose(p, p0 - 0.5 * g / (np.sqrt(g * g) + 1e-8) - 0.5 * g / (np.sqrt(s) + 1e-8))


def test_rmsprop_by_hand():
    p, g = one_param()
    opt = RMSprop([("w", p, g)], lr=0.01, alpha=0.9, eps=1e-8)
    p0 = p.copy()
    opt.step()
    s1 = 0.1 * g * g
    p1 = p0 - 0.01 * g / (np.sqrt(s1) + 1e-8)
    np.testing.assert_allclose(p, p1)
    opt.step()
    s2 = 0.9 * s1 + 0.1 * g * g
    np.testing.assert_allclose(p, p1 - 0.01 * g / (np.sqrt(s2) + 1e-8))


def test_adam_by_hand():
    p, g = one_param()
    opt = Adam([("w", p, g)], lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8)
    p0 = p.copy()
    m = v = 0
    for t in (1, 2, 3):
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        p0 = p0 - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
        np.testing.assert_allclose(p, p0, rtol=1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch(name):
    torch = pytest.importorskip("torch")
    p, g = one_param()
    kw = {"sgd": dict(lr=0.1, momentum=0.9), "adagrad": dict(lr=0.1, eps=1e-10),
          "rmsprop": dict(lr=0.01, alpha=0.95, eps=1e-8), "adam": dict(lr=0.01, eps=1e-8)}[name]
    opt = OPTIMIZERS[name]([("w", p, g)], **kw)
    tp = torch.tensor(one_param()[0], requires_grad=True)
    topt = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
            "adam": torch.optim.Adam}[name]([tp], **kw)
    for _ in range(4):
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
    # torch's RMSprop and Adagrad add eps outside the square root as we do
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip(name):
    p, g = one_param(np.float32)
    a = OPTIMIZERS[name]([("w", p, g)], lr=0.01)
    a.step()
    q = p.copy()
    b = OPTIMIZERS[name]([("w", q, g)], lr=0.01)
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    a.step()
    b.step()
    np.testing.assert_array_equal(p, q)


def test_clip_by_norm_reports_norm_before():
    g1, g2 = np.array([3.0, 0.0]), np.array([[0.0, 4.0]])
    norm, fired = clip_gradients([g1, g2], 1.0, "norm")
    assert norm == pytest.approx(5.0) and fired
    assert np.sqrt((g1 ** 2).sum() + (g2 ** 2).sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(g1, [0.6, 0.0])
    norm, fired = clip_gradients([g1, g2], 10.0, "norm")
    assert norm == pytest.approx(1.0) and not fired


def test_clip_by_value():
    g = np.array([-3.0, 0.5, 2.0])
    norm, fired = clip_gradients([g], 1.0, "value")
    assert fired and norm == pytest.approx(np.sqrt(9 + 0.25 + 4))
    np.testing.assert_array_equal(g, [-1.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        clip_gradients([g], 1.0, "sideways")
