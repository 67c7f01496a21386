"""What the dashboard knows about a run: built from engine events, bounded in memory.

The dashboard never looks at the trainer's arrays. It reads the same event stream that
``rnnjit train --json`` prints and ``metrics.jsonl`` holds (``event.to_dict()``), so a live run
and a followed one look the same. Everything here is plain Python and NumPy, testable without
a screen.

Long runs keep a flat memory: histories are :class:`Downsampler`\\ s, which keep at most
``capacity`` points by averaging neighbours in pairs whenever they fill up, so the plot always
spans the whole run at a resolution that halves as it grows.

A line of ``metrics.jsonl`` can be damaged or written by something else: :func:`well_formed`
says whether an event's fields have the types the dashboard reads them as, and
:meth:`RunState.feed` skips an event that does not, whole, before it changes anything.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

FLOOR = 1e-30   # gradient norms are shown on a log scale; exact zeros sit at this floor


def num(v, default=float("nan")) -> float:
    """A float from an event field (non-finite values are serialised as strings: "nan", "inf")."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def count(v, default: int) -> int:
    """A whole-number field (a step, say): ``default`` when it is missing (None)."""
    return default if v is None else int(v)


def _is_count(v) -> bool:
    return isinstance(v, (int, float)) and abs(v) < 2 ** 63   # not NaN, an infinity or beyond any step


def _is_norm_rows(v) -> bool:
    return isinstance(v, list) and all(isinstance(r, list) and len(r) == len(v[0]) for r in v)


# what each field the dashboard converts must be, when it is there (None counts as missing); the
# same names inside an event's "config" (steps, layers) are checked too
FIELD_TYPES = {
    "step": _is_count, "total_steps": _is_count, "num_parameters": _is_count, "vocab_size": _is_count,
    "epoch": _is_count, "steps": _is_count, "layers": _is_count,
    "config": lambda v: isinstance(v, dict), "metrics": lambda v: isinstance(v, dict),
    "notes": lambda v: isinstance(v, list), "reason": lambda v: isinstance(v, str),
    "hidden_grad_norms": _is_norm_rows,
}


def well_formed(e: dict) -> bool:
    """Whether every field of event ``e`` that the dashboard reads has the engine's type.

    A missing field is fine (each has a default); one of the wrong type (``"step": "x"``, a
    config that is a list, norms that are not rows of one length) makes the event unreadable.
    """
    for key, ok in FIELD_TYPES.items():
        v = e.get(key)
        if v is not None and not ok(v):
            return False
    config = e.get("config")
    return well_formed(config) if isinstance(config, dict) else True


class Downsampler:
    """Keep (step, value) points of a whole run in bounded memory.

    Points are averaged in buckets of ``bucket`` raw points; when ``capacity`` points are stored,
    neighbours are merged in pairs and the bucket doubles. ``value`` is a float or an ndarray.
    """

    def __init__(self, capacity: int = 512):
        self.capacity = max(2, capacity - capacity % 2)
        self.clear()

    def clear(self):
        self.steps: list[float] = []
        self.values: list = []
        self.bucket = 1
        self._n = 0
        self._step_sum = 0.0
        self._value_sum = None

    def __len__(self):
        return len(self.steps) + (1 if self._n else 0)

    def add(self, step: float, value) -> None:
        self._n += 1
        self._step_sum += step
        self._value_sum = value if self._value_sum is None else self._value_sum + value
        if self._n >= self.bucket:
            self.steps.append(self._step_sum / self._n)
            self.values.append(self._value_sum / self._n)
            self._n, self._step_sum, self._value_sum = 0, 0.0, None
            if len(self.steps) >= self.capacity:
                s, v = self.steps, self.values
                self.steps = [(s[i] + s[i + 1]) / 2 for i in range(0, len(s), 2)]
                self.values = [(v[i] + v[i + 1]) / 2 for i in range(0, len(v), 2)]
                self.bucket *= 2

    def map(self, fn) -> None:
        """Replace every stored value ``v`` (the partial bucket's too) by ``fn(v)``."""
        self.values = [fn(v) for v in self.values]
        if self._value_sum is not None:
            self._value_sum = fn(self._value_sum)

    def points(self) -> tuple[list, list]:
        """(steps, values), the partial bucket last."""
        if not self._n:
            return list(self.steps), list(self.values)
        return self.steps + [self._step_sum / self._n], self.values + [self._value_sum / self._n]


