"""What the models do with the arrays and options users hand them: arrays of the wrong shape or
batch, non-positive sizes, state dicts that cannot load, sampling options out of range. Each is
one line of ValueError naming the user's argument (never a kernel's or NumPy's message, never a
read past the end of an array), and a refused call leaves the model as it was."""

import numpy as np
import pytest

from rnnjit.data import Vocab
from rnnjit.models import CharLM, ConditionedGenerator, Seq2Seq, SequenceClassifier, sample, sample_stream


def one_line(call, match):
    """``call()`` raises a one-line ValueError matching ``match``; returns its message."""
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
    return str(e.value)


def generator(**kw):
    return ConditionedGenerator(condition_size=5, vocab_size=10, hidden_size=8, seed=0, **kw)


Y = np.array([[3, 4, 5], [2, 2, 2]])               # (T, B) = (2, 3)


# ---- 1. the generator's condition vectors ------------------------------------------------------

@pytest.mark.parametrize("width", [4, 6, 50])
@pytest.mark.parametrize("call", ["loss", "forward_backward", "generate"])
def test_generator_refuses_conditions_of_another_width(width, call):
    """A narrower v was read past its end (a loss came back); a wider one made BLAS complain."""
    g, v = generator(), np.ones((3, width), np.float32)
    run = (lambda: g.generate(v)) if call == "generate" else (lambda: getattr(g, call)(v, Y))
    msg = one_line(run, r"^v must be \(B, 5\): one row of condition_size features per sequence")
    assert msg.endswith(f"got (3, {width})")


def test_generator_reads_one_condition_vector_as_a_batch_of_one():
    g = generator()
    v = np.random.default_rng(0).random(5).astype(np.float32)
    assert g.generate(v, max_len=4) == g.generate(v[None], max_len=4)[0]
    one_line(lambda: g.generate(np.ones(4, np.float32)), r"v must be \(B, 5\).*got \(4,\)$")
    one_line(lambda: g.loss(np.ones(5, np.float32), Y), r"v must be \(B, 5\).*got \(5,\)$")
    one_line(lambda: g.generate(np.ones((3, 5), "U1")), "^v must hold numbers")


# ---- 2. batch sizes that disagree, arrays of the wrong rank --------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: Seq2Seq(12, 10, 8, seed=0).forward_backward(np.ones((6, 2), int), Y),
     r"^x has batch 2 but y has batch 3 \(x is \(6, 2\), y is \(2, 3\)\)"),
    (lambda: Seq2Seq(12, 10, 8, seed=0).loss(np.ones((6, 2), int), Y), "^x has batch 2 but y has batch 3"),
    (lambda: generator().forward_backward(np.ones((2, 5), np.float32), Y),
     r"^v has batch 2 but y has batch 3 \(v is \(2, 5\), y is \(2, 3\)\)"),
    (lambda: generator().loss(np.ones((2, 5), np.float32), Y), "^v has batch 2 but y has batch 3"),
    (lambda: SequenceClassifier(2, 1).predict(np.ones((10, 2), np.float32)),
     r"^x must be \(T, B, I\) = \(T, B, 2\).*got \(10, 2\)$"),
    (lambda: SequenceClassifier(2, 1).predict(np.ones((10, 4, 3), np.float32)), r"got \(10, 4, 3\)$"),
    (lambda: SequenceClassifier(2, 1).forward_backward(np.ones((10, 4, 2)), np.ones(3)),
     r"^x has batch 4 but y has batch 3"),
    (lambda: SequenceClassifier(2, 2).loss(np.ones((10, 4, 2)), np.ones(4)),
     r"^y must be \(B, output_size\) = \(4, 2\).*got \(4,\)$"),
    (lambda: generator().forward_backward(np.ones((3, 5)), Y[0]), r"^targets must be a \(T, B\) array of ids"),
    (lambda: generator().forward_backward(np.ones((3, 5)), Y[:0]), r"at least one of each\), got shape \(0, 3\)$"),
    (lambda: Seq2Seq(12, 10, 8).forward_backward(np.ones(6, int), Y), r"^sources must be a \(S, B\) array"),
    (lambda: Seq2Seq(12, 10, 8).forward_backward(np.ones((6, 3), int), Y[:0]), r"^targets must be a \(U, B\)"),
    (lambda: CharLM(7, 8, 1).logits(np.zeros(5, int)), r"^x must be a \(T, B\) array of ids"),
    (lambda: CharLM(7, 8, 1).loss(np.zeros((0, 2), int), np.zeros((0, 2), int)), r"T and B >= 1"),
], ids=["s2s-fb", "s2s-loss", "gen-fb", "gen-loss", "clf-2d", "clf-features", "clf-fb-y", "clf-y-width",
        "gen-1d-y", "gen-empty-y", "s2s-1d-x", "s2s-empty-y", "lm-1d", "lm-empty"])
def test_shapes_that_disagree_are_one_line_naming_the_arrays(call, match):
    one_line(call, match)


def test_seq2seq_translates_one_sequence_given_as_one_column():
    s, x = Seq2Seq(12, 10, 8, seed=0), np.array([3, 4, 5, 6])
    assert s.translate(x, max_len=4) == s.translate(x[:, None], max_len=4)[0]


