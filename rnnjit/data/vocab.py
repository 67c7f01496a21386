"""Character vocabulary: the sorted distinct characters of a text, and the maps to and from ids.

A character-level model sees text as a sequence of integer ids, one per Unicode character
(a Python ``str`` item, so ``"é"`` is one character whatever its UTF-8 length). The id of a
character is its rank among the vocabulary's characters sorted by code point. Because the
characters are sorted, encoding is one vectorised binary search (:func:`numpy.searchsorted`)
over the code points instead of a Python loop over a dict.

The vocabulary is stored as an int32 array of code points (:meth:`Vocab.to_array`), so a
checkpoint ``.npz`` can hold it without pickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_MAX_CODE_POINT = 0x10FFFF
_SHOWN_UNKNOWN = 5  # how many unknown characters an error message names


def _code_points(text: str) -> np.ndarray:
    """Code points of ``text`` as uint32 (UTF-32 is exactly one 4-byte unit per character)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class Vocab:
    """The characters a model knows, in code-point order; ``chars[i]`` has id ``i``."""

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars:
            raise ValueError("a vocabulary needs at least one character")
        if any(len(c) != 1 for c in chars):
            raise ValueError("every vocabulary entry must be a single character")
        if any(a >= b for a, b in zip(chars, chars[1:])):
            raise ValueError("vocabulary characters must be distinct and sorted by code point")
        self.chars: list[str] = list(chars)
        self._codes = _code_points("".join(self.chars))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        return cls(sorted(set(text)))

    @classmethod
    def from_array(cls, codes: np.ndarray) -> Vocab:
        """Inverse of :meth:`to_array`."""
        codes = np.asarray(codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError("a vocabulary array must be a 1-D array of integer code points")
        if codes.size and (codes.min() < 0 or codes.max() > _MAX_CODE_POINT):
            raise ValueError("a vocabulary array holds code points from 0 to 0x10FFFF")
        return cls([chr(int(code)) for code in codes])

    def to_array(self) -> np.ndarray:
        """The code points of the characters, int32, in id order."""
        return self._codes.astype(np.int32)

    @property
    def size(self) -> int:
        """Number of characters (the model's input and output width)."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, chars={''.join(self.chars)!r})"

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of ``text`` (int32); ValueError names any unknown character."""
        codes = _code_points(text)
        ids = np.searchsorted(self._codes, codes)
        known = self._codes[np.minimum(ids, self.size - 1)] == codes
        if not known.all():
            raise ValueError(_unknown_message(np.unique(codes[~known])))
        return ids.astype(np.int32)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of a sequence of ids (integers; floats only when whole, as models take them)."""
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if ids.size and ids.dtype.kind not in "iu":
            if ids.dtype.kind != "f":
                raise ValueError(f"ids must be integers, got {ids.dtype.name} values such as {ids.ravel()[:1].tolist()[0]!r}")
            fractional = ids[ids != np.floor(ids)]        # NaN included
            if fractional.size:
                raise ValueError(f"ids must be whole numbers, got {fractional[0]}: round them or pass integer ids")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            bad = int(ids[(ids < 0) | (ids >= self.size)][0])
            raise ValueError(f"id {bad} is outside this vocabulary of {self.size} characters")
        return self._codes[ids.astype(np.int64)].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _unknown_message(codes: np.ndarray) -> str:
    shown = ", ".join(f"{chr(c)!r} (U+{c:04X})" for c in codes[:_SHOWN_UNKNOWN].tolist())
    more = f" and {codes.size - _SHOWN_UNKNOWN} more" if codes.size > _SHOWN_UNKNOWN else ""
    if codes.size == 1:
        return f"character {shown} is not in the vocabulary of this model"
    return f"characters {shown}{more} are not in the vocabulary of this model"
