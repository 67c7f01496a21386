"""Training and validation loss over steps: a braille line plot (2x4 dots per character).

Training loss is smoothed (an exponential moving average over steps, as `rnnjit train` prints);
validation loss is measured every ``--eval-every`` steps on held-out text. Training loss that keeps
falling while validation loss turns up is overfitting.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from .base import StripWidget

TRAIN = Style(color="#4fc3f7")
VAL = Style(color="#ffb74d", bold=True)
LABEL = Style(dim=True)
GUTTER = 6
# braille dot bits by (x, y) within a cell
_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


class LossPlot(StripWidget):
    DEFAULT_CSS = """
    LossPlot { height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._train: tuple[list, list] = ([], [])
        self._val: tuple[list, list] = ([], [])

    def set_data(self, train: tuple[list, list], val: tuple[list, list]) -> None:
        """train, val: (steps, values)."""
        self._train, self._val = train, val
        self.invalidate()

    def build(self, width: int, height: int) -> list[Strip]:
        blank = Strip([Segment(" " * width)], width)
        series = [s for s in (self._train, self._val) if s[0]]
        plot_w = width - GUTTER
        if not series or plot_w < 2 or height < 1:
            msg = "waiting for the first step"[:width].ljust(width) if height else ""
            return [Strip([Segment(msg, LABEL)], width)] + [blank] * (height - 1)
        xs = np.concatenate([np.asarray(s[0], dtype=float) for s in series])
        ys = np.concatenate([np.asarray(s[1], dtype=float) for s in series])
        ys = ys[np.isfinite(ys)]
        if not ys.size:
            return [blank] * height
        x0, x1 = float(xs.min()), float(xs.max())
        if x1 <= x0:
            x1 = x0 + 1
        lo, hi = float(ys.min()), float(ys.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        PW, PH = 2 * plot_w, 4 * height
        # one pixel grid per layer: the training curve, the validation curve, the evaluations
        grids = [self._raster(self._train, x0, x1, lo, hi, PW, PH),
                 self._raster(self._val, x0, x1, lo, hi, PW, PH), np.zeros((PH, PW), bool)]
        vx, vy = (np.asarray(a, dtype=float) for a in self._val)
        ok = np.isfinite(vy)
        if ok.any():
            X = np.rint((vx[ok] - x0) / (x1 - x0) * (PW - 1)).astype(int)
            Y = np.rint((hi - vy[ok]) / (hi - lo) * (PH - 1)).astype(int)
            grids[2][Y.clip(0, PH - 1), X.clip(0, PW - 1)] = True
        train, val, mark = (self._cells(g, height, plot_w) for g in grids)
        bits = (train | val | mark).tolist()
        # a cell takes one colour: evaluations win, then the training curve, then the lines between evaluations
        use_val = ((mark > 0) | (train == 0)).tolist()
        lines = []
        for r in range(height):
            label = _fmt(hi) if r == 0 else _fmt(lo) if r == height - 1 else ""
            segs = [Segment(label.rjust(GUTTER - 1)[:GUTTER - 1] + " ", LABEL)]
            row_bits, row_val = bits[r], use_val[r]
            segs.extend(Segment(chr(0x2800 + b) if b else " ", VAL if v else TRAIN)
                        for b, v in zip(row_bits, row_val))
            lines.append(Strip(segs, width).simplify())
        return lines

    @staticmethod
    def _raster(series, x0, x1, lo, hi, PW, PH) -> np.ndarray:
        """A line through the points of ``series`` on a PH x PW pixel grid."""
        grid = np.zeros((PH, PW), bool)
        sx, sy = (np.asarray(a, dtype=float) for a in series)
        ok = np.isfinite(sy)
        sx, sy = sx[ok], sy[ok]
        if not sx.size:
            return grid
        px = (sx - x0) / (x1 - x0) * (PW - 1)
        py = (hi - sy) / (hi - lo) * (PH - 1)
        first, last = int(np.ceil(px[0] - 1e-9)), int(np.floor(px[-1] + 1e-9))
        if last < first:   # one point (or all within one pixel column)
            grid[int(np.clip(np.rint(py[-1]), 0, PH - 1)), int(np.clip(np.rint(px[-1]), 0, PW - 1))] = True
            return grid
        cols = np.arange(first, last + 1)
        ys = np.clip(np.rint(np.interp(cols, px, py)), 0, PH - 1).astype(int)
        # join each column to the previous one with a vertical run, so steep parts stay connected
        prev = np.concatenate([ys[:1], ys[:-1]])
        top, bottom = np.minimum(prev, ys), np.maximum(prev, ys)
        for c, a, b in zip(cols.tolist(), top.tolist(), bottom.tolist()):
            grid[a:b + 1, c] = True
        return grid

    @staticmethod
    def _cells(grid: np.ndarray, height: int, width: int) -> np.ndarray:
        """A (4*height, 2*width) pixel grid -> braille bits per cell, (height, width)."""
        g = grid.reshape(height, 4, width, 2)
        bits = np.zeros((height, width), dtype=np.int64)
        for dx in range(2):
            for dy in range(4):
                bits |= g[:, dy, :, dx] * _BITS[dx][dy]
        return bits