class GradHistory:
    """The gradient per timestep of every step of a run, in bounded memory (a :class:`Downsampler`).

    Steps need not have one length T: the dates and captions tasks draw batches of varying
    length. Each step is kept over ``width`` timesteps, the most any step has had, as its log10
    norms with a weight of 1 and, past its own T, zeros with a weight of 0 (the stored arrays
    widen when a longer step comes). Averaging values and weights alike, a bucket's mean at
    timestep t is the mean over the steps that reached t; where none did it is NaN, drawn blank.
    A run of fixed length never pads anything.
    """

    def __init__(self, capacity: int = 512):
        self._points = Downsampler(capacity)
        self.width = 0

    def __len__(self):
        return len(self._points)

    def clear(self):
        self._points.clear()
        self.width = 0

    def add(self, step: float, values: np.ndarray) -> None:
        """values: log10 norms (rows, T) of one step, finite."""
        T = values.shape[-1]
        if T > self.width:
            self.width = T
            self._points.map(lambda a: self._widen(a, T))
        self._points.add(step, self._widen(np.stack([values, np.ones_like(values)]), self.width))

    def points(self) -> tuple[list, list]:
        """(steps, log10 norms (rows, width) per bucket, NaN where no step of the bucket reached)."""
        steps, stored = self._points.points()
        means = []
        for a in stored:
            with np.errstate(invalid="ignore", divide="ignore"):
                means.append(np.where(a[1] > 0, a[0] / a[1], np.nan))
        return steps, means

    @staticmethod
    def _widen(a: np.ndarray, width: int) -> np.ndarray:
        """Zeros (values and weights) appended on the last axis, to ``width`` timesteps."""
        pad = [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])]
        return np.pad(a, pad)


def log_norms(rows) -> np.ndarray | None:
    """hidden_grad_norms (a list of lists, maybe holding "nan" strings) -> log10 array (rows, T)."""
    if not rows or not rows[0]:
        return None
    try:
        a = np.array(rows, dtype=float)
    except (TypeError, ValueError):
        a = np.array([[num(x) for x in r] for r in rows], dtype=float)
    if a.ndim != 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.maximum(a, FLOOR))


