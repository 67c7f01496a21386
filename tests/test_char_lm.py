"""The character-level language model: gradients, dense kernels, sampling."""

import numpy as np
import pytest

from rnnjit.data import Vocab
from rnnjit.kernels.dense import cross_entropy, softmax_cross_entropy
from rnnjit.models import CharLM, sample

TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def test_softmax_cross_entropy_matches_formula():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7)
    loss, dz = softmax_cross_entropy(z, y)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(7), y]).mean(), rel=1e-12)
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(dz, (p - onehot) / 7, atol=1e-15)
    assert cross_entropy(z, y) == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("input_kind", ["embedding", "onehot"])
def test_char_lm_gradients_by_finite_differences(cell, input_kind):
    vocab = Vocab.from_text(TEXT)
    E = 4 if input_kind == "embedding" else None      # one-hot vectors are vocab_size wide
    model = CharLM(vocab.size, 6, 2, cell, input=input_kind, embedding_size=E, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    x = rng.integers(0, vocab.size, (5, 3)).astype(np.int32)
    y = rng.integers(0, vocab.size, (5, 3)).astype(np.int32)
    state = model.initial_state(3)
    model.forward_backward(x, y, state)
    eps = 1e-6
    for name, p, g in model.parameters():
        flat, gflat = p.reshape(-1), g.reshape(-1).copy()
        # rows of the embedding that the batch uses, otherwise a few random entries
        idx = rng.choice(flat.size, size=min(6, flat.size), replace=False)
        if name == "embedding.weight":
            idx = np.array([x[0, 0] * p.shape[1], x[1, 2] * p.shape[1] + 1])
        num = []
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            up = model.loss(x, y, state)[0]
            flat[i] = old - eps
            down = model.loss(x, y, state)[0]
            flat[i] = old
            num.append((up - down) / (2 * eps))
        err = np.abs(gflat[idx] - num).max() / max(np.abs(gflat).max(), 1e-8)  # relative to the scale
        assert err < 1e-6, f"{name}: {err:.2e}"


def test_loss_starts_near_log_vocab_and_falls():
    vocab = Vocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    model = CharLM(vocab.size, 32, 1, "lstm", seed=0)
    x = ids[:160].reshape(16, 10).astype(np.int32)
    y = ids[1:161].reshape(16, 10).astype(np.int32)
    first = None
    from rnnjit.train.optim import Adam
    opt = Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss, _ = model.forward_backward(x, y, model.initial_state(10))
        first = first or loss
        opt.step()
    assert abs(first - np.log(vocab.size)) < 0.5
    assert loss < 0.5 * first


def test_sampling_options():
    vocab = Vocab.from_text(TEXT)
    model = CharLM(vocab.size, 16, 1, "gru", seed=0)
    a = sample(model, vocab, 30, prime="the ", temperature=0.7, seed=3)
    b = sample(model, vocab, 30, prime="the ", temperature=0.7, seed=3)
    assert a == b and len(a) == 30 and set(a) <= set(vocab.chars)
    assert sample(model, vocab, 30, prime="the ", seed=4) != a
    g1 = sample(model, vocab, 20, prime="qu", argmax=True, seed=1)
    g2 = sample(model, vocab, 20, prime="qu", argmax=True, seed=2)
    assert g1 == g2  # argmax ignores the seed
    top1 = sample(model, vocab, 20, prime="qu", top_k=1, seed=5)
    assert top1 == g1  # top-1 is argmax
    stopped = sample(model, vocab, 500, prime="the", stop=" ", temperature=2.0, seed=0)
    assert stopped.endswith(" ") and stopped.count(" ") == 1 and len(stopped) < 500  # it stopped at the space
    with pytest.raises(ValueError, match="'Z'"):
        sample(model, vocab, 5, prime="Zebra")
    with pytest.raises(ValueError, match="temperature"):
        sample(model, vocab, 5, temperature=0)


def test_a_sample_streams_one_character_at_a_time():
    """``sample_stream`` draws lazily (what ``rnnjit sample`` prints as it goes) the characters
    ``sample`` returns at once; the model is back in training mode however the stream ends."""
    from rnnjit.models import sample_stream
    vocab = Vocab.from_text(TEXT)
    model = CharLM(vocab.size, 16, 1, "lstm", dropout=0.0, seed=0)
    stream = sample_stream(model, vocab, 40, prime="the ", temperature=0.8, seed=7)
    first = [next(stream) for _ in range(5)]
    assert not model.rnn.training                       # mid-stream: evaluating
    stream.close()
    assert model.rnn.training
    whole = sample(model, vocab, 40, prime="the ", temperature=0.8, seed=7)
    assert "".join(first) == whole[:5] and "".join(sample_stream(model, vocab, 40, prime="the ",
                                                                 temperature=0.8, seed=7)) == whole


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sampling_keeps_nothing_and_leaves_gradients_on_between_characters(cell):
    """Each model call of the per-character sampler (the GPU's path; ``compiled=False`` here)
    runs inside ``rnnjit.no_grad()``: the layers keep nothing, the characters are those of the
    training forward (same logits to the bit), and a caller that trains between two characters
    of a stream still gets its gradients."""
    import rnnjit
    from rnnjit.models import sample_stream
    from rnnjit.models.sampling import _last_scores
    from rnnjit.nn.recurrent import NOTHING_KEPT
    vocab = Vocab.from_text(TEXT)
    model = CharLM(vocab.size, 16, 2, cell, seed=0)
    stream = sample_stream(model, vocab, 30, prime="the ", temperature=0.8, seed=7, compiled=False)
    drawn = [next(stream) for _ in range(3)]
    assert model.rnn._cache is NOTHING_KEPT and rnnjit.is_grad_enabled()
    x = vocab.encode("the quick ").reshape(-1, 1)
    loss, _ = model.forward_backward(x[:-1], x[1:])     # between two characters: a training step works
    assert np.isfinite(loss)
    drawn += list(stream)

    # the same draws from the training forward's logits (what the sampler used before no_grad)
    rng = np.random.default_rng(7)
    z, state, _ = model.logits(vocab.encode("the ").reshape(-1, 1), model.initial_state(1))
    expected = []
    for _ in range(30):
        scores = _last_scores(z)
        p = np.exp((scores - scores.max()) / 0.8)
        c = int(rng.choice(p.size, p=p / p.sum()))
        expected.append(vocab.chars[c])
        z, state, _ = model.logits(np.array([[c]], np.int32), state)
    assert "".join(drawn) == "".join(expected)
