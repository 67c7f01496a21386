"""Make a language model write: one character at a time, each drawn from the softmax of its scores.

    p(c) ∝ exp(z_c / temperature)      temperature < 1 sharpens, > 1 flattens
    top-k keeps the k likeliest characters; argmax always takes the likeliest one.

With a model on the GPU (``device="cuda"``) the model and its state stay there; the scores of
the last step, one row of V numbers, come back to the host for each character drawn.

On the CPU the prime and the characters after it go through one compiled loop
(``kernels/generate.py``: the layers' steps, the decoder and the draw), a chunk of characters
per call, growing from 16 to 1024. From Python, a model call a character, each one cost 30-50 us
of the layers' Python for 1-5 us of arithmetic at H = 64-128, and rnnjit sampled slower than a
plain NumPy loop (``rnnjit bench``: x0.46-1.04 of its speed); the loop samples 10-13x faster
than that NumPy loop there, and 1.4-3x at H = 512, where both wait for W_hh to come from L3. It
takes its uniform numbers from ``rng`` a chunk at a time (``rng.random(n)``, the same stream as
one ``rng.random()`` a character), so a ``stop`` that ends a chunk early leaves ``rng`` a few
draws further on than one draw a character would have. The characters are those of the
per-character path (``compiled=False``), which the tests hold it to; its sums differ in
rounding only. It packs the weights when the stream starts: a model trained while a stream is
open goes on writing with the weights it had then.

The per-character path (the GPU's) runs each call of the model inside ``rnnjit.no_grad()``:
nothing is kept for a backward pass that sampling never makes (the same outputs, bit for bit).
Each call, and not the whole generator: a generator that yields from inside ``no_grad`` would
leave it on in its caller's code between characters (a training loop that samples as it goes
would find its gradients switched off).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..data.vocab import Vocab
from ..grad_mode import no_grad


def _last_scores(z) -> np.ndarray:
    """The last row of the logits as float64 NumPy (copied from the GPU for a CUDA model)."""
    row = z[z.shape[0] - 1]
    return np.asarray(row.copy_to_host() if hasattr(row, "copy_to_host") else row, np.float64)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_options(vocab: Vocab, length, prime, temperature, top_k, argmax, stop, seed) -> None:
    """One-line ValueErrors for the options of ``sample`` (the CLI's ``rnnjit sample`` checks
    its flags alike). The prime's characters are checked by ``vocab.encode``."""
    if not _is_int(length) or length < 0:
        raise ValueError(f"length must be an integer >= 0, got {length!r}")
    if not isinstance(prime, str):
        raise ValueError(f"prime must be a string, got {type(prime).__name__}")
    if not argmax and (isinstance(temperature, (bool, np.bool_)) or not isinstance(temperature, (int, float, np.number))
                       or not temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None for every character), got {top_k!r}")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0 (or None), got {seed!r}")
    if stop is not None:
        if not isinstance(stop, str) or len(stop) != 1:
            raise ValueError(f"stop takes one character, got {stop!r}")
        if stop not in vocab.chars:
            raise ValueError(f"stop={stop!r} is not one of the model's characters (it would never be written): "
                             f"choose one the training text has")