# ---- 3. load_state_dict: every entry checked and converted before the first is written ----------

MODELS = {
    "charlm": lambda seed: CharLM(7, 8, 2, seed=seed),
    "classifier": lambda seed: SequenceClassifier(2, 3, 4, seed=seed),
    "generator": lambda seed: ConditionedGenerator(5, 10, 4, seed=seed),
    "seq2seq": lambda seed: Seq2Seq(9, 6, 4, seed=seed),
}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("bad,match", [
    (lambda a: np.full(a.shape, "x"), "has dtype <U1, expected real numbers"),
    (lambda a: a.astype(np.complex64), "has dtype complex64"),
    (lambda a: a[..., :1], "has shape"),
    (lambda a: [[1, 2], [3]], "is not an array"),
], ids=["str", "complex", "shape", "ragged"])
def test_a_refused_state_dict_leaves_every_parameter_as_it_was(model, bad, match):
    """The bad entry is the last one in the model's order: before, CharLM loaded the layer and
    then failed on its own parameters, and Module assigned key by key."""
    m, other = MODELS[model](0), MODELS[model](1)
    before = m.state_dict()
    state = other.state_dict()
    last = [k for k, _, _ in m.parameters()][-1]
    state[last] = bad(state[last])
    msg = one_line(lambda: m.load_state_dict(state), f"^load_state_dict: {last} ")
    assert match in msg
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_state_dict_keys_and_type_errors_name_the_full_keys():
    m = CharLM(7, 8, 2, seed=0)
    msg = one_line(lambda: m.load_state_dict(CharLM(7, 8, 1).state_dict()), "^load_state_dict: missing rnn.")
    assert "unexpected nothing" in msg
    one_line(lambda: m.load_state_dict(list(m.state_dict().items())), "takes a dict of arrays by name")


@pytest.fixture
def torch_lm():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.Module()
    t.embedding, t.rnn, t.decoder = torch.nn.Embedding(7, 8), torch.nn.LSTM(8, 8, 2), torch.nn.Linear(8, 7)
    return torch, t


def test_torch_parameters_that_require_grad_load_whole(torch_lm):
    torch, t = torch_lm
    m = CharLM(7, 8, 2, seed=0)
    m.load_state_dict(dict(t.named_parameters()))      # requires_grad: used to fail half-way
    for k, p in t.named_parameters():
        np.testing.assert_array_equal(m.state_dict()[k], p.detach().numpy(), err_msg=k)


def test_a_bfloat16_state_is_one_line_and_loads_nothing(torch_lm):
    torch, t = torch_lm
    m = CharLM(7, 8, 2, seed=0)
    before = m.state_dict()
    state = {k: v.detach().clone() for k, v in t.state_dict().items()}
    state["decoder.bias"] = state["decoder.bias"].to(torch.bfloat16)
    one_line(lambda: m.load_state_dict(state), r"^load_state_dict: decoder.bias is a tensor of torch.bfloat16.*\.float\(\)")
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# ---- 4. greedy decoding: max_len=0, and the training mode after a failure ------------------------

def test_max_len_zero_gives_empty_rows():
    assert generator().generate(np.ones((3, 5), np.float32), max_len=0) == [[], [], []]
    assert Seq2Seq(12, 10, 8, seed=0).translate(np.ones((4, 2), int), max_len=0) == [[], []]
    one_line(lambda: generator().generate(np.ones((3, 5)), max_len=-1), "^max_len must be a non-negative integer")
    one_line(lambda: generator().generate(np.ones((3, 5)), max_len=2.5), "^max_len must be a non-negative integer")


@pytest.mark.parametrize("training", [True, False])
def test_a_failed_decode_keeps_the_models_training_mode(training):
    g, s = generator(), Seq2Seq(12, 10, 8, seed=0)
    g.train(training), s.train(training)
    with pytest.raises(ValueError):
        g.generate(np.ones((3, 5)), max_len=-1)
    with pytest.raises(ValueError):
        s.translate(np.ones((4, 2), int), max_len=-1)
    assert g.rnn.training is training
    assert s.encoder.training is training and s.decoder.training is training


# ---- 5. sampling options ------------------------------------------------------------------------

@pytest.fixture
def lm():
    vocab = Vocab.from_text("abcdefgh \n")
    return CharLM(vocab.size, 8, seed=0), vocab


@pytest.mark.parametrize("option,match", [
    (dict(stop="ab"), r"^stop takes one character, got 'ab'$"),
    (dict(stop=""), r"^stop takes one character, got ''$"),
    (dict(stop="Z"), r"^stop='Z' is not one of the model's characters"),
    (dict(top_k=2.5), r"^top_k must be an integer >= 1 .*got 2.5$"),
    (dict(top_k=True), r"^top_k must be an integer >= 1 .*got True$"),
    (dict(top_k=0), r"^top_k must be an integer >= 1"),
    (dict(length=3.5), r"^length must be an integer >= 0, got 3.5$"),
    (dict(length=-1), r"^length must be an integer >= 0, got -1$"),
    (dict(temperature="0.5"), r"^temperature must be > 0, got '0.5'$"),
    (dict(temperature=float("nan")), r"^temperature must be > 0, got nan$"),
    (dict(seed="x"), r"^seed must be an integer >= 0"),
    (dict(prime=5), r"^prime must be a string"),
], ids=lambda v: repr(v) if isinstance(v, dict) else "")
def test_sampling_options_are_checked_by_name(lm, option, match):
    model, vocab = lm
    kw = dict(length=5, prime="a", seed=0) | option
    one_line(lambda: sample(model, vocab, **kw), match)
    one_line(lambda: "".join(sample_stream(model, vocab, **kw)), match)
    assert model.rnn.training


