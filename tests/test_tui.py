"""rnnjit-tui with App.run_test() and Pilot: a tiny model trains on a small text file.

Tiny on purpose (hidden 8, seq-len 8, batch 2): the whole file runs in seconds on two cores.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from contextlib import redirect_stdout

import numpy as np
import pytest

from rnnjit.cli import main as rnnjit_main
from rnnjit_tui.app import DashboardApp, HelpScreen
from rnnjit_tui.command import build_parser, main
from rnnjit_tui.sources import JsonlTail
from rnnjit_tui.state import Downsampler, RunState

from test_tui_snapshots import recorded_run, write_run

TINY = ["--hidden", "8", "--layers", "2", "--seq-len", "8", "--batch", "2"]
TEXT = "".join(f"line {i}: the [quick] brown fox {{jumps}} over the lazy dog.\n" for i in range(200))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def make_app(*argv) -> DashboardApp:
    from rnnjit.cli import make_trainer
    return DashboardApp(trainer=make_trainer(build_parser().parse_args([str(a) for a in argv])))


def gentle(trainer, pause=0.02):
    """Let the trainer breathe between steps. Pilot's press() waits (up to 2 s) for the process to
    go idle, which a tiny model training flat out on every core never does."""
    run = trainer.run

    def slow():
        for event in run():
            time.sleep(pause)
            yield event
    trainer.run = slow
    return trainer


def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    from rich.console import Console
    w, h = app.size
    console = Console(width=w, height=h, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


async def until(pilot, condition, timeout=120.0, what="condition"):
    """Wait for condition() (generous: a cold Numba cache compiles the kernels on the first step)."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def events_of(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---- training -----------------------------------------------------------------------------------

def test_panels_fill_while_training(tmp_path, corpus):
    out = tmp_path / "run"
    app = make_app(*TINY, "--steps", 30, "--eval-every", 10, "--sample-every", 10, "--corpus", corpus, "--out", out)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.finished, what="the run to end")
            await pilot.pause(0.2)   # a redraw
            text = screen_text(app)
            s = app.state
            assert s.step == 30 and s.end["reason"] == "done"
            assert len(s.train_curve) == 30 and len(s.val_curve) == 3
            assert s.grad_last.shape == (2, 8) and len(s.grad_history) == 30
            assert [x[0] for x in s.samples] == [10, 20, 30]
            assert "Run · ✓ done" in text and "30 / 30" in text and "lstm 2×8" in text
            assert "train 2." in text or "train 3." in text      # loss in numbers
            assert "step 30 · temperature 0.80" in text          # newest sample first ...
            assert text.index("step 30 · temperature") < text.index("step 20 · temperature")
            assert "t=1" in text and "t=8" in text                # the bars' time axis
            assert "layer 1/2 · log" in text                      # the heatmap's legend
            assert "tok/s" in text and "ETA" not in text          # finished: no estimate left
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(go())
    assert os.path.exists(out / "checkpoint.npz")