def sample(model, vocab: Vocab, length: int = 200, prime: str = "", temperature: float = 1.0,
           top_k: int | None = None, argmax: bool = False, stop: str | None = None,
           seed: int | None = None, rng: np.random.Generator | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (the prime itself is not returned).

    Stops early after writing the ``stop`` character, if given. ``rng`` (or ``seed``) makes it
    repeatable. Raises ValueError for a prime character outside the vocabulary, or for a
    vocabulary of another size than the model's (its ids would name the wrong characters).
    The prime's ids reach the kernels through ``model.logits``, which checks their range.
    """
    return "".join(sample_stream(model, vocab, length, prime, temperature, top_k, argmax, stop, seed, rng))


def sample_stream(model, vocab: Vocab, length: int = 200, prime: str = "", temperature: float = 1.0,
                  top_k: int | None = None, argmax: bool = False, stop: str | None = None,
                  seed: int | None = None, rng: np.random.Generator | None = None,
                  compiled: bool = True) -> Iterator[str]:
    """``sample``, one character at a time as it is drawn (``rnnjit sample`` prints them so).
    The options are checked when the first character is asked for (a generator runs no code
    before), each with a one-line ValueError that names it. ``compiled=False`` takes the
    per-character path (a model call a character) on the CPU too: the reference the compiled
    loop is tested against."""
    if vocab.size != model.vocab_size:
        raise ValueError(f"the vocabulary has {vocab.size} characters but the model has vocab_size="
                         f"{model.vocab_size}: sample with the vocabulary the model was trained on")
    _check_options(vocab, length, prime, temperature, top_k, argmax, stop, seed)
    rng = rng if rng is not None else np.random.default_rng(seed)
    was_training = model.rnn.training
    model.eval()
    try:
        state = model.initial_state(1)
        prime_ids = vocab.encode(prime) if prime else np.array([rng.integers(vocab.size)], np.int32)
        fast = _CompiledGeneration.of(model) if compiled else None
        chars = (fast.stream(vocab, prime_ids, state, length, temperature, top_k, argmax, stop, rng) if fast
                 else _per_character(model, vocab, prime_ids, state, length, temperature, top_k, argmax, stop, rng))
        yield from chars
    finally:
        model.train(was_training)


def _per_character(model, vocab, prime_ids, state, length, temperature, top_k, argmax, stop, rng):
    """The characters after the prime, one model call each (the GPU's path)."""
    with no_grad():
        z, state, _ = model.logits(prime_ids.reshape(-1, 1), state)  # read the whole prime at once
    scores = _last_scores(z)
    for _ in range(length):
        if argmax:
            c = int(np.argmax(scores))
        else:
            with np.errstate(over="ignore"):    # a tiny temperature: -inf but at the max (argmax's limit)
                s = (scores - scores.max()) / temperature
            if top_k is not None and top_k < s.size:
                cut = np.partition(s, -top_k)[-top_k]
                s = np.where(s >= cut, s, -np.inf)
            p = np.exp(s)
            p /= p.sum()
            c = int(rng.choice(p.size, p=p))
        ch = vocab.chars[c]
        yield ch
        if stop is not None and ch == stop:
            break
        with no_grad():
            z, state, _ = model.logits(np.array([[c]], np.int32), state)
        scores = _last_scores(z)


class _CompiledGeneration:
    """A CPU language model's weights arranged for ``kernels.generate.generate``."""

    @classmethod
    def of(cls, model):
        """For a CharLM on the CPU with one direction; None for anything else (the per-character path)."""
        rnn = getattr(model, "rnn", None)
        if (getattr(model, "device", "cpu") != "cpu" or getattr(model, "input", None) not in ("onehot", "embedding")
                or rnn is None or rnn.num_directions != 1):
            return None
        return cls(model)

    def __init__(self, model):
        from ..kernels.generate import generation_weights
        self.model = model
        p = {name: array for name, array, _ in model.parameters()}    # the live arrays: no copies
        layers = range(model.rnn.num_layers)
        W_ih, W_hh = [p[f"rnn.weight_ih_l{k}"] for k in layers], [p[f"rnn.weight_hh_l{k}"] for k in layers]
        b_ih, b_hh = [p.get(f"rnn.bias_ih_l{k}") for k in layers], [p.get(f"rnn.bias_hh_l{k}") for k in layers]
        self.weights = generation_weights(model.rnn.cell.name, W_ih, W_hh, b_ih, b_hh, p["decoder.weight"],
                                          p["decoder.bias"], p.get("embedding.weight") if model.input == "embedding"
                                          else None, model.rnn.nonlinearity)

    def stream(self, vocab, prime_ids, state, length, temperature, top_k, argmax, stop, rng):
        """The characters after the prime, a chunk of compiled steps at a time. The loop reads the
        prime too, a character a step: no sequence kernel to compile for ``rnnjit sample``, and a
        prime is short."""
        from ..kernels.generate import generate
        h, c = state if isinstance(state, tuple) else (state, state)
        h = np.array(h[:, 0, :], self.model.dtype)          # (L, H) copies, updated in place
        c = np.array(c[:, 0, :], self.model.dtype)
        stop_id = vocab.chars.index(stop) if stop is not None else -1
        read, left, chunk = np.asarray(prime_ids, np.int64), length, 16   # the first call reads the whole prime
        while left > 0:
            n = min(chunk, left)
            u = np.zeros(n) if argmax else rng.random(n)
            out = np.empty(n, np.int64)
            m = generate(self.weights.cell, read, *self.weights.arrays, h, c, u, 1.0 if argmax else float(temperature),
                         top_k or 0, bool(argmax), stop_id, out)
            for i in range(m):
                yield vocab.chars[out[i]]
            if m < n:      # the stop character
                return
            read, left, chunk = out[m - 1:m], left - m, min(2 * chunk, 1024)
