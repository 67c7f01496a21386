"""The composed models: gradients against central finite differences (float64), shapes, state_dict."""

import numpy as np
import pytest

from rnnjit.finite_differences import compare_with_finite_differences
from rnnjit.data import Vocab
from rnnjit.models import CharLM, ConditionedGenerator, Seq2Seq, SequenceClassifier, sample

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


# ---- ids out of range: a one-line ValueError at the host boundary, never a read out of bounds -----

T, B = 5, 3


def char_lm(**kw):
    return CharLM(10, 8, 1, cell="gru", seed=0, **kw)


def classifier():
    return SequenceClassifier(2, 3, hidden_size=4, loss="ce", seed=0)


def generator():
    return ConditionedGenerator(3, 6, hidden_size=4, seed=0)


def seq2seq():
    return Seq2Seq(9, 6, hidden_size=4, seed=0)


def zeros():
    return np.zeros((T, B), np.int64)


def eos():
    """Targets that are all <eos> (2): not padding, so the decoders' loss has rows to average."""
    return np.full((T, B), 2, np.int64)


# name -> (model, shape of the ids under test, call(model, ids) -> a loss, what, its bound's name, bound)
ID_CALLS = {
    "charlm-fb-inputs": (char_lm, (T, B), lambda m, a: m.forward_backward(a, zeros(), m.initial_state(B))[0],
                         "inputs", "vocab_size", 10),
    "charlm-fb-targets": (char_lm, (T, B), lambda m, a: m.forward_backward(zeros(), a, m.initial_state(B))[0],
                          "targets", "vocab_size", 10),
    "charlm-onehot-fb-inputs": (lambda: char_lm(input="onehot"), (T, B),
                                lambda m, a: m.forward_backward(a, zeros(), m.initial_state(B))[0],
                                "inputs", "vocab_size", 10),
    "charlm-loss-inputs": (char_lm, (T, B), lambda m, a: m.loss(a, zeros(), m.initial_state(B))[0],
                           "inputs", "vocab_size", 10),
    "charlm-loss-targets": (char_lm, (T, B), lambda m, a: m.loss(zeros(), a, m.initial_state(B))[0],
                            "targets", "vocab_size", 10),
    "charlm-logits": (char_lm, (T, B), lambda m, a: float(m.logits(a, m.initial_state(B))[0].sum()),
                      "inputs", "vocab_size", 10),
    "classifier-fb": (classifier, (4,), lambda m, a: m.forward_backward(np.ones((T, 4, 2), np.float32), a),
                      "labels", "output_size", 3),
    "classifier-loss": (classifier, (4,), lambda m, a: m.loss(np.ones((T, 4, 2), np.float32), a),
                        "labels", "output_size", 3),
    "generator-fb": (generator, (T, B), lambda m, a: m.forward_backward(np.ones((B, 3)), a),
                     "targets", "vocab_size", 6),
    "generator-loss": (generator, (T, B), lambda m, a: m.loss(np.ones((B, 3)), a), "targets", "vocab_size", 6),
    "seq2seq-fb-sources": (seq2seq, (T, B), lambda m, a: m.forward_backward(a, eos()),
                           "sources", "src_vocab", 9),
    "seq2seq-fb-targets": (seq2seq, (T, B), lambda m, a: m.forward_backward(zeros(), a),
                           "targets", "tgt_vocab", 6),
    "seq2seq-loss-sources": (seq2seq, (T, B), lambda m, a: m.loss(a, eos()), "sources", "src_vocab", 9),
    "seq2seq-loss-targets": (seq2seq, (T, B), lambda m, a: m.loss(zeros(), a), "targets", "tgt_vocab", 6),
    "seq2seq-translate": (seq2seq, (T, B), lambda m, a: float(len(m.translate(a, max_len=3))),
                          "sources", "src_vocab", 9),
}


def one_bad(shape, value, dtype=np.int64):
    """Zeros of ``shape`` with ``value`` in the last entry."""
    a = np.zeros(shape, dtype)
    a.reshape(-1)[-1] = value
    return a


