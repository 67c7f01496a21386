"""SVG snapshots of the rnnjit-tui dashboard (pytest-textual-snapshot).

Deterministic by construction: the dashboard follows a ``metrics.jsonl`` written here from a
fixed list of engine events (made with the engine's own event classes, so the format stays the
engine's), so no training, timing or clock reaches the screen. The run directory is relative
(the test chdirs into tmp_path) because the Run panel shows it.

Update after an intended change of the screen: ``pytest tests/test_tui_snapshots.py --snapshot-update``
(then look at the SVGs in tests/__snapshots__/, and run twice to see that they are stable).
"""

from __future__ import annotations

import importlib.util
import math
import os

import pytest

from rnnjit.train import events as ev
from rnnjit.train.config import TrainConfig
from rnnjit_tui.app import DashboardApp

# a mark, not importorskip: tests/test_tui.py imports recorded_run from here
pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytest_textual_snapshot") is None,
                                reason="needs pytest-textual-snapshot (pip install rnnjit[test])")

SAMPLES = [
    "Tk,e]v!q [Xo hht [/b] wi",
    "ROMEO:\nWhat [aside] is thy name? Thou art not\nthe man I took thee for, sir.",
    "KING HENRY:\nNo, by [my] troth; and so I'll bid thee well. [Exit]",
]


def recorded_run(steps: int = 600, T: int = 32, layers: int = 2, finished: bool = True) -> list[ev.Event]:
    """A made-up but plausible run: the loss falls, the gradient reaches further back as it trains."""
    c = TrainConfig(corpus="shakespeare", cell="lstm", hidden=64, layers=layers, seq_len=T, batch=16,
                    steps=steps, eval_every=100, sample_every=200, checkpoint_every=500, seed=0)
    out: list[ev.Event] = [ev.Start(0, steps, c.to_dict(), 54_849, 65)]
    for s in range(1, steps + 1):
        f = s / steps
        loss = 1.4 + 2.8 * math.exp(-6 * f) + 0.08 * math.sin(s * 0.7)
        decay = 0.72 + 0.2 * f
        hgn = [[0.05 * (1 + layer) * decay ** (T - 1 - t) * (1 + 0.1 * math.cos(t + s)) for t in range(T)]
               for layer in range(layers)]
        gn = 6.0 * math.exp(-3 * f) + 0.5
        out.append(ev.Step(s, loss, loss / math.log(2), gn, gn > 5.0, hgn, 2e-3, 20_480.0, 0.1 * s, 0))
        if s % 100 == 0:
            out.append(ev.Eval(s, loss + 0.05 + 0.1 * f * f, (loss + 0.05 + 0.1 * f * f) / math.log(2), {}))
        if s % 200 == 0:
            out.append(ev.Sample(s, SAMPLES[s // 200 - 1], 0.8))
        if s % 500 == 0:
            out.append(ev.Checkpoint(s, "runs/recorded/checkpoint.npz"))
    if finished:
        out.append(ev.Checkpoint(steps, "runs/recorded/checkpoint.npz"))
        out.append(ev.Stopped(steps, "done"))
    return out


def write_run(run_dir, events) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        for e in events:
            f.write(e.to_json() + "\n")


async def caught_up(pilot) -> None:
    """Wait until the follower has read everything and the screen shows it."""
    for _ in range(400):
        if pilot.app.caught_up:
            break
        await pilot.pause(0.025)
    assert pilot.app.caught_up, "the follower never caught up"
    await pilot.pause()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dashboard(snap_compare, clean_env):
    write_run("run", recorded_run())
    assert snap_compare(DashboardApp(follow="run"), terminal_size=(100, 30), run_before=caught_up)


def test_dashboard_80x24(snap_compare, clean_env):
    write_run("run", recorded_run())
    assert snap_compare(DashboardApp(follow="run"), terminal_size=(80, 24), run_before=caught_up)


def test_second_layer_linear_scale(snap_compare, clean_env):
    write_run("run", recorded_run(finished=False))
    assert snap_compare(DashboardApp(follow="run"), press=["n", "l"], terminal_size=(100, 30),
                        run_before=caught_up)


def test_no_run_message(snap_compare, clean_env):
    os.makedirs("empty")
    assert snap_compare(DashboardApp(follow="empty"), terminal_size=(80, 24), run_before=caught_up)


def test_help(snap_compare, clean_env):
    write_run("run", recorded_run())
    assert snap_compare(DashboardApp(follow="run"), press=["question_mark"], terminal_size=(100, 30),
                        run_before=caught_up)