def test_every_key(tmp_path, corpus):
    out = tmp_path / "run"
    app = make_app(*TINY, "--steps", 1_000_000, "--eval-every", 0, "--sample-every", 0,
                   "--checkpoint-every", 0, "--corpus", corpus, "--out", out)
    tr = gentle(app.trainer)
    timing = {}

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.state.step >= 5, what="training to start")

            await pilot.press("p")                              # pause: training holds
            assert app.paused and "resume" in {b.binding.action for b in app.active_bindings.values()}
            await pilot.pause(0.3)
            held = tr.step
            await pilot.pause(0.3)
            assert tr.step == held
            await until(pilot, lambda: app.state.step == held, what="the screen to catch up")
            assert "‖ paused" in screen_text(app)

            await pilot.press("s")                              # sample now, even while paused
            await until(pilot, lambda: len(app.state.samples) == 1, what="a sample")
            assert app.state.samples[-1][0] == held

            for key, want in (("plus", 0.9), ("minus", 0.8), ("minus", 0.7), ("right_square_bracket", 0.8),
                              ("left_square_bracket", 0.7), ("equals_sign", 0.8)):
                await pilot.press(key)
                assert tr.temperature == pytest.approx(want), key
            await pilot.pause(0.15)
            assert "temp   0.80" in screen_text(app)

            await pilot.press("c")                              # checkpoint, at once while paused
            await until(pilot, lambda: app.state.checkpoint is not None, what="a checkpoint")
            assert app.state.checkpoint[0] == held and os.path.exists(out / "checkpoint.npz")

            assert app.log_scale
            await pilot.press("l")
            await pilot.pause(0.15)
            assert not app.log_scale and "linear" in screen_text(app)
            await pilot.press("l")
            assert app.log_scale

            await pilot.press("n")                              # next layer
            await pilot.pause(0.15)
            assert app.layer == 1 and "layer 2/2" in screen_text(app)
            await pilot.press("n")
            assert app.layer == 0

            for key in ("question_mark", "h"):                  # help opens and closes
                await pilot.press(key)
                assert isinstance(app.screen, HelpScreen)
                assert "vanishing gradient" in screen_text(app)
                await pilot.press("escape")
                assert not isinstance(app.screen, HelpScreen)

            await pilot.press("p")                              # resume
            await until(pilot, lambda: tr.step > held + 3, what="training to resume")
            assert not app.paused

            await pilot.press("s")                              # sample now, while training
            await until(pilot, lambda: len(app.state.samples) == 2, what="a second sample")
            assert app.state.samples[-1][0] > held and app.state.samples[-1][1] == pytest.approx(0.8)

            before = app.state.checkpoint[0]
            await pilot.press("c")                              # checkpoint after the current step
            await until(pilot, lambda: app.state.checkpoint[0] > before, what="a second checkpoint")

            timing["q"] = time.monotonic()
            await pilot.press("q")
        timing["closed"] = time.monotonic()
        assert app.return_code == 0

    asyncio.run(go())
    assert timing["closed"] - timing["q"] < 1.0
    assert app.trainer_done.is_set()
    events = events_of(out)
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    assert events[-2]["event"] == "checkpoint" and events[-2]["step"] == events[-1]["step"]
    assert os.path.exists(out / "checkpoint.npz")


def test_main_quit_returns_zero_and_leaves_a_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    out = tmp_path / "run"
    run = DashboardApp.run

    async def pilot_quits(pilot):
        await until(pilot, lambda: pilot.app.state.step >= 3, what="training")
        await pilot.press("q")

    def headless_run(self, **kw):
        gentle(self.trainer)
        return run(self, headless=True, size=(80, 24), auto_pilot=pilot_quits)

    monkeypatch.setattr(DashboardApp, "run", headless_run)
    code = main([*TINY, "--steps", "1000000", "--corpus", corpus, "--out", str(out)])
    assert code == 0
    assert os.path.exists(out / "checkpoint.npz")
    err = capsys.readouterr().err
    assert "checkpoint saved" in err and f"rnnjit train --resume {out}" in err


def test_option_errors_before_the_screen(tmp_path, corpus, capsys):
    cases = [["--hidden", "0"], ["--corpus", str(tmp_path / "missing.txt")], ["--lr", "-1"],
             ["--out", str(tmp_path / "old")]]
    write_run(tmp_path / "old", recorded_run(steps=3))
    for argv in cases:
        assert main(argv) == 2, argv
        tui_err = capsys.readouterr().err
        assert tui_err.startswith("rnnjit-tui: error: ") and tui_err.count("\n") == 1, tui_err
        assert rnnjit_main(["train", *argv]) == 2
        cli_err = capsys.readouterr().err
        assert cli_err.split("error: ", 1)[1] == tui_err.split("error: ", 1)[1]   # the same message
    assert main(["--follow", str(tmp_path), "--hidden", "3"]) == 2
    assert "takes no training options" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--cell", "transformer"])
    assert e.value.code == 2


def test_resuming_an_ended_run_points_to_follow(tmp_path, corpus, capsys):
    out = str(tmp_path / "run")
    assert rnnjit_main(["train", *TINY, "--steps", "2", "--eval-every", "0", "--sample-every", "0",
                        "--corpus", corpus, "--out", out]) == 0
    capsys.readouterr()
    assert main(["--resume", out]) == 0          # no screen: there is nothing to train
    err = capsys.readouterr().err
    assert "has trained its 2 steps and ended" in err and f"rnnjit-tui --follow {out}" in err


def test_a_diverged_run_says_so(tmp_path, corpus):
    from rnnjit_tui.command import _report
    app = make_app(*TINY, "--lr", "1000", "--clip", "0", "--steps", 500, "--corpus", corpus, "--out", tmp_path / "run")

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.finished, what="the run to stop")
            await pilot.pause(0.1)
            text = " ".join(screen_text(app).split())
            assert "✗ diverged" in text and "Try a lower --lr" in text
            await pilot.press("q")

    asyncio.run(go())
    assert _report(app) == 1


