"""The language-model task: a corpus, a CharLM, truncated BPTT over B streams.

A *task* is what the engine trains. It owns the model and its data and answers five calls:
``train_step()`` (loss, gradients left in the model), ``evaluate()``, ``sample()``, and
``state()`` / ``load_state()`` (everything besides weights that resume needs). Other tasks
(``rnnjit.train.tasks``) follow the same shape.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import CharStream, Vocab, load_corpus, split_train_val
from ..models import CharLM, sample
from .config import ConfigError, TrainConfig


class CharLMTask:
    name = "charlm"

    def __init__(self, config: TrainConfig, vocab: Vocab | None = None):
        self.config = c = config
        text = load_corpus(c.corpus)
        self.vocab = vocab or Vocab.from_text(text)
        try:
            ids = self.vocab.encode(text)
        except ValueError as e:
            raise ConfigError(f"the corpus does not fit this model's vocabulary: {e}") from None
        train_ids, val_ids = split_train_val(ids, 0.1)
        self.train_stream = CharStream(train_ids, c.batch, c.seq_len, label="training split")
        val_batch = max(1, min(c.batch, (len(val_ids) - 1) // (c.seq_len + 1)))
        self.val_stream = CharStream(val_ids, val_batch, c.seq_len, label="validation split")
        cell, nl = (("rnn", "relu") if c.cell == "rnn-relu" else (c.cell, "tanh"))
        self.model = CharLM(self.vocab.size, c.hidden, c.layers, cell, c.dropout, c.embedding or None,
                            dtype=c.np_dtype, seed=c.seed, nonlinearity=nl, device=c.device,
                            cuda_graphs=c.cuda_graphs)
        self.hidden = self.model.initial_state(c.batch)
        self.tokens_per_step = c.batch * c.seq_len
        self.epoch = 0

    def train_step(self) -> float:
        x, y, reset = self.train_stream.next_batch()
        if reset:  # a new epoch: the streams start over, so does the memory
            self.hidden = self.model.initial_state(self.config.batch)
        self.model.train()
        loss, new_state = self.model.forward_backward(x, y, self.hidden)
        self.hidden = new_state  # carried to the next chunk (truncated BPTT)
        self.epoch = self.train_stream.epoch
        return loss

    def evaluate(self) -> tuple[float, dict]:
        self.model.eval()
        state = self.model.initial_state(self.val_stream.batch)
        total, n = 0.0, 0
        for i, (x, y) in enumerate(self.val_stream.iter_epoch()):
            if self.config.eval_batches and i >= self.config.eval_batches:
                break
            loss, state = self.model.loss(x, y, state)
            total, n = total + loss, n + 1
        self.model.train()
        val = total / max(n, 1)
        return val, {"val_bpc": val / math.log(2)}

    def sample(self, temperature: float, rng: np.random.Generator, length: int | None = None, prime: str = "") -> str:
        return sample(self.model, self.vocab, length or self.config.sample_length, prime=prime,
                      temperature=temperature, rng=rng)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        h = self.hidden
        arrays = {"vocab": self.vocab.to_array()}
        if isinstance(h, tuple):
            arrays.update({"hidden/h": h[0], "hidden/c": h[1]})
        else:
            arrays["hidden/h"] = h
        return arrays, {"data": self.train_stream.state(),
                        "dropout_rng": self.model.rnn.dropout_rng.bit_generator.state}

    def load_state(self, arrays: dict, meta: dict) -> None:
        self.train_stream.load_state(meta["data"])
        self.epoch = self.train_stream.epoch
        self.model.rnn.dropout_rng.bit_generator.state = meta["dropout_rng"]
        fresh = self.model.initial_state(self.config.batch)
        fresh = fresh if isinstance(fresh, tuple) else (fresh,)
        saved = tuple(arrays[k] for k in ("hidden/h", "hidden/c")[:len(fresh)])
        for f, a in zip(fresh, saved):
            if a.shape != f.shape or a.dtype != f.dtype:
                raise ValueError(f"saved hidden state has shape {a.shape} and dtype {a.dtype}, "
                                 f"expected {f.shape} and {f.dtype}")
        self.hidden = tuple(a.copy() for a in saved) if len(saved) == 2 else saved[0].copy()