@pytest.mark.parametrize("temperature", [1e-320, 1e-30, 1e-6])
def test_a_tiny_temperature_is_argmax(lm, recwarn, temperature):
    """exp overflowed to NaN at 1e-320; the limit of a vanishing temperature is argmax."""
    model, vocab = lm
    got = sample(model, vocab, 12, prime="a", temperature=temperature, seed=0)
    assert got == sample(model, vocab, 12, prime="a", argmax=True)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_numpy_integers_pass_as_lengths(lm):
    model, vocab = lm
    assert len(sample(model, vocab, np.int64(5), prime="a", top_k=np.int32(3), seed=0)) == 5


# ---- 6. CharLM: the same cells and options as the other models -----------------------------------

def test_char_lm_takes_rnn_relu_as_the_other_models_do():
    x = np.random.default_rng(0).integers(0, 7, (5, 2))
    a = CharLM(7, 8, cell="rnn-relu", seed=0)
    b = CharLM(7, 8, cell="rnn", nonlinearity="relu", seed=0)
    assert a.rnn.nonlinearity == "relu"
    assert a.loss(x, x)[0] == b.loss(x, x)[0]
    one_line(lambda: CharLM(7, 8, cell="rnn-relu", nonlinearity="tanh"), "^cell='rnn-relu' is the relu RNN")


@pytest.mark.parametrize("kw,match", [
    (dict(cell="gru", nonlinearity="bogus"), r"^nonlinearity must be 'tanh' or 'relu', got 'bogus'$"),
    (dict(cell="lstm", nonlinearity="relu"), r"^nonlinearity='relu' applies to cell='rnn' only"),
    (dict(input="onehot", embedding_size=32), r"^embedding_size=32 does not apply to input='onehot'"),
    (dict(cell="transformer"), r"^unknown cell 'transformer': choose rnn, rnn-relu, lstm or gru$"),
], ids=["gru-bogus", "lstm-relu", "onehot-embedding", "transformer"])
def test_char_lm_options_that_would_be_ignored_are_refused(kw, match):
    one_line(lambda: CharLM(7, 8, **kw), match)


def test_char_lm_state_defaults_to_zeros():
    m = CharLM(7, 8, 2, seed=0)
    x = np.random.default_rng(1).integers(0, 7, (5, 3))
    zeros = m.initial_state(3)
    assert m.loss(x, x)[0] == m.loss(x, x, zeros)[0]
    np.testing.assert_array_equal(m.logits(x)[0], m.logits(x, zeros)[0])
    assert m.forward_backward(x, x)[0] == m.forward_backward(x, x, zeros)[0]
    assert CharLM(7, 8, cell="gru", nonlinearity="tanh").rnn.cell_name == "gru"   # what the trainer passes


# ---- 7. sizes must be positive integers, in every constructor ------------------------------------

SIZES = [
    (lambda v: Seq2Seq(v, 10), "src_vocab", 0),
    (lambda v: Seq2Seq(12, v), "tgt_vocab", -1),
    (lambda v: Seq2Seq(12, 10, hidden_size=v), "hidden_size", 0),
    (lambda v: Seq2Seq(12, 10, embedding_size=v), "embedding_size", 0),
    (lambda v: SequenceClassifier(v, 1), "input_size", 0),
    (lambda v: SequenceClassifier(2, v), "output_size", 0),
    (lambda v: SequenceClassifier(2, v), "output_size", True),
    (lambda v: SequenceClassifier(2, 1, num_layers=v), "num_layers", 0),
    (lambda v: ConditionedGenerator(v, 10), "condition_size", 0),
    (lambda v: ConditionedGenerator(5, v), "vocab_size", 0),
    (lambda v: ConditionedGenerator(5, 10, hidden_size=v), "hidden_size", "8"),
    (lambda v: ConditionedGenerator(5, 10, embedding_size=v), "embedding_size", -3),
    (lambda v: CharLM(v, 8), "vocab_size", 0),
    (lambda v: CharLM(7, 8, num_layers=v), "num_layers", 0),
    (lambda v: CharLM(7, 8, embedding_size=v), "embedding_size", 2.5),
]


@pytest.mark.parametrize("make,name,value", SIZES, ids=[f"{i}-{n}={v!r}" for i, (_, n, v) in enumerate(SIZES)])
def test_sizes_must_be_positive_integers(make, name, value):
    one_line(lambda: make(value), f"^{name} must be a positive integer, got {value!r}$".replace("(", r"\("))