# ---- --follow -----------------------------------------------------------------------------------

def test_follow_a_run_written_by_rnnjit_train(tmp_path, corpus):
    run_dir = tmp_path / "run"
    with redirect_stdout(io.StringIO()):
        assert rnnjit_main(["train", "--json", *TINY, "--steps", "20", "--eval-every", "10", "--sample-every", "10",
                            "--corpus", corpus, "--out", str(run_dir)]) == 0
    app = DashboardApp(follow=str(run_dir))

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.caught_up, what="the follower")
            await pilot.pause(0.15)
            s, text = app.state, screen_text(app)
            assert s.step == 20 and len(s.train_curve) == 20 and len(s.val_curve) == 2
            assert [x[0] for x in s.samples] == [10, 20] and s.checkpoint[0] == 20
            assert "Run · ✓ done" in text and "20 / 20" in text and "step 20 · temperature" in text
            assert not app._notes
            assert "pause" not in {b.binding.action for b in app.active_bindings.values()}   # not ours to pause
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(go())


def test_follow_an_empty_or_missing_directory(tmp_path):
    for name, want in (("empty", "no run in"), ("missing", "no such directory")):
        if name == "empty":
            os.makedirs(tmp_path / name)
        app = DashboardApp(follow=str(tmp_path / name))

        async def go():
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.caught_up, what="the follower")
                await pilot.pause(0.05)
                assert want in " ".join(screen_text(app).split())
                assert app.state.step == 0

        asyncio.run(go())


def test_follow_a_truncated_line_then_the_run_going_on(tmp_path):
    run_dir = tmp_path / "run"
    events = [e.to_json() for e in recorded_run(steps=50, T=6, layers=1, finished=False)]
    os.makedirs(run_dir)
    path = run_dir / "metrics.jsonl"
    cut = events[40]
    path.write_text("\n".join(events[:40]) + "\n" + cut[:25], encoding="utf-8")   # 40 lines and a half
    app = DashboardApp(follow=str(run_dir))
    app.PARTIAL_GRACE_S = 0.2

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.caught_up, what="the follower")
            await pilot.pause(0.15)
            text = " ".join(screen_text(app).split())
            assert "ends in the middle of line 41" in text
            assert app.state.step > 30                                  # the complete lines are shown
            with open(path, "a", encoding="utf-8") as f:               # the writer finishes the line ...
                f.write(cut[25:] + "\n" + "\n".join(events[41:]) + "\n")
                f.write('{"event": "step", "st\n')                     # ... and a cut-off line is followed
                f.write(recorded_run(steps=50, T=6, layers=1)[-1].to_json() + "\n")
            await until(pilot, lambda: app.state.end is not None, what="the rest of the run")
            await pilot.pause(0.3)
            text = " ".join(screen_text(app).split())
            assert "ends in the middle" not in text
            assert "1 line that is not a readable event skipped (line" in text
            assert app.state.step == 50

    asyncio.run(go())


def test_samples_are_shown_literally(tmp_path):
    from rnnjit.train import events as ev
    run_dir = tmp_path / "run"
    events = recorded_run(steps=5, T=4, layers=1)
    events.insert(3, ev.Sample(2, "[bold red]not bold[/] [link=x] \\[ ] [", 1.25))
    write_run(run_dir, events)
    app = DashboardApp(follow=str(run_dir))

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.caught_up, what="the follower")
            await pilot.pause(0.15)
            assert "[bold red]not bold[/] [link=x] \\[ ] [" in screen_text(app)
            assert "step 2 · temperature 1.25" in screen_text(app)

    asyncio.run(go())


# ---- bounded memory -----------------------------------------------------------------------------

def test_histories_are_bounded():
    s = RunState(history=64)
    row = [[0.1 * (t + 1) for t in range(16)] for _ in range(2)]
    s.feed({"event": "start", "step": 0, "total_steps": 10_000, "config": {"layers": 2}})
    for i in range(1, 10_001):
        s.feed({"event": "step", "step": i, "loss": 2.0, "bpc": 2.9, "grad_norm": 1.0, "clipped": i % 2 == 0,
                "hidden_grad_norms": row, "lr": 1e-3, "tokens_per_s": 1.0, "elapsed": i})
        if i % 10 == 0:
            s.feed({"event": "eval", "step": i, "val_loss": 2.0, "val_bpc": 2.9})
            s.feed({"event": "sample", "step": i, "text": "x", "temperature": 0.8})
    assert len(s.train_curve) <= 64 and len(s.grad_history) <= 64
    assert len(s.val_curve) <= 64 and len(s.samples) <= 30 and len(s.clipped_recent) == 100
    steps, values = s.grad_history.points()
    assert steps[0] < 200 and steps[-1] > 9_800          # still the whole run
    assert values[0].shape == (2, 16)
    assert s.clip_rate == pytest.approx(0.5)


