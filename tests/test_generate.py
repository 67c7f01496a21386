"""The compiled sampling loop (``kernels/generate.py``) against the per-character path it replaces
on the CPU: the same characters for every cell, input, depth and dtype, and the same states."""

import numpy as np
import pytest

from rnnjit.data import Vocab
from rnnjit.kernels.generate import generate
from rnnjit.models import CharLM, sample, sample_stream
from rnnjit.models.sampling import _CompiledGeneration

TEXT = "the quick brown fox jumps over the lazy dog. " * 20
VOCAB = Vocab.from_text(TEXT)
CELLS = ["rnn", "rnn-relu", "lstm", "gru"]


def model_for(cell, input_kind="onehot", layers=2, dtype=np.float64, H=12, seed=0):
    m = CharLM(VOCAB.size, H, layers, cell, input=input_kind, embedding_size=5 if input_kind == "embedding" else None,
               dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)     # biases away from zero: a missing one would show
    for name, p, _ in m.parameters():
        if "bias" in name:
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return m


def both(model, **kw):
    """The compiled loop's characters and the per-character path's, with the same options."""
    fast = "".join(sample_stream(model, VOCAB, **kw))
    slow = "".join(sample_stream(model, VOCAB, compiled=False, **kw))
    return fast, slow


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("input_kind", ["onehot", "embedding"])
@pytest.mark.parametrize("cell", CELLS)
def test_the_compiled_loop_draws_what_the_model_call_a_character_draws(cell, input_kind, layers, dtype):
    """70 characters: past the first chunks (16, then 32), with a prime and without."""
    model = model_for(cell, input_kind, layers, dtype)
    fast, slow = both(model, length=70, prime="the ", temperature=0.9, seed=3)
    assert len(fast) == 70 and fast == slow
    fast, slow = both(model, length=70, argmax=True, seed=4)
    assert fast == slow


@pytest.mark.parametrize("cell", CELLS)
def test_top_k_stop_and_a_given_rng_as_the_per_character_path(cell):
    model = model_for(cell)
    fast, slow = both(model, length=60, prime="qu", top_k=3, temperature=1.5, seed=1)
    assert fast == slow
    fast = sample(model, VOCAB, 300, prime="a", stop=" ", temperature=2.0, seed=0)
    assert fast == sample(model, VOCAB, 300, prime="a", stop=" ", temperature=2.0, seed=0)
    fast, slow = both(model, length=300, prime="a", stop=" ", temperature=2.0, seed=0)
    assert fast == slow and fast.endswith(" ") and fast.count(" ") == 1
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    assert "".join(sample_stream(model, VOCAB, 40, rng=r1)) == "".join(sample_stream(model, VOCAB, 40, rng=r2,
                                                                                      compiled=False))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("cell", CELLS)
def test_the_states_after_generating_are_the_models(cell, dtype, tol):
    """Generate from a state, then read the same characters through ``model.logits``: the states
    (and the LSTM's cell states) agree to rounding."""
    model = model_for(cell, "embedding", 2, dtype)
    model.eval()
    g = _CompiledGeneration.of(model)
    rng = np.random.default_rng(0)
    h = (0.5 * rng.standard_normal((2, 12))).astype(dtype)
    c = (0.5 * rng.standard_normal((2, 12))).astype(dtype)
    h0, c0 = h.copy(), c.copy()
    out = np.empty(25, np.int64)
    prime = np.array([7, 3, 11])
    n = generate(g.weights.cell, prime, *g.weights.arrays, h, c, rng.random(25), 1.0, 0, False, -1, out)
    assert n == 25
    ids = np.concatenate((prime, out[:-1])).reshape(-1, 1)    # what the loop read: the prime, its draws but the last
    state = (h0[:, None, :].copy(), c0[:, None, :].copy()) if cell == "lstm" else h0[:, None, :].copy()
    _, state, _ = model.logits(ids, state)
    if cell == "lstm":
        np.testing.assert_allclose(h, state[0][:, 0], rtol=0, atol=tol)
        np.testing.assert_allclose(c, state[1][:, 0], rtol=0, atol=tol)
    else:
        np.testing.assert_allclose(h, state[:, 0], rtol=0, atol=tol)


def test_a_cuda_or_bidirectional_model_keeps_the_per_character_path():
    class NotOnTheCPU:
        device = "cuda"
    assert _CompiledGeneration.of(NotOnTheCPU()) is None
    assert _CompiledGeneration.of(model_for("lstm")) is not None


def test_bad_arguments_are_one_line_errors():
    g = _CompiledGeneration.of(model_for("gru")).weights
    h, c, out = np.zeros((2, 12)), np.zeros((2, 12)), np.empty(5, np.int64)
    with pytest.raises(ValueError, match=r"generate: h must be \(L, H\) = \(2, 12\)"):
        generate(g.cell, np.array([1]), *g.arrays, np.zeros((1, 12)), c, np.zeros(5), 1.0, 0, False, -1, out)
    with pytest.raises(ValueError, match=r"generate: prime\[1\] = 99 is outside \[0, \d+\)"):
        generate(g.cell, np.array([1, 99]), *g.arrays, h, c, np.zeros(5), 1.0, 0, False, -1, out)
    with pytest.raises(ValueError, match=r"generate: prime must be \(P,\) = \(1,\)"):
        generate(g.cell, np.array([], np.int64), *g.arrays, h, c, np.zeros(5), 1.0, 0, False, -1, out)
    with pytest.raises(ValueError, match=r"generate: uniforms must be \(N,\) = \(5,\)"):
        generate(g.cell, np.array([1]), *g.arrays, h, c, np.zeros(4), 1.0, 0, False, -1, out)


def test_the_top_k_cut_is_the_kth_largest_value():
    """``kth_largest`` against ``np.sort``: ties (which all stay in the top k) and -inf included."""
    from rnnjit.kernels.generate import kth_largest
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = rng.integers(-3, 4, int(rng.integers(1, 12))).astype(float)
        if rng.random() < 0.3:
            s[rng.integers(0, s.size)] = -np.inf
        k = int(rng.integers(1, s.size + 1))
        assert kth_largest(s, k) == np.sort(s)[s.size - k]
