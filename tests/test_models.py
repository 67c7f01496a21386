"""The composed models: gradients against central finite differences (float64), shapes, state_dict."""

import numpy as np
import pytest

from rnnjit.finite_differences import compare_with_finite_differences
from rnnjit.models import ConditionedGenerator, Seq2Seq, SequenceClassifier

CELLS = ["rnn", "lstm", "gru"]
EPS = 1e-6


def finite_difference_errors(model, loss, extra=None, entries=4, seed=0):
    """Worst relative error, per parameter (and per extra (name, array, analytic grad)), of the
    analytic gradient against (L(θ+ε) - L(θ-ε)) / 2ε at a few random entries."""
    arrays = [(k, p, g.copy()) for k, p, g in model.parameters()] + list(extra or [])
    return compare_with_finite_differences(loss, {name: (value, grad) for name, value, grad in arrays},
                                           entries, EPS, np.random.default_rng(seed), floor=1e-8)


def assert_small(errors, tol=1e-6):
    bad = {k: f"{v:.1e}" for k, v in errors.items() if not v < tol}
    assert not bad, f"gradient mismatch: {bad}"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers,bi", [(1, False), (2, True)], ids=["L1", "L2-bi"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_classifier_gradients(cell, layers, bi, loss):
    rng = np.random.default_rng(1)
    T, B, I, O = 5, 3, 2, 3
    m = SequenceClassifier(I, O, hidden_size=4, num_layers=layers, cell=cell, bidirectional=bi, loss=loss,
                           dtype=np.float64, seed=2)
    x = rng.standard_normal((T, B, I))
    y = rng.standard_normal((B, O)) if loss == "mse" else rng.integers(0, O, B)
    m.forward_backward(x, y)
    assert m.input_grad.shape == x.shape
    assert_small(finite_difference_errors(m, lambda: m.loss(x, y), [("x", x, m.input_grad.copy())]))


def test_classifier_reads_only_the_final_state():
    """The loss depends on h_T alone: the recorded dL/dh_t at the last step equals ||dL/dh_T||."""
    m = SequenceClassifier(2, 1, hidden_size=6, cell="rnn", dtype=np.float64, seed=0)
    x = np.random.default_rng(0).random((7, 4, 2))
    m.forward_backward(x, np.ones(4))
    norms = m.hidden_grad_norms
    assert norms.shape == (1, 7) and np.all(norms > 0)
    assert m.predict(x).shape == (4, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_generator_gradients(cell):
    rng = np.random.default_rng(3)
    F, V, B = 5, 7, 3
    m = ConditionedGenerator(F, V, hidden_size=4, num_layers=2, cell=cell, embedding_size=3,
                             dtype=np.float64, seed=4)
    v = rng.standard_normal((B, F))
    y = np.array([[3, 4, 5], [6, 2, 3], [2, 0, 4], [0, 0, 2]])   # (T, B): <eos> = 2, then <pad> = 0
    m.forward_backward(v, y)
    assert_small(finite_difference_errors(m, lambda: m.loss(v, y), [("v", v, m.input_grad.copy())]))


@pytest.mark.parametrize("cell", CELLS)
def test_seq2seq_gradients(cell):
    rng = np.random.default_rng(5)
    m = Seq2Seq(9, 6, hidden_size=4, num_layers=2, cell=cell, embedding_size=3, dtype=np.float64, seed=6)
    x = rng.integers(3, 9, (6, 3))
    x[:2, 0] = 0                                                   # left padding
    y = np.array([[3, 4, 5], [5, 2, 3], [2, 0, 2]])
    m.forward_backward(x, y)
    assert m.hidden_grad_norms.shape == (2, 6 + 3)                # encoder steps, then decoder steps
    assert_small(finite_difference_errors(m, lambda: m.loss(x, y)))


def test_pad_targets_are_ignored():
    m = ConditionedGenerator(3, 6, hidden_size=4, dtype=np.float64, seed=0)
    v = np.ones((2, 3))
    y = np.array([[3, 4], [2, 2], [0, 0]])
    y2 = y.copy()
    y2[2] = 5                                                      # a real word where there was padding
    assert m.loss(v, y) != m.loss(v, y2)
    y3 = np.array([[3, 4], [2, 2]])
    assert m.loss(v, y) == pytest.approx(m.loss(v, y3))


def test_greedy_decoding_shapes_and_state_dict_round_trip():
    m = Seq2Seq(9, 6, hidden_size=5, cell="gru", seed=0)
    x = np.random.default_rng(0).integers(3, 9, (4, 3))
    out = m.translate(x, max_len=5)
    assert len(out) == 3 and all(len(r) <= 5 for r in out)
    twin = Seq2Seq(9, 6, hidden_size=5, cell="gru", seed=1)
    twin.load_state_dict(m.state_dict())
    assert twin.translate(x, max_len=5) == out
    assert sorted(m.state_dict()) == sorted(k for k, _, _ in m.parameters())
    assert any(k.startswith("encoder.weight_hh") for k in m.state_dict())
    with pytest.raises(ValueError, match="missing"):
        twin.load_state_dict({})
    g = ConditionedGenerator(4, 6, hidden_size=5, num_layers=2, cell="lstm", seed=0)
    caps = g.generate(np.ones((2, 4), np.float32), max_len=4)
    assert len(caps) == 2 and all(len(c) <= 4 for c in caps)