def test_downsampler_keeps_the_mean():
    d = Downsampler(capacity=8)
    for i in range(100):
        d.add(i, float(i))
    steps, values = d.points()
    assert len(steps) <= 8 and steps == pytest.approx(values)


def test_jsonl_tail(tmp_path):
    path = tmp_path / "m.jsonl"
    tail = JsonlTail(str(path))
    assert tail.poll() == []                               # no file yet
    path.write_text('{"event": "a"}\n{"event": "b"', encoding="utf-8")
    assert [e["event"] for e in tail.poll()] == ["a"] and tail.partial
    with open(path, "a", encoding="utf-8") as f:
        f.write('}\nnot json\n[1]\n')
    assert [e["event"] for e in tail.poll()] == ["b"] and not tail.partial
    assert tail.bad_lines == [3, 4]
    path.write_text('{"event": "c"}\n', encoding="utf-8")   # replaced by a shorter file
    assert [e["event"] for e in tail.poll()] == ["c"] and tail.reset


def test_panel_text_is_a_function_of_the_state():
    from rnnjit_tui import panels
    assert panels.layer_name({"layers": 2}, 4, 3) == "layer 2/2 bwd"
    assert panels.layer_name({"layers": 3}, 3, 1) == "layer 2/3"
    assert panels.hms(3725) == "1:02:05" and panels.hms(65) == "1:05" and panels.hms(float("nan")) == "-"
    s = RunState()
    s.config = {"task": "adding", "length": 50, "batch": 32, "seq_len": 64, "cell": "rnn", "layers": 1,
                "hidden": 32, "optimizer": "adam"}
    rows = dict(panels.run_rows(s, 0.8, "/tmp/run"))
    assert rows["task"] == "adding · T=50" and "T64" not in rows["batch"] and rows["dir"] == "/tmp/run"
    s.config = {**s.config, "task": "charlm", "corpus": "shakespeare"}
    rows = dict(panels.run_rows(s, float("nan"), None))
    assert rows["corpus"].startswith("shakespeare") and "× T64" in rows["batch"] and rows["temp"] == "-"
    text = "".join(t for t, _ in panels.loss_row(s))
    assert "acc" not in text
    s.feed({"event": "eval", "step": 5, "val_loss": 0.5, "val_bpc": 0.7, "metrics": {"accuracy": 0.625}})
    assert "".join(t for t, _ in panels.loss_row(s)).endswith("  acc 62%")   # the task's score, as the CLI's


# ---- steps of varying length (the dates and captions tasks) ---------------------------------------

def step_event(step: int, norms: list, **fields) -> dict:
    return {"event": "step", "step": step, "loss": 2.0, "bpc": 2.9, "grad_norm": 1.0, "clipped": False,
            "hidden_grad_norms": norms, "lr": 1e-3, "tokens_per_s": 1.0, "elapsed": step, **fields}


def test_the_heatmap_keeps_steps_of_varying_length():
    from rnnjit_tui import panels
    from rnnjit_tui.widgets import GradBars, GradHeatmap
    s = RunState()
    s.feed({"event": "start", "step": 0, "total_steps": 10, "config": {"task": "dates", "length": 50, "layers": 2}})
    assert panels.task_text(s) == "dates"                   # no step yet: no length to tell
    lengths = [4, 6, 5]
    for i, T in enumerate(lengths, 1):
        s.feed(step_event(i, [[10.0 ** -t for t in range(T)], [1.0] * T]))
    steps, values = s.grad_history.points()
    assert steps == [1, 2, 3] and s.grad_history.width == 6    # every step kept, at the longest's width
    for v, T in zip(values, lengths):
        assert v.shape == (2, 6)
        assert v[0, :T] == pytest.approx([-t for t in range(T)]) and np.isnan(v[:, T:]).all()
    assert panels.task_text(s) == "dates · T=4..6"          # not the --length it ignores

    heat = GradHeatmap()                                     # one column per timestep, two steps a line
    heat.set_data(steps, np.stack([v[0] for v in values]))
    assert [line.text[8:] for line in heat.build(8 + 6, 2)] == ["▀▀▀▀▄▄", "▀▀▀▀▀ "]
    bars = GradBars()                                        # the latest step (T=5) in the same columns
    bars.set_data(s.grad_last[0], timesteps=s.grad_history.width)
    lines = [line.text[8:] for line in bars.build(8 + 6, 4)]
    assert all(line[0] != " " and line[5] == " " for line in lines[:-1]) and lines[-1].strip() == "t=6"

    s.feed(step_event(4, [[1.0] * 3]))                       # one layer now: a different run
    assert len(s.grad_history) == 1 and s.grad_history.width == 3 and s.lengths == (3, 3)


