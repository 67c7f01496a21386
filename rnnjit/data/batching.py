"""Truncated backpropagation through time (TBPTT) batching, time-major, char-rnn style.

The encoded text (N ids) is cut into B contiguous *streams*, one per batch column::

    L = (N - 1) // B                        characters per stream
    stream b inputs   ids[b*L     : (b+1)*L]
    stream b targets  ids[b*L + 1 : (b+1)*L + 1]     (the next character of each input)

Each stream is read in chunks of T characters. Chunk k of every stream forms one batch
``x`` of shape (T, B) (time-major: ``x[t, b]`` is character ``k*T + t`` of stream b), and
``y[t, b]`` is the character that follows ``x[t, b]`` in the text. Because chunk k+1 of column b
continues exactly where chunk k stopped, the model carries its hidden state from one batch to
the next (gradients are truncated at chunk borders, the state is not). At the start of each
epoch the streams start again from their beginnings, so the hidden state must be zeroed:
:meth:`CharStream.next_batch` says so with its ``reset`` flag.

The last ``L % T`` characters of each stream (and the ``(N - 1) % B`` at the end of the text)
are never read, so every batch has the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def split_train_val(ids: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split encoded text into (train, validation): validation is the *last* ``val_fraction``.

    A contiguous tail (rather than random characters) keeps both parts readable text and
    keeps validation honest: the model has never seen those passages. A text too short for a
    single validation id is an error (``val_fraction=0`` asks for no validation split).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = np.asarray(ids)
    n_val = int(len(ids) * val_fraction)
    if val_fraction > 0 and n_val == 0:
        raise ValueError(f"the text has {len(ids)} characters, too few to hold out the last {val_fraction * 100:g}% for "
                         f"validation (that needs at least {math.ceil(1 / val_fraction)}): use a longer text, "
                         "or val_fraction=0 for no validation split")
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class CharStream:
    """Time-major TBPTT batches over B contiguous streams of an encoded text.

    ``position`` is the index of the next chunk in the epoch (0 .. ``chunks_per_epoch`` - 1)
    and ``epoch`` counts completed passes; both are saved by :meth:`state`.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int, label: str = "corpus") -> None:
        """``label`` names the text in the too-short error (e.g. ``"validation split"``)."""
        self.batch = _positive_int(batch, "batch")
        self.seq_len = _positive_int(seq_len, "seq_len")
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError("ids must be a 1-D array of integer character ids")
        needed = self.batch * self.seq_len + 1
        if len(ids) < needed:
            raise ValueError(
                f"{label} has {len(ids)} characters; batch {self.batch} x seq-len {self.seq_len} "
                f"needs at least {needed}: use a smaller --batch or --seq-len"
            )
        self.length = len(ids)
        self.stream_len = (len(ids) - 1) // self.batch
        self.chunks_per_epoch = self.stream_len // self.seq_len
        # Column b of these (L, B) arrays is stream b, so rows k*T .. (k+1)*T are batch k:
        # a C-contiguous, read-only view, with no copying per batch.
        used = self.batch * self.stream_len
        self._inputs = self._columns(ids[:used])
        self._targets = self._columns(ids[1 : used + 1])
        self.position = 0
        self.epoch = 0

    def _columns(self, flat: np.ndarray) -> np.ndarray:
        columns = np.ascontiguousarray(flat.astype(np.int32).reshape(self.batch, self.stream_len).T)
        columns.flags.writeable = False
        return columns

    def _chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self._inputs[rows], self._targets[rows]

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The next (x, y, reset): x and y are (T, B) int32; ``reset`` is True for the first
        chunk of an epoch, when the caller must zero the hidden state before using x."""
        x, y = self._chunk(self.position)
        reset = self.position == 0
        self.position += 1
        if self.position == self.chunks_per_epoch:
            self.position = 0
            self.epoch += 1
        return x, y, reset

    def iter_epoch(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (x, y) of one pass from chunk 0 (for validation); training position untouched.

        Start with a zero hidden state and carry it across the chunks, as in training.
        """
        for k in range(self.chunks_per_epoch):
            yield self._chunk(k)

    def state(self) -> dict[str, int]:
        """Where the stream stands, plus its shape, as plain ints (fits in a checkpoint)."""
        return {
            "position": self.position,
            "epoch": self.epoch,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "length": self.length,
        }

    def load_state(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state`; the text length, batch and seq_len must be the same."""
        for key in ("batch", "seq_len", "length"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"saved stream has {key} {int(state[key])}, this one has {getattr(self, key)}: "
                    "resume with the same corpus, --batch and --seq-len"
                )
        position, epoch = int(state["position"]), int(state["epoch"])
        if not 0 <= position < self.chunks_per_epoch or epoch < 0:
            raise ValueError(f"saved stream position {position} / epoch {epoch} is out of range")
        self.position, self.epoch = position, epoch
