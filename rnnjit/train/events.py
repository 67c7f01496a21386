"""What the engine says while it trains: small frozen dataclasses, one JSON line each.

The CLI, the dashboard and ``metrics.jsonl`` are three consumers of the same stream. Every
event has an ``event`` field naming its kind when serialised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf: keep them readable as strings
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class Event:
    kind = "event"

    def to_dict(self) -> dict:
        # _clean copies every list and dict it meets, so dataclasses.asdict's deep copy before it
        # would be a second one (with a Step's norms, most of the time metrics.jsonl costs a step)
        return {"event": self.kind, **{f.name: _clean(getattr(self, f.name)) for f in fields(self)}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class Start(Event):
    kind = "start"
    step: int
    total_steps: int
    config: dict
    num_parameters: int
    vocab_size: int = 0
    resumed: bool = False
    notes: list = field(default_factory=list)   # what was mended or changed on resuming, one line each


@dataclass(frozen=True)
class Step(Event):
    kind = "step"
    step: int
    loss: float
    bpc: float
    grad_norm: float          # global norm before clipping
    clipped: bool
    hidden_grad_norms: list   # (layers * directions) lists of T norms of dL/dh_t
    lr: float
    tokens_per_s: float
    elapsed: float
    epoch: int = 0


@dataclass(frozen=True)
class Eval(Event):
    kind = "eval"
    step: int
    val_loss: float
    val_bpc: float
    metrics: dict = field(default_factory=dict)   # task-specific: accuracy, mse, baseline...


@dataclass(frozen=True)
class Sample(Event):
    kind = "sample"
    step: int
    text: str
    temperature: float


@dataclass(frozen=True)
class Checkpoint(Event):
    kind = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class Warning(Event):
    """Something the user should act on while the run goes on (exploding gradients, say)."""
    kind = "warning"
    step: int
    message: str


@dataclass(frozen=True)
class Stopped(Event):
    """The run ended: ``reason`` is done, stopped (asked to), diverged (a NaN, an infinity or an
    exploding loss) or error (a run file could not be written, or memory ran out). ``step`` is
    the last step applied: a diverged run's ``message`` names the step that failed (``step + 1``)
    and says it stopped at ``step``."""
    kind = "end"
    step: int
    reason: str
    message: str = ""