class RunState:
    """The dashboard's model of one run. ``feed(event_dict)``; widgets read the fields.

    ``versions`` counts changes per panel (loss, grad, samples, run) so the app redraws only
    what changed.
    """

    SMOOTHING = 0.95          # exponential moving average of the training loss, as `rnnjit train`
    CLIP_WINDOW = 100         # "clipped in x% of the last N steps"

    def __init__(self, history: int = 512, samples: int = 30):
        self.history = history
        self.versions = {"loss": 0, "grad": 0, "samples": 0, "run": 0}
        self.samples: deque = deque(maxlen=samples)     # (step, temperature, text), newest last
        self.reset()

    def reset(self):
        self.config: dict = {}
        self.total_steps = 0
        self.num_parameters = 0
        self.vocab_size = 0
        self.session_start_step = 0
        self.started = False
        self.step = 0
        self.loss = self.smooth_loss = self.bpc = float("nan")
        self.val_loss = self.val_bpc = float("nan")
        self.val_step = None
        self.metrics: dict = {}
        self.grad_norm = float("nan")
        self.clipped_recent: deque = deque(maxlen=self.CLIP_WINDOW)
        self.clipped_total = 0
        self.steps_seen = 0
        self.lr = float("nan")
        self.tokens_per_s = float("nan")
        self.elapsed = 0.0
        self._pace_from: tuple[int, float] | None = None   # (step, elapsed) of the session's first step
        self.epoch = 0
        self.train_curve = Downsampler(self.history)
        self.val_curve: deque = deque(maxlen=self.history)   # (step, val_loss)
        self.grad_last: np.ndarray | None = None             # log10 norms (rows, T) of the latest step
        self.grad_history = GradHistory(self.history)          # mean log10 norms per bucket of steps
        self.lengths: tuple[int, int] | None = None            # (shortest, longest) T of the steps seen
        self.checkpoint: tuple[int, str] | None = None
        self.end: dict | None = None                            # the "end" event, once it comes
        self.samples.clear()
        for k in self.versions:
            self.versions[k] += 1

    # ---- derived --------------------------------------------------------------------------

    @property
    def clip_rate(self) -> float:
        return sum(self.clipped_recent) / len(self.clipped_recent) if self.clipped_recent else float("nan")

    @property
    def eta(self) -> float:
        """Seconds left at the pace since the first step of this session (which includes compiling)."""
        if self._pace_from is None or not self.total_steps:
            return float("nan")
        step0, t0 = self._pace_from
        if self.step <= step0 or self.elapsed <= t0:
            return float("nan")
        return max(0, self.total_steps - self.step) * (self.elapsed - t0) / (self.step - step0)

    @property
    def rows(self) -> int:
        return 0 if self.grad_last is None else self.grad_last.shape[0]

    # ---- events ---------------------------------------------------------------------------

    def feed(self, e: dict) -> bool:
        """Take one event into the state; False (and nothing changed) if it is not well formed."""
        if not well_formed(e):
            return False
        kind = e.get("event")
        handler = getattr(self, "_on_" + str(kind), None)
        if handler is not None:
            handler(e)
        return True

    def _on_start(self, e):
        if self.started and not e.get("resumed") and count(e.get("step"), 0) == 0:
            self.reset()   # a fresh run in the same stream
        self.started = True
        self.config = dict(e.get("config") or {})
        self.total_steps = int(e.get("total_steps") or self.config.get("steps") or 0)
        self.num_parameters = int(e.get("num_parameters") or 0)
        self.vocab_size = int(e.get("vocab_size") or 0)
        self.step = self.session_start_step = int(e.get("step") or 0)
        self.elapsed = 0.0
        self._pace_from = None
        self.tokens_per_s = float("nan")
        self.end = None
        self.versions["run"] += 1

    def _on_step(self, e):
        self.step = count(e.get("step"), self.step)
        self.loss = loss = num(e.get("loss"))
        if math.isfinite(loss):
            s = self.smooth_loss
            self.smooth_loss = loss if not math.isfinite(s) else self.SMOOTHING * s + (1 - self.SMOOTHING) * loss
            self.train_curve.add(self.step, self.smooth_loss)
        self.bpc = num(e.get("bpc"))
        self.grad_norm = num(e.get("grad_norm"))
        clipped = bool(e.get("clipped"))
        self.clipped_recent.append(clipped)
        self.clipped_total += clipped
        self.steps_seen += 1
        self.lr = num(e.get("lr"))
        self.elapsed = num(e.get("elapsed"), self.elapsed)
        tps = num(e.get("tokens_per_s"))
        if self._pace_from is None:   # the session's first step includes compiling: no speed from it
            self._pace_from = (self.step, self.elapsed)
        elif math.isfinite(tps):
            t = self.tokens_per_s
            self.tokens_per_s = tps if not math.isfinite(t) else 0.9 * t + 0.1 * tps
        self.epoch = int(e.get("epoch") or 0)
        g = log_norms(e.get("hidden_grad_norms"))
        if g is not None:
            self._add_norms(g)
        self.versions["loss"] += 1
        self.versions["grad"] += 1
        self.versions["run"] += 1

    def _add_norms(self, g: np.ndarray) -> None:
        """A step's log10 norms (rows, T). T may change from step to step (batches of varying
        length); a change in the number of rows (layers) is a different run: its history starts over."""
        T = g.shape[1]
        if self.grad_last is not None and g.shape[0] != self.grad_last.shape[0]:
            self.grad_history.clear()
            self.lengths = None
        self.grad_last = g
        self.lengths = (T, T) if self.lengths is None else (min(self.lengths[0], T), max(self.lengths[1], T))
        self.grad_history.add(self.step, np.nan_to_num(g, nan=math.log10(FLOOR), posinf=30.0))

    def _on_eval(self, e):
        self.val_step = count(e.get("step"), self.step)
        self.val_loss = num(e.get("val_loss"))
        self.val_bpc = num(e.get("val_bpc"))
        self.metrics = dict(e.get("metrics") or {})
        if math.isfinite(self.val_loss):
            self.val_curve.append((self.val_step, self.val_loss))
        self.versions["loss"] += 1

    def _on_sample(self, e):
        self.samples.append((count(e.get("step"), self.step), num(e.get("temperature")), str(e.get("text", ""))))
        self.versions["samples"] += 1

    def _on_checkpoint(self, e):
        self.checkpoint = (count(e.get("step"), self.step), str(e.get("path", "")))
        self.versions["run"] += 1

    def _on_end(self, e):
        self.end = dict(e)
        self.step = count(e.get("step"), self.step)
        self.versions["run"] += 1
