"""The gradient per timestep over the whole run: a heatmap, timestep across, training step down.

Each column is a timestep of the truncated-BPTT chunk (aligned with the bars above it), each
pixel row a bucket of training steps, oldest at the top; two pixel rows share a character cell
("▀": the foreground paints the upper half, the background the lower). The colour is the
norm of dL/dh_t on a log scale (dark: small, bright: large), so a dark left edge that stays dark
is a gradient that never reaches the start of the chunk, and a band that brightens or fades
shows training changing how far the gradient travels.

Steps of varying length (the dates and captions tasks) share the columns of the longest: a
timestep that no step of a pixel row reached is NaN and stays blank, so short steps show as such.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from .base import StripWidget

from .bars import GUTTER
from .scale import LEVELS, cell_style, fmt_count, fractions, group_mean, resample_columns, value_range

LABEL = Style(dim=True)


def _cell(top: int, bottom: int, per: int) -> Segment:
    """``per`` character cells showing two pixels of ramp levels (negative: none, left blank)."""
    if top >= 0:
        return Segment("▀" * per, cell_style(top, None if bottom < 0 else bottom))
    if bottom >= 0:
        return Segment("▄" * per, cell_style(bottom, None))
    return Segment(" " * per)


class GradHeatmap(StripWidget):
    DEFAULT_CSS = """
    GradHeatmap { height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._steps: np.ndarray | None = None
        self._values: np.ndarray | None = None   # (N, T) log10 norms of one layer
        self._log = True
        self.scale: tuple[float, float] | None = None   # (lo, hi) of the last drawing, for the legend

    def set_data(self, steps, values: np.ndarray | None, log: bool = True) -> None:
        """steps (N,), values (N, T) log10 norms, oldest first."""
        self._steps = None if values is None else np.asarray(steps, dtype=float)
        self._values = None if values is None else np.asarray(values, dtype=float)
        self._log = log
        if self._values is not None and self._values.size:
            self.scale = value_range(self._values, log)
        self.invalidate()

    def build(self, width: int, height: int) -> list[Strip]:
        blank = Strip([Segment(" " * width)], width)
        v = self._values
        plot_w = width - GUTTER
        if v is None or v.size == 0 or height < 1 or plot_w < 1:
            return [blank] * height
        pixels = 2 * height
        steps = self._steps
        N = v.shape[0]
        if N > pixels:   # whole run: average training steps in even groups, one per pixel row
            starts = (np.arange(pixels) * N) // pixels
            v = group_mean(v, starts, axis=0)
            steps = np.append(steps[:1], steps[np.append(starts[2:], N) - 1])
        lo, hi = self.scale or value_range(v, self._log)
        frac = fractions(v, lo, hi, self._log)
        cols, per = resample_columns(frac, plot_w)
        n = cols.shape[-1] * per
        lv = np.where(np.isfinite(cols), np.rint(np.nan_to_num(cols) * (LEVELS - 1)), -1).astype(int)
        if lv.shape[0] % 2:   # an odd number of pixel rows: the last cell's lower half is empty
            lv = np.vstack([lv, np.full((1, lv.shape[1]), -2)])
        rows_used = lv.shape[0] // 2
        top_rows, bottom_rows = lv[0::2].tolist(), lv[1::2].tolist()
        empty = Segment(" " * plot_w)
        lines = []
        for r in range(height):
            if r == 0:
                label = fmt_count(steps[0])
            elif r == rows_used - 1:
                label = fmt_count(steps[-1])
            else:
                label = ""
            segs = [Segment(label.rjust(GUTTER - 1)[:GUTTER - 1] + " ", LABEL)]
            if r >= rows_used:
                segs.append(empty)
            else:
                segs.extend(_cell(t, b, per) for t, b in zip(top_rows[r], bottom_rows[r]))
                segs.append(Segment(" " * (plot_w - n)))
            lines.append(Strip(segs, width).simplify())
        return lines
