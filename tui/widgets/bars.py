"""The gradient reaching each timestep of the latest step: one bar per timestep.

Bar t is ||dL/dh_t||, the norm of the gradient of the loss with respect to the hidden state at
timestep t of the truncated-BPTT chunk. The loss is summed over all timesteps, so late
timesteps receive gradient from their own output; early ones depend on what survives the trip
back through the recurrence. Bars that shrink to the left, decade after decade on the log scale,
are the vanishing gradient.

When steps differ in length, the bars span as many timesteps as the heatmap below (the longest
step of the run), so their columns line up; the timesteps the latest step did not have are blank.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from .base import StripWidget

from .scale import cell_style, fmt_norm, fractions, level, resample_columns, value_range

EIGHTHS = " ▁▂▃▄▅▆▇█"
GUTTER = 8
LABEL = Style(dim=True)


class GradBars(StripWidget):
    """Bars of the latest step's per-timestep gradient norms; the last line is the time axis."""

    DEFAULT_CSS = """
    GradBars { height: 5; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._values: np.ndarray | None = None   # log10 norms, (T,)
        self._log = True

    def set_data(self, values: np.ndarray | None, log: bool = True, timesteps: int = 0) -> None:
        """values: log10 norms (T,); ``timesteps``: columns to span if more than T (the rest blank)."""
        if values is not None:
            values = np.asarray(values, dtype=float)
            values = np.pad(values, (0, max(0, timesteps - values.size)), constant_values=np.nan)
        self._values = values
        self._log = log
        self.invalidate()

    def build(self, width: int, height: int) -> list[Strip]:
        blank = Strip([Segment(" " * width)], width)
        v = self._values
        rows = height - 1
        if v is None or v.size == 0 or rows < 1 or width <= GUTTER + 1:
            return [blank] * height
        lo, hi = value_range(v, self._log)
        frac = fractions(v, lo, hi, self._log)
        plot_w = width - GUTTER
        cols, per = resample_columns(frac, plot_w)
        n = cols.shape[-1] * per
        eighths = [0 if not np.isfinite(f) else max(1, int(round(f * rows * 8))) for f in cols]
        styles = [cell_style(max(level(f), 16) if np.isfinite(f) else 0, None) for f in cols]
        top = fmt_norm(10.0 ** hi if self._log else hi)
        bottom = fmt_norm(10.0 ** lo if self._log else lo)
        lines = []
        for r in range(rows):
            label = top if r == 0 else bottom if r == rows - 1 else ""
            segs = [Segment(label.rjust(GUTTER - 1)[:GUTTER - 1] + " ", LABEL)]
            below = (rows - 1 - r) * 8
            for e, st in zip(eighths, styles):
                segs.append(Segment(EIGHTHS[min(8, max(0, e - below))] * per, st))
            segs.append(Segment(" " * (plot_w - n)))
            lines.append(Strip(segs, width))
        T = v.size
        left, right = "t=1", f"t={T}"
        axis = (left + right.rjust(max(0, n - len(left)))) if n >= len(left) + len(right) + 1 else right
        lines.append(Strip([Segment((" " * GUTTER + axis).ljust(width)[:width], LABEL)], width))
        return lines