@pytest.mark.parametrize("bad,dtype,reads", [
    ("V", np.int64, "[0, V]"),                    # the first id past the end
    (10 ** 6, np.int64, "[0, 1000000]"),          # far past: used to segfault
    (-1, np.int64, "[-1, 0]"),
    (-1, np.int32, "[-1, 0]"),
    ("V", np.float64, "[0, V]"),                  # whole floats pass the dtype, not the range
], ids=["V", "1e6", "neg", "neg-int32", "V-float"])
@pytest.mark.parametrize("case", list(ID_CALLS))
def test_ids_out_of_range_raise_one_line(case, bad, dtype, reads):
    make, shape, call, what, size_name, size = ID_CALLS[case]
    bad = size if bad == "V" else bad
    m = make()
    with pytest.raises(ValueError) as e:
        call(m, one_bad(shape, bad, dtype))
    expected = f"{what} must be in [0, {size_name}={size}), got values in {reads.replace('V', str(size))}"
    assert str(e.value) == expected


@pytest.mark.parametrize("bad,dtype,message", [
    (1.7, np.float64, "must be whole numbers (integer ids), got 1.7"),
    (np.nan, np.float32, "must be whole numbers (integer ids), got nan"),
    (1, bool, "must be integer ids, got dtype bool"),
], ids=["1.7", "nan", "bool"])
@pytest.mark.parametrize("case", list(ID_CALLS))
def test_ids_that_are_not_whole_numbers_raise_one_line(case, bad, dtype, message):
    make, shape, call, what, _, _ = ID_CALLS[case]
    with pytest.raises(ValueError) as e:
        call(make(), one_bad(shape, bad, dtype))
    assert str(e.value).startswith(f"{what} {message}") and "\n" not in str(e.value)


@pytest.mark.parametrize("case", list(ID_CALLS))
def test_edge_ids_zero_and_last_still_work(case):
    """0 and size - 1 are valid; whole floats read as the same ids (the same loss)."""
    make, shape, call, _, _, size = ID_CALLS[case]
    ids = np.zeros(shape, np.int64)
    ids.reshape(-1)[::2] = size - 1
    m = make()
    loss = call(m, ids)
    assert np.isfinite(loss)
    assert call(m, ids.astype(np.float64)) == loss


def test_special_ids_and_label_counts_are_checked():
    with pytest.raises(ValueError, match=r"^pad, bos and eos must be in \[0, vocab_size=2\), got values in \[0, 2\]$"):
        ConditionedGenerator(3, 2)
    with pytest.raises(ValueError, match=r"^pad, bos and eos must be in \[0, tgt_vocab=6\), got values in \[0, 7\]$"):
        Seq2Seq(9, 6, eos=7)
    with pytest.raises(ValueError, match=r"^labels must hold one class id per sequence, B=4, got shape \(3,\)$"):
        classifier().forward_backward(np.ones((T, 4, 2), np.float32), np.array([0, 1, 2]))
    m = char_lm()
    with pytest.raises(ValueError, match="one shape"):
        m.loss(zeros(), np.zeros((T, 2), np.int64), m.initial_state(B))


def test_sampling_needs_the_models_vocabulary():
    vocab = Vocab.from_text("abcdefghijkl")                           # 12 characters, the model has 10
    with pytest.raises(ValueError, match=r"vocabulary has 12 characters but the model has vocab_size=10"):
        sample(char_lm(), vocab, 5, prime="l")
    assert len(sample(char_lm(), Vocab.from_text("abcdefghij"), 5, prime="j", seed=0)) == 5


def test_a_batch_of_only_pad_targets_has_loss_zero():
    """Nothing to predict: loss 0 and no gradient (the GPU's masked kernel gives the same), not nan."""
    from rnnjit.models.module import CpuKernels
    z = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    loss, dz = CpuKernels.masked_softmax_cross_entropy(z, np.zeros(4, np.int64), 0)
    assert loss == 0.0 and not dz.any() and dz.shape == z.shape
    assert CpuKernels.masked_cross_entropy(z, np.zeros(4, np.int64), 0) == 0.0