def test_downsampled_steps_of_varying_length_average_what_they_have():
    s = RunState(history=4)
    for i in range(1, 101):                                  # 2 and 3 timesteps by turns; t=3 always 100
        s.feed(step_event(i, [[1.0, 1.0, 100.0][:2 + i % 2]]))
    steps, values = s.grad_history.points()
    assert len(steps) <= 4 and steps[-1] > 95
    for v in values:                                         # neither blank nor diluted by the short steps
        assert v[0] == pytest.approx([0.0, 0.0, 2.0])


# ---- damaged metrics.jsonl lines ------------------------------------------------------------------

WRONG_TYPES = [
    {"event": "step", "step": "x"},
    {"event": "step", "step": None, "epoch": [1]},
    {"event": "step", "step": 7, "hidden_grad_norms": [[1.0, 2.0], [3.0]]},
    {"event": "step", "step": 7, "hidden_grad_norms": 7},
    {"event": "start", "step": 0, "config": [1, 2]},
    {"event": "start", "step": 0, "config": {"steps": "many"}},
    {"event": "start", "step": 0, "notes": 5},
    {"event": "eval", "step": float("inf"), "metrics": {}},
    {"event": "sample", "step": {"a": 1}, "text": "x"},
    {"event": "checkpoint", "step": [3], "path": "x"},
    {"event": "end", "step": 3, "reason": ["done"]},
]


def test_events_with_fields_of_the_wrong_type_are_skipped(tmp_path):
    s = RunState()
    s.feed({"event": "start", "step": 0, "total_steps": 10, "config": {"layers": 1}})
    assert s.feed(step_event(2, [[1.0, 1.0]]))
    before = (dict(s.versions), s.step, s.config, s.end, s.checkpoint, len(s.samples))
    for e in WRONG_TYPES:
        assert s.feed(e) is False, e
    assert (dict(s.versions), s.step, s.config, s.end, s.checkpoint, len(s.samples)) == before
    assert s.feed({"event": "step", "step": 3}) and s.step == 3   # missing fields still have defaults

    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [{"event": "step", "step": 1}, *WRONG_TYPES]),
                    encoding="utf-8")
    tail = JsonlTail(str(path))
    assert tail.poll() == [{"event": "step", "step": 1}]
    assert tail.bad_lines == list(range(2, 2 + len(WRONG_TYPES)))


def test_follow_skips_a_line_with_a_field_of_the_wrong_type(tmp_path):
    run_dir = tmp_path / "run"
    lines = [e.to_json() for e in recorded_run(steps=5, T=4, layers=1)]
    lines.insert(3, '{"event": "step", "step": "x"}')
    os.makedirs(run_dir)
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = DashboardApp(follow=str(run_dir))

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.caught_up, what="the follower")
            await pilot.pause(0.15)
            text = " ".join(screen_text(app).split())
            assert "1 line that is not a readable event skipped (line 4)" in text
            assert app.state.step == 5 and "Run · ✓ done" in text
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(go())



def test_a_short_run_panel_moves_epoch_checkpoint_and_directory_to_its_border():
    from rnnjit_tui import panels
    s = RunState()
    s.config = {"task": "charlm", "corpus": "shakespeare", "batch": 16, "seq_len": 64, "cell": "lstm",
                "layers": 2, "hidden": 64, "optimizer": "adam"}
    s.step, s.total_steps, s.epoch, s.checkpoint = 1500, 2000, 2, (1500, "runs/x/checkpoint.npz")
    full = dict(panels.run_rows(s, 0.8, "runs/x"))
    assert full["step"].endswith("· epoch 2") and full["saved"].startswith("step 1,500") and full["dir"] == "runs/x"
    compact = panels.run_rows(s, 0.8, "runs/x", compact=True)
    assert len(compact) == 7 and dict(compact)["step"] == "1,500 / 2,000 · 75%"
    assert panels.run_border(s, "runs/x") == (" · epoch 2", "saved step 1,500 · runs/x")
    s.epoch, s.checkpoint = 0, None
    assert panels.run_border(s, "runs/x") == ("", "runs/x") and panels.run_border(s, None) == ("", "")

