"""A training run's configuration: plain values, one comment each (the CLI's options map onto them)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..machine import physical_memory


CELL_CHOICES = ("rnn", "rnn-relu", "lstm", "gru")  # rnn-relu: the Elman network with relu


LENGTH_TASKS = ("adding", "copy")   # the synthetic tasks whose sequences are --length long; others vary


class ConfigError(ValueError):
    """A bad option: the message is one line and says what to do."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# A field's annotation -> (what it must be, the test, the Python type it is stored as).
_TYPES = {
    "int": ("an integer", _is_int, int),
    "float": ("a number", lambda v: _is_int(v) or isinstance(v, (float, np.floating)), float),
    "str": ("a string", lambda v: isinstance(v, str), str),
    "bool": ("True or False", lambda v: isinstance(v, (bool, np.bool_)), bool),
}


@dataclass
class TrainConfig:
    task: str = "charlm"          # charlm (a corpus) or a synthetic task: adding, copy, captions, dates
    corpus: str = "shakespeare"   # corpus name (rnnjit corpora) or a path to a UTF-8 text file
    cell: str = "lstm"            # rnn (tanh), rnn-relu, lstm or gru
    hidden: int = 128             # hidden units per layer
    layers: int = 2               # stacked recurrent layers
    dropout: float = 0.0          # dropout between layers, in training only
    embedding: int = 0            # embedding size; 0 means the hidden size
    seq_len: int = 64             # T: characters per truncated-BPTT chunk
    batch: int = 32               # B: parallel streams
    steps: int = 2000             # optimizer steps in total
    optimizer: str = "adam"       # sgd, adagrad, rmsprop or adam
    lr: float = 2e-3              # learning rate
    momentum: float = 0.9         # for sgd
    lr_decay: float = 1.0         # multiply the learning rate by this ...
    lr_decay_every: int = 1000    # ... every this many steps
    clip: float = 5.0             # gradient clipping threshold (0 turns clipping off)
    clip_mode: str = "norm"       # norm (global L2 norm) or value (each entry)
    seed: int = 0                 # one seed for weights, data order, dropout and samples
    dtype: str = "float32"        # float32 or float64
    length: int = 50              # sequence length of a synthetic task
    eval_every: int = 200         # evaluate on the validation split every N steps (0: only at the end)
    eval_batches: int = 0         # validation batches per evaluation (0: the whole split)
    sample_every: int = 200       # write a sample every N steps (0: never)
    sample_length: int = 200      # characters per sample
    temperature: float = 0.8      # sampling temperature
    checkpoint_every: int = 500   # save a checkpoint every N steps (and always at the end)
    threads: int = 0              # BLAS/Numba threads (0: leave as is)
    device: str = "cpu"           # cpu, or cuda (model and optimizer stay on the GPU; needs rnnjit[cuda])
    cuda_graphs: bool = False     # cuda: replay each step's forward and backward as one CUDA graph

    def validate(self) -> "TrainConfig":
        """Checks every field (a one-line ConfigError naming the first bad one); NumPy numbers
        become Python ones, ints in float fields floats (config.json holds them)."""
        for f in fields(self):
            what, is_type, as_type = _TYPES[f.type]
            v = getattr(self, f.name)
            if f.name == "corpus" and isinstance(v, os.PathLike):
                v = os.fspath(v)            # a pathlib.Path to a text file
            if not is_type(v):
                raise ConfigError(f"{_option(f.name)} must be {what}, got {v!r}")
            try:
                setattr(self, f.name, as_type(v))
            except OverflowError:           # an int too big for a float
                raise ConfigError(f"{_option(f.name)} must be a finite number, got {v!r}") from None
        positive = ("hidden", "layers", "seq_len", "batch", "steps", "length", "sample_length", "lr_decay_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{_option(name)} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("eval_every", "eval_batches", "sample_every", "checkpoint_every", "embedding", "threads", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{_option(name)} must be >= 0, got {getattr(self, name)!r}")
        if self.cell not in CELL_CHOICES:
            raise ConfigError(f"unknown cell {self.cell!r}: choose rnn, rnn-relu, lstm or gru")
        from .optim import OPTIMIZERS
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
        for name in ("lr", "momentum", "clip", "temperature", "dropout", "lr_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{_option(name)} must be a finite number, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not self.momentum >= 0:
            raise ConfigError(f"--momentum must be >= 0, got {self.momentum}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.clip < 0:
            raise ConfigError(f"--clip must be >= 0 (0 turns clipping off), got {self.clip}")
        if self.clip_mode not in ("norm", "value"):
            raise ConfigError(f"--clip-mode must be norm or value, got {self.clip_mode!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.cuda_graphs and self.device != "cuda":
            raise ConfigError("--cuda-graphs needs --device cuda")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        from ..threads import MAX_THREADS
        if self.threads > MAX_THREADS:
            raise ConfigError(f"--threads must be at most {MAX_THREADS}, got {self.threads}")
        need, have = self.least_bytes(), physical_memory()
        if have and need > have:
            raise ConfigError(f"this configuration needs at least {need / 2**30:,.0f} GiB, more than this machine's "
                              f"{have / 2**30:,.0f} GiB: make --hidden, --layers, --batch, --seq-len or --length smaller")
        return self

    def least_bytes(self) -> int:
        """A lower bound on the memory a training step needs: the weights and their gradients
        (an RNN's 1 gate per layer; an LSTM has 4), and the hidden states BPTT keeps for every
        timestep of the batch (a synthetic task evaluates EVAL_SIZE examples at once). Only
        configurations that surely cannot fit are refused."""
        H, L = self.hidden, self.layers
        E = self.embedding or H
        T = self.seq_len if self.task == "charlm" else self.length
        B = self.batch if self.task == "charlm" else max(self.batch, self.eval_batches * self.batch or 512)
        weights = L * H * (E + H)
        return np.dtype(self.dtype).itemsize * (2 * weights + T * B * L * H)

    @property
    def np_dtype(self):
        return np.dtype(self.dtype).type

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
