"""Synthetic tasks, generated offline from a seeded ``numpy.random.Generator``: nothing to download.

    adding    many-to-one regression       x (T, B, 2), y (B,)        baseline MSE 1/6
    copy      many-to-many with a delay    x, y (T+20, B) symbols     baseline 10 ln 8 / (T+20) nats
    captions  one-to-many                  images (B, 16, 16, 3) -> "red square top left"
    dates     encoder-decoder              "25 November 2026" -> "2026-11-25"

Each generator takes the Generator it draws from, so a seed fixes the data, and training and
validation draw from separate streams (the tasks in ``rnnjit.train.synthetic_tasks`` do that).

**Adding** (Hochreiter & Schmidhuber 1997, in the form of Arjovsky et al. 2016): every step has a
value uniform in [0, 1] and a marker; exactly one marker is 1 in each half of the sequence, and
the target is the sum of the two marked values. Always answering 1, the mean of the target, costs
E[(u1 + u2 - 1)^2] = Var(u1) + Var(u2) = 1/12 + 1/12 = 1/6: the baseline to beat.

**Copy** (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): 10 symbols from an alphabet of 8,
then T-1 blanks, a delimiter, 10 more blanks; the target is blank for T+10 steps, then the 10
symbols. A memoryless network can learn to write blanks, then can only guess 1 of 8 for each of
the 10 symbols: 10 ln 8 nats over T+20 steps.

**Captions**: one coloured shape (4 colours x 4 shapes) in one of 9 places on a dark, noisy
16x16 image, with a little jitter, captioned "colour shape place" ("blue cross top left",
"red circle centre"): 144 captions of 3 or 4 words. A model blind to the image can at best know
the grammar: ln 144 nats spread over the 40/9 words (with <eos>) of a mean caption.

**Dates**: every day of 1950-2049, written in one of several human formats; the target is ISO
8601. A tenth of the days (chosen by a hash of the date) are held out: training never sees them.
Blind to the input, a model can at best spend ln(number of days) nats over the 11 target symbols.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")


class Tokens:
    """A fixed list of symbols (words or characters) after <pad>, <bos>, <eos>; id = position."""

    def __init__(self, symbols):
        self.symbols = list(SPECIALS) + list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("symbols must be distinct")

    @property
    def size(self) -> int:
        return len(self.symbols)

    def encode(self, seq) -> list[int]:
        unknown = [s for s in seq if s not in self.index]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of the {self.size - len(SPECIALS)} symbols this task knows")
        return [self.index[s] for s in seq]

    def decode(self, ids) -> list[str]:
        """Ids -> symbols; an id outside [0, size) is a ValueError (a negative one would count
        from the end of the list)."""
        out = []
        for i in ids:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.size:
                raise ValueError(f"id {i!r} is not a symbol's id: ids are integers in [0, {self.size})")
            out.append(self.symbols[i])
        return out


def pad_targets(seqs: list[list[int]]) -> np.ndarray:
    """Id lists -> (T, B): each followed by <eos>, then <pad> up to the longest."""
    T = max(len(s) for s in seqs) + 1
    y = np.full((T, len(seqs)), PAD, np.int64)
    for b, s in enumerate(seqs):
        y[:len(s), b] = s
        y[len(s), b] = EOS
    return y


def pad_left(seqs: list[list[int]]) -> np.ndarray:
    """Id lists -> (S, B), padded with <pad> on the left so every sequence ends at the last step."""
    S = max(len(s) for s in seqs)
    x = np.full((S, len(seqs)), PAD, np.int64)
    for b, s in enumerate(seqs):
        x[S - len(s):, b] = s
    return x


# ---- adding ---------------------------------------------------------------------------------------

ADDING_BASELINE = 1.0 / 6.0


def adding(rng: np.random.Generator, batch: int, length: int, dtype=np.float32):
    """x (T, B, 2): [value, marker] at every step; y (B,): the sum of the two marked values."""
    if length < 2:
        raise ValueError(f"the adding problem needs length >= 2, got {length}")
    T, B = length, batch
    values = rng.random((T, B))
    cols = np.arange(B)
    first = rng.integers(0, T // 2, B)           # one marker in the first half ...
    second = rng.integers(T // 2, T, B)          # ... and one in the second
    markers = np.zeros((T, B))
    markers[first, cols] = 1
    markers[second, cols] = 1
    x = np.stack([values, markers], axis=2).astype(dtype)
    y = (values[first, cols] + values[second, cols]).astype(dtype)
    return x, y


# ---- copy -----------------------------------------------------------------------------------------

COPY_BLANK, COPY_DELIMITER, COPY_SYMBOLS, COPY_VOCAB, COPY_N = 0, 9, 8, 10, 10


def copy_baseline(length: int) -> float:
    """Cross-entropy (nats per step) of the best memoryless answer: blanks, then a uniform guess."""
    return COPY_N * math.log(COPY_SYMBOLS) / (length + 2 * COPY_N)


def copy(rng: np.random.Generator, batch: int, length: int):
    """x, y (T+20, B) int64: symbols 1..8, blank 0, delimiter 9. y ends with x's first 10 symbols."""
    if length < 1:
        raise ValueError(f"the copy task needs length >= 1, got {length}")
    T, N = length, COPY_N
    seq = rng.integers(1, COPY_SYMBOLS + 1, (N, batch))
    x = np.full((T + 2 * N, batch), COPY_BLANK, np.int64)
    y = np.full_like(x, COPY_BLANK)
    x[:N] = seq                        # the symbols, then T-1 blanks
    x[T + N - 1] = COPY_DELIMITER      # "now write them"
    y[T + N:] = seq                    # during the last 10 steps
    return x, y


