"""Colour ramps and number formats shared by the plots."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.style import Style

# viridis, sampled: dark (small) to bright (large); readable on dark and light backgrounds
RAMP = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
        "#b5de2b", "#fde725"]
_RGB = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in RAMP], dtype=float)
LEVELS = 64


@lru_cache(maxsize=LEVELS)
def ramp_rgb(level: int) -> tuple[int, int, int]:
    """Colour of quantised level 0..LEVELS-1 along the ramp."""
    x = level / (LEVELS - 1) * (len(RAMP) - 1)
    i = min(int(x), len(RAMP) - 2)
    f = x - i
    r, g, b = _RGB[i] * (1 - f) + _RGB[i + 1] * f
    return int(round(r)), int(round(g)), int(round(b))


def level(t: float) -> int:
    """A fraction in [0, 1] -> a ramp level."""
    if not t > 0:
        return 0
    return min(LEVELS - 1, int(t * (LEVELS - 1) + 0.5))


def ramp_hex(t: float) -> str:
    return "#%02x%02x%02x" % ramp_rgb(level(t))


@lru_cache(maxsize=LEVELS * LEVELS + 2 * LEVELS + 2)
def cell_style(top: int | None, bottom: int | None) -> Style:
    """Style of a half-block cell whose top and bottom pixels have these ramp levels (None: empty)."""
    fg = None if top is None else Color.from_rgb(*ramp_rgb(top))
    bg = None if bottom is None else Color.from_rgb(*ramp_rgb(bottom))
    return Style(color=fg, bgcolor=bg)


def value_range(values: np.ndarray, log: bool) -> tuple[float, float]:
    """(lo, hi) of the colour/height scale. ``values`` are log10 norms.

    Log scale: the data's range, widened to at least one decade so that noise on a flat profile
    does not look like a trend. Linear scale: 0 .. max.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (-1.0, 0.0) if log else (0.0, 1.0)
    if log:
        hi = float(finite.max())
        lo = float(finite.min())
        return min(lo, hi - 1.0), hi
    hi = float(10.0 ** finite.max())
    return 0.0, hi if hi > 0 else 1.0


def fractions(values: np.ndarray, lo: float, hi: float, log: bool) -> np.ndarray:
    """log10 values -> positions in [0, 1] on the scale (NaN stays NaN)."""
    v = values if log else np.power(10.0, values)
    with np.errstate(invalid="ignore"):
        return np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def fmt_norm(x: float) -> str:
    """A gradient norm in at most 7 characters: 1.2e-05, 0.031, 12.5."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")


def fmt_count(n: float) -> str:
    """1234 -> 1234; 12345 -> 12.3k; 1234567 -> 1.23M."""
    n = float(n)
    if abs(n) < 10_000:
        return f"{n:.0f}"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.3g}k"
    return f"{n / 1e6:.3g}M"


def resample_columns(a: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """Fit the last axis (timesteps) of ``a`` into ``width`` columns, one value per column.

    -> (array with ``width`` entries on the last axis, 1). Fewer timesteps than columns: each
    timestep is repeated over its share of the columns; more: timesteps are averaged in even
    groups. The bars and the heatmap use the same mapping, so their columns line up.
    """
    T = a.shape[-1]
    if T == 0 or width <= 0:
        return a[..., :0], 1
    if T <= width:
        return a[..., (np.arange(width) * T) // width], 1
    edges = (np.arange(width) * T) // width
    return group_mean(a, edges, axis=-1), 1


def group_mean(a: np.ndarray, starts: np.ndarray, axis: int) -> np.ndarray:
    """Means of the groups of ``a`` along ``axis`` that begin at ``starts`` (increasing), NaN ignored.

    A group with no number stays NaN. Vectorised (np.add.reduceat): this runs a few times a second
    while training shares the CPU.
    """
    ok = np.isfinite(a)
    total = np.add.reduceat(np.where(ok, a, 0.0), starts, axis=axis)
    count = np.add.reduceat(ok.astype(np.int32), starts, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
