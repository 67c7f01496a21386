"""Property: the layers' and models' Python API answers any argument with a result or a one-line
ValueError/TypeError, never a Numba traceback, an IndexError from deep inside, or a hang.

Hypothesis draws constructor arguments (sizes, flags, dtypes, dropout, nonlinearity: valid and
not) and then inputs and states of any rank, shape and dtype, NaN included, and calls forward
and backward. test_errors.py holds the hand-written cases this generalises.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rnnjit
from rnnjit.models import sample
from rnnjit.models.char_lm import CharLM

LAYERS = {"rnn": rnnjit.RNN, "lstm": rnnjit.LSTM, "gru": rnnjit.GRU}
EXAMPLES = 150

def mostly(good, bad):
    """A good value four times in five, so that most draws get past the constructor."""
    return st.integers(0, 4).flatmap(lambda i: bad if i == 0 else good)


sizes = mostly(st.integers(1, 5), st.sampled_from([0, -1, 2.5, "3", None, True, 10**12]))
dtypes = mostly(st.sampled_from([np.float32, np.float64]), st.sampled_from([np.float16, np.int32, "float32", None, object]))


def one_line_error(call):
    """Run call(); -> "ok" or the error type. Anything but ValueError/TypeError (or MemoryError for
    absurd sizes, which NumPy words in one line) fails the test."""
    try:
        call()
    except (ValueError, TypeError, MemoryError) as e:   # MemoryError: "Unable to allocate 21.8 TiB ..."
        msg = str(e)
        assert msg and "\n" not in msg, f"{type(e).__name__} over several lines: {msg!r}"
        return type(e).__name__
    return "ok"


@st.composite
def arrays(draw, dtype_default):
    rank = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(0, 4)) for _ in range(rank))
    dtype = draw(st.sampled_from([dtype_default] * 4 + [np.float64, np.float32, np.int64, np.complex64]))
    with np.errstate(invalid="ignore"):   # NaN cast to an integer dtype: garbage is the point
        a = np.asarray(draw(st.sampled_from([0.5, np.nan, np.inf, -3.0])) * np.ones(shape)).astype(dtype)
    if draw(st.booleans()) and a.ndim >= 2:
        a = a.swapaxes(0, 1)     # not contiguous
    return a


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cell=st.sampled_from(sorted(LAYERS)), input_size=sizes, hidden_size=sizes,
       num_layers=sizes, bidirectional=st.booleans(), batch_first=st.booleans(),
       dropout=mostly(st.sampled_from([0.0, 0.3]), st.sampled_from([1.0, -0.1, float("nan")])), dtype=dtypes)
def test_layers_take_anything(data, cell, input_size, hidden_size, num_layers, bidirectional, batch_first,
                              dropout, dtype):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dropout=dropout,
              dtype=dtype, seed=0)
    if cell == "rnn":
        kw["nonlinearity"] = data.draw(mostly(st.sampled_from(["tanh", "relu"]), st.just("sigmoid")))
    made = []
    outcome = one_line_error(lambda: made.append(LAYERS[cell](input_size, hidden_size, **kw)))
    event(f"constructor: {outcome}")
    if not made:
        return
    layer = made[0]
    x = data.draw(arrays(layer.dtype))
    if data.draw(st.booleans()):   # often the right shape, so that forward and backward run
        T, B = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
        x = np.zeros((B, T, input_size) if batch_first else (T, B, input_size), layer.dtype)
    results = []
    outcome = one_line_error(lambda: results.append(layer(x)))
    event(f"forward: {outcome}")
    if results:
        out = results[0][0]
        dout = data.draw(st.sampled_from([np.ones_like(out), np.ones(out.shape[:-1] + (out.shape[-1] + 1,)),
                                          np.ones_like(out, dtype=np.float16)]))
        event(f"backward: {one_line_error(lambda: layer.backward(dout))}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prime=mostly(st.text("abcdef \n", max_size=6), st.text(max_size=6)),
       length=mostly(st.integers(0, 6), st.just(-2)),
       temperature=mostly(st.sampled_from([0.5, 1.5]), st.sampled_from([0.0, -1.0, float("nan")])),
       top_k=mostly(st.sampled_from([None, 1, 3, 100]), st.sampled_from([0, -2])),
       stop=mostly(st.sampled_from([None, "a"]), st.sampled_from(["ab", ""])))
def test_sampling_takes_anything(prime, length, temperature, top_k, stop):
    from rnnjit.data import Vocab
    vocab = Vocab.from_text("abcdef \n")
    model = CharLM(vocab.size, 6, 1, "gru", seed=0)
    outcome = one_line_error(lambda: sample(model, vocab, length, prime=prime, temperature=temperature,
                                            top_k=top_k, stop=stop, seed=0))
    event(f"sample: {outcome}")


@pytest.mark.parametrize("bad", [dict(vocab_size=0), dict(hidden_size=-1), dict(cell="transformer"),
                                 dict(num_layers=0), dict(dtype=np.int8)])
def test_char_lm_constructor_errors(bad):
    args = dict(vocab_size=5, hidden_size=4, num_layers=1, cell="lstm") | bad
    assert one_line_error(lambda: CharLM(**args)) in ("ValueError", "TypeError")


@pytest.mark.parametrize("sizes", [(3, 1, 10**12), (10**9, 10**4, 1), (2, 10**7, 2)])
def test_impossible_sizes_are_refused_before_allocating(sizes):
    """Found by the fuzzer: num_layers=10**12 allocated layer after layer until the kernel killed
    the process. Sizes that cannot fit in this machine's memory are a ValueError at once."""
    input_size, hidden_size, num_layers = sizes
    with pytest.raises(ValueError, match="more than this machine's"):
        rnnjit.GRU(input_size, hidden_size, num_layers=num_layers)
