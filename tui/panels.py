"""What the panels say, as pure functions of the run's state (no widgets, easy to test).

Each returns text: a row of (text, style) pieces for a ``TextLines`` widget, or (label, value)
pairs for the Run panel.
"""

from __future__ import annotations

import math
import os

import numpy as np
from rich.style import Style

from rnnjit.train.config import LENGTH_TASKS

from .state import RunState
from .widgets.loss import TRAIN as TRAIN_STYLE, VAL as VAL_STYLE
from .widgets.scale import fmt_count, fmt_norm

LN2 = math.log(2)
BOLD = Style(bold=True)


def hms(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def is_text_task(config: dict) -> bool:
    """Bits per character and the chunk length T mean something only for a language model."""
    return config.get("task", "charlm") == "charlm"


def loss_row(s: RunState) -> list:
    """train 1.234 (1.78 bpc)  val 1.300 (1.88); a task that scores accuracy: "  acc 62%" after."""
    chars = is_text_task(s.config)
    row: list = [("train ", None)]
    if math.isfinite(s.smooth_loss):
        row += [(f"{s.smooth_loss:.3f}", TRAIN_STYLE),
                (f" ({s.smooth_loss / LN2:.2f} bpc)  " if chars else "  ", None)]
    else:
        row.append(("-  ", TRAIN_STYLE))
    row.append(("val ", None))
    if math.isfinite(s.val_loss):
        row += [(f"{s.val_loss:.3f}", VAL_STYLE), (f" ({s.val_bpc:.2f})" if chars else "", None)]
    else:
        row.append(("-", VAL_STYLE))
    accuracy = s.metrics.get("accuracy")             # the synthetic tasks' score, beside their loss
    if isinstance(accuracy, (int, float)) and math.isfinite(accuracy):
        row.append((f"  acc {accuracy:.0%}", None))
    return row


def layer_name(config: dict, rows: int, layer: int) -> str:
    """Which row of hidden_grad_norms is shown: "layer 2/3", or "layer 1/2 bwd" when bidirectional."""
    layers = int(config.get("layers") or rows or 1)
    dirs = max(1, rows // max(1, layers))
    i = layer % max(1, rows)
    if dirs == 1:
        return f"layer {i + 1}/{rows}"
    return f"layer {i // dirs + 1}/{layers} {'fwd' if i % dirs == 0 else 'bwd'}"


def grad_row(s: RunState, last: np.ndarray) -> list:
    """‖g‖ (global norm before clipping), the clip rate and t1/tT of the shown layer (last: log10 norms)."""
    clip = s.clip_rate
    row = [("‖g‖ ", None), (fmt_norm(s.grad_norm), BOLD), ("  clipped ", None),
           (f"{clip:.0%}" if math.isfinite(clip) else "-", BOLD)]
    if last.size > 1 and np.isfinite(last[0]) and np.isfinite(last[-1]):
        row += [("  t1/tT ", None), (fmt_norm(10.0 ** (last[0] - last[-1])), BOLD)]
    return row


def task_text(s: RunState) -> str:
    """The task and its sequence length: "adding · T=50" (--length), or for a task whose batches
    vary in length the shortest and longest of the steps seen: "dates · T=32..39"."""
    c = s.config
    if c.get("task") in LENGTH_TASKS:
        return f"{c.get('task')} · T={c.get('length')}"
    if s.lengths is None:
        return str(c.get("task"))
    lo, hi = s.lengths
    return f"{c.get('task')} · T={lo}" + (f"..{hi}" if hi > lo else "")


def run_rows(s: RunState, temperature: float, where: str | None, compact: bool = False) -> list[tuple[str, str]]:
    """The Run panel: model, data, progress, speed, time, temperature, last checkpoint, directory.

    ``compact`` (a panel too short for them all, as at 80x24): without the epoch, the last
    checkpoint and the directory, which :func:`run_border` puts on the panel's border instead.
    """
    c = s.config
    rows: list[tuple[str, str]] = []
    if c:
        emb = f" emb {c['embedding']}" if c.get("embedding") else ""
        rows.append(("model", f"{c.get('cell')} {c.get('layers')}×{c.get('hidden')}{emb}, "
                              f"{fmt_count(s.num_parameters)} params"))
        if is_text_task(c):
            corpus = str(c.get("corpus", ""))
            name = os.path.basename(corpus) if os.sep in corpus else corpus
            rows.append(("corpus", name + (f", vocab {s.vocab_size}" if s.vocab_size else "")))
        else:
            rows.append(("task", task_text(s)))
        chunk = f" × T{c.get('seq_len')}" if is_text_task(c) else ""
        rows.append(("batch", f"B{c.get('batch')}{chunk} · {c.get('optimizer')}"))
    total = s.total_steps
    pct = f" · {100 * s.step / total:.0f}%" if total else ""
    epoch = f" · epoch {s.epoch}" if s.epoch and not compact else ""
    rows.append(("step", f"{s.step:,} / {total:,}{pct}{epoch}"))
    tps = f"{fmt_count(s.tokens_per_s)} tok/s" if math.isfinite(s.tokens_per_s) else "- tok/s"
    lr = f"lr {fmt_norm(s.lr)}" if math.isfinite(s.lr) else "lr -"
    rows.append(("speed", f"{tps} · {lr}"))
    eta = "" if s.end else f" · ETA {hms(s.eta)}"
    rows.append(("time", f"{hms(s.elapsed)}{eta}"))
    ok = isinstance(temperature, (int, float)) and math.isfinite(temperature)
    rows.append(("temp", f"{temperature:.2f}" if ok else "-"))
    if s.checkpoint and not compact:
        rows.append(("saved", f"step {s.checkpoint[0]:,} · {os.path.basename(s.checkpoint[1])}"))
    if where and not compact:
        rows.append(("dir", str(where)))
    return rows


def run_border(s: RunState, where: str | None) -> tuple[str, str]:
    """What a compact Run panel shows on its border: (after the title: " · epoch 2",
    the subtitle: "saved step 1,500 · runs/x", the last checkpoint and the directory)."""
    epoch = f" · epoch {s.epoch}" if s.epoch else ""
    saved = f"saved step {s.checkpoint[0]:,}" if s.checkpoint else ""
    return epoch, " · ".join(part for part in (saved, str(where or "")) if part)