# ---- odd moments ----------------------------------------------------------------------------------

def test_keys_at_odd_moments(tmp_path, corpus):
    """Every key before the first step, mashed while training, and after the run has ended:
    nothing breaks, the run ends with a checkpoint, and the app quits with status 0."""
    out = tmp_path / "run"
    app = make_app(*TINY, "--steps", 40, "--eval-every", 10, "--sample-every", 10, "--corpus", corpus, "--out", out)
    gentle(app.trainer, pause=0.005)
    keys = ["p", "s", "plus", "minus", "c", "l", "n", "question_mark", "escape", "p", "left_square_bracket",
            "right_square_bracket", "equals_sign", "h", "escape"]

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            for key in keys:                                   # at once: before a single step is shown
                await pilot.press(key)
            await until(pilot, lambda: app.state.step >= 2, what="training to start")
            for key in keys * 2:                               # mashed while training
                await pilot.press(key)
            if app.paused:
                await pilot.press("p")
            await until(pilot, lambda: app.finished, what="the run to end")
            for key in keys + ["s", "c", "p", "p"]:            # after the end
                await pilot.press(key)
            await pilot.pause(0.3)
            assert "✓ done" in screen_text(app) and app.error == ""
            await pilot.press("q")
            await pilot.press("q")                             # a second q while quitting
        assert app.return_code == 0

    asyncio.run(go())
    assert app.trainer_done.is_set() and app.trainer.step == 40
    from rnnjit.train.checkpoint import load_checkpoint
    assert load_checkpoint(str(out / "checkpoint.npz"))[1]["step"] == 40


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_stop_signals_in_a_real_terminal(tmp_path, corpus, signame):
    """rnnjit-tui in a pseudo-terminal: SIGTERM (kill) or SIGHUP (the terminal closed) stops it as
    `q` does: the run saves a checkpoint, the process says where it stopped and exits 130, as
    `rnnjit train` does when a signal stops it (`q` itself exits 0)."""
    import pty
    import select
    import signal
    import subprocess
    import sys
    out = tmp_path / "run"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rnnjit_tui.command", *TINY, "--steps", "1000000", "--corpus", corpus,
                             "--out", str(out), "--checkpoint-every", "0", "--threads", "1"],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env=dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30"))
    os.close(slave)
    screen = b""

    def read_for(seconds):
        nonlocal screen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:   # the child closed its side
                    return

    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            read_for(0.2)
            metrics = out / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count('"event": "step"') >= 3:
                break
        proc.send_signal(getattr(signal, signame))
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 60:
            read_for(0.2)
        read_for(0.2)
        assert proc.returncode == 130, screen[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = screen.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert "stopped at step" in text and "--resume" in text, text[-1500:]
    events = events_of(out)
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    from rnnjit.train.checkpoint import load_checkpoint
    assert load_checkpoint(str(out / "checkpoint.npz"))[1]["step"] == events[-1]["step"] > 0


def test_a_worker_message_after_the_screen_is_gone_is_dropped(tmp_path):
    """On exit Textual takes the screen down first (``_close_all``) and then handles the messages
    still queued; a worker's last message (caught up, a note) arriving in between used to redraw
    into missing widgets and fail the exit with NoMatches (seen once in CI). Post them exactly
    there."""
    from rnnjit_tui.messages import CaughtUp, Note
    run_dir = tmp_path / "run"
    write_run(run_dir, recorded_run(steps=5, T=4, layers=1))
    app = DashboardApp(follow=str(run_dir))
    close_all = app._close_all

    async def close_then_message():
        await close_all()
        for key in app.state.versions:        # something new to draw
            app.state.versions[key] += 1
        app.post_message(CaughtUp())
        app.post_message(Note("source", "gone"))

    app._close_all = close_then_message

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.caught_up, what="the follower")

    asyncio.run(go())
    assert app.caught_up
