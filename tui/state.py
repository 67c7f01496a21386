"""What the dashboard knows about a run: built from engine events, bounded in memory.

The dashboard never looks at the trainer's arrays. It reads the same event stream that
``rnnjit train --json`` prints and ``metrics.jsonl`` holds (``event.to_dict()``), so a live run
and a followed one look the same. Everything here is plain Python and NumPy, testable without
a screen.

Long runs keep a flat memory: histories are :class:`Downsampler`\\ s, which keep at most
``capacity`` points by averaging neighbours in pairs whenever they fill up, so the plot always
spans the whole run at a resolution that halves as it grows.
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

    def points(self) -> tuple[list, list]:
        """(steps, values), the partial bucket last."""
        if not self._n:
            return list(self.steps), list(self.values)
        return self.steps + [self._step_sum / self._n], self.values + [self._value_sum / self._n]


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
        self.grad_history = Downsampler(self.history)          # mean log10 norms per bucket of steps
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

    def feed(self, e: dict) -> None:
        kind = e.get("event")
        handler = getattr(self, "_on_" + str(kind), None)
        if handler is not None:
            handler(e)

    def _on_start(self, e):
        if self.started and not e.get("resumed") and int(e.get("step", 0)) == 0:
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
        self.step = int(e.get("step", self.step))
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
            if self.grad_last is not None and g.shape != self.grad_last.shape:
                self.grad_history.clear()   # the shape changed (a different run): start over
            self.grad_last = g
            self.grad_history.add(self.step, np.nan_to_num(g, nan=math.log10(FLOOR), posinf=30.0))
        self.versions["loss"] += 1
        self.versions["grad"] += 1
        self.versions["run"] += 1

    def _on_eval(self, e):
        self.val_step = int(e.get("step", self.step))
        self.val_loss = num(e.get("val_loss"))
        self.val_bpc = num(e.get("val_bpc"))
        self.metrics = dict(e.get("metrics") or {})
        if math.isfinite(self.val_loss):
            self.val_curve.append((self.val_step, self.val_loss))
        self.versions["loss"] += 1

    def _on_sample(self, e):
        self.samples.append((int(e.get("step", self.step)), num(e.get("temperature")), str(e.get("text", ""))))
        self.versions["samples"] += 1

    def _on_checkpoint(self, e):
        self.checkpoint = (int(e.get("step", self.step)), str(e.get("path", "")))
        self.versions["run"] += 1

    def _on_end(self, e):
        self.end = dict(e)
        self.step = int(e.get("step", self.step))
        self.versions["run"] += 1
