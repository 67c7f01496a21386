"""Make a language model write: one character at a time, each drawn from the softmax of its scores.

    p(c) ∝ exp(z_c / temperature)      temperature < 1 sharpens, > 1 flattens
    top-k keeps the k likeliest characters; argmax always takes the likeliest one.

With a model on the GPU (``device="cuda"``) the model and its state stay there; the scores of
the last step, one row of V numbers, come back to the host for each character drawn.

Each call of the model runs inside ``rnnjit.no_grad()``: nothing is kept for a backward pass that
sampling never makes (the same outputs, bit for bit). Each call, and not the whole generator: a
generator that yields from inside ``no_grad`` would leave it on in its caller's code between
characters (a training loop that samples as it goes would find its gradients switched off).
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
                  seed: int | None = None, rng: np.random.Generator | None = None) -> Iterator[str]:
    """``sample``, one character at a time as it is drawn (``rnnjit sample`` prints them so).
    The options are checked when the first character is asked for (a generator runs no code
    before), each with a one-line ValueError that names it."""
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
    finally:
        model.train(was_training)