# ---- captions -------------------------------------------------------------------------------------

IMAGE_SIZE = 16
COLOURS = {"red": (1.0, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.2, 0.35, 1.0),
           "yellow": (1.0, 0.9, 0.1)}
SHAPES = ("square", "circle", "triangle", "cross")
ROWS, COLS = ("top", "", "bottom"), ("left", "", "right")
_CENTRES = (3, 8, 12)          # pixel centre of each third (5x5 shapes, jitter of 1 stay inside)


def _shape_masks():
    i, j = np.mgrid[-2:3, -2:3]
    return {
        "square": (np.maximum(abs(i), abs(j)) == 2),                 # an outline
        "circle": (i * i + j * j <= 5),                              # a filled disc
        "triangle": (j >= -(i + 2) / 2) & (j <= (i + 2) / 2),        # apex up, base down
        "cross": (i == 0) | (j == 0),
    }


SHAPE_MASKS = _shape_masks()
CAPTION_WORDS = Tokens(list(COLOURS) + list(SHAPES) + ["top", "bottom", "left", "right", "centre"])
N_CAPTIONS = len(COLOURS) * len(SHAPES) * len(ROWS) * len(COLS)
CAPTIONS_BASELINE = math.log(N_CAPTIONS) / (40 / 9)   # ln 144 over the mean 4.44 words (with <eos>)


def place_words(row: int, col: int) -> str:
    return " ".join(w for w in (ROWS[row], COLS[col]) if w) or "centre"


def caption_of(colour: str, shape: str, row: int, col: int) -> str:
    return f"{colour} {shape} {place_words(row, col)}"


def render(colour: str, shape: str, row: int, col: int, rng: np.random.Generator) -> np.ndarray:
    """One (16, 16, 3) float32 image: dark noisy background, the shape jittered by up to 1 pixel."""
    img = np.clip(rng.normal(0.1, 0.05, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 1)
    r = _CENTRES[row] + rng.integers(-1, 2)
    c = _CENTRES[col] + rng.integers(-1, 2)
    mask = SHAPE_MASKS[shape]
    patch = img[r - 2:r + 3, c - 2:c + 3]
    patch[mask] = np.asarray(COLOURS[colour]) * rng.uniform(0.75, 1.0)
    return img.astype(np.float32)


def captions(rng: np.random.Generator, batch: int):
    """-> images (B, 16, 16, 3) float32, captions (B strings)."""
    colours, images, texts = list(COLOURS), [], []
    for _ in range(batch):
        colour, shape = colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))]
        row, col = int(rng.integers(3)), int(rng.integers(3))
        images.append(render(colour, shape, row, col, rng))
        texts.append(caption_of(colour, shape, row, col))
    return np.stack(images), texts


# ---- dates ----------------------------------------------------------------------------------------

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
N_DAYS = (LAST_DAY - FIRST_DAY).days + 1
ISO_LENGTH = 10


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


DATE_FORMATS = (
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",                    # 25 November 2026
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",                # 25 Nov 2026
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",                   # November 25, 2026
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",               # Nov 25, 2026
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",                        # 25.11.2026
    lambda d: f"{d.month}/{d.day}/{d.year}",                                # 11/25/2026 (US)
    lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",  # Wednesday, 25 ...
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",   # the 25th of November 2026
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3].upper()} {d.year}",        # 25 NOV 2026
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",                        # 2026/11/25
)
DATE_CHARS = Tokens(sorted(set("".join(MONTHS) + "".join(MONTHS).upper() + "".join(WEEKDAYS)
                               + "the of stndrdth 0123456789,./")))
ISO_CHARS = Tokens("0123456789-")
DATES_BASELINE = math.log(N_DAYS) / (ISO_LENGTH + 1)


def held_out(day: dt.date) -> bool:
    """One day in ten, by a hash of the date: the validation split (never trained on)."""
    return (day.toordinal() * 2654435761) % 1000 < 100


def dates(rng: np.random.Generator, batch: int, split: str = "train") -> list[tuple[str, str]]:
    """(human-written date, ISO 8601) pairs, days drawn from the split ("train" or "val")."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    out = []
    while len(out) < batch:
        day = FIRST_DAY + dt.timedelta(days=int(rng.integers(N_DAYS)))
        if held_out(day) != (split == "val"):
            continue
        fmt = DATE_FORMATS[rng.integers(len(DATE_FORMATS))]
        out.append((fmt(day), day.isoformat()))
    return out
