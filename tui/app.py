"""``rnnjit-tui``: watch a recurrent network learn.

    rnnjit-tui                                  train the default model (an LSTM on Shakespeare)
    rnnjit-tui --cell rnn --seq-len 100         any `rnnjit train` option
    rnnjit-tui --follow runs/DIR                watch a run that `rnnjit train` is writing (or wrote)

Four panels: the loss (smoothed training loss and validation loss), the gradient norm per
timestep (bars for the latest step and a heatmap over the whole run, log scale, per layer),
the samples the model writes as it learns (newest first), and the run's numbers.

How it is built: the engine (``rnnjit.train.Trainer``) yields events; a thread worker
(``workers.py``) iterates them (the kernels release the GIL, so the screen stays live) and posts
them in batches of at most ~10 a second with ``post_message``, which never blocks the trainer. The screen's
model of the run (:class:`rnnjit_tui.state.RunState`) is built from the event dicts alone, the
same dicts ``metrics.jsonl`` holds, which is how ``--follow`` shows a run it did not start.
The command around it (options, signals, the last words) is in ``command.py``.
Pausing holds the trainer between two events (after a step): while it is held, "sample now"
and "save checkpoint" are served at once from the worker thread, the model being idle.
"""

from __future__ import annotations

import contextlib
import threading
import time

from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, RichLog, Static

from . import panels
from .help import HelpScreen
from .messages import CaughtUp, Events, Finished, Held, Note
from .state import RunState
from .widgets import GradBars, GradHeatmap, LossPlot, TextLines
from .widgets.scale import fmt_norm, ramp_hex
from .workers import Sources

EXIT_USAGE = 2


# ---- the app ------------------------------------------------------------------------------------

DIM = Style(dim=True)
RAMP_MARKUP = "".join(f"[{ramp_hex(i / 7)}]█[/]" for i in range(8))


@contextlib.contextmanager
def _unless_taken_down(app):
    """Drawing that finds its widgets gone is dropped once the app has stopped running: on exit
    Textual removes the screen first and then handles the messages still queued, and a worker's
    last message (caught up, finished) can be among them. While running, it is a real error."""
    try:
        yield
    except NoMatches:
        if app.is_running:
            raise


def _set(widget, attribute: str, value) -> None:
    """Set a border title only when it changes (each change repaints the whole panel)."""
    key = "_rnnjit_" + attribute
    if getattr(widget, key, None) != value:
        setattr(widget, key, value)
        setattr(widget, attribute, value)


class DashboardApp(Sources, App):
    """The dashboard. Give it a ``trainer`` (it trains) or a ``follow`` directory (it watches).
    The threads that feed it events are in ``workers.py`` (``Sources``)."""

    TITLE = "rnnjit-tui"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #grid {
        layout: grid; grid-size: 2 2; grid-columns: 11fr 9fr; grid-rows: 2fr 3fr; height: 1fr;
    }
    .panel {
        border: round $primary 50%; border-title-color: $text; border-title-style: bold;
        border-subtitle-color: $text-muted; height: 100%; width: 100%;
    }
    #run-panel, #samples-panel { padding: 0 1; }
    #loss-numbers, #grad-numbers { height: 1; }
    #grad-bars { height: 1fr; min-height: 4; max-height: 12; }
    #grad-heatmap { height: 2fr; min-height: 2; }
    #run-info { height: 1fr; }
    #samples {
        border: none; background: transparent; padding: 0; overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    #message {
        display: none; height: auto; max-height: 4; padding: 0 1;
        background: $warning 25%; color: $text;
    }
    #message.shown { display: block; }
    """

    BINDINGS = [
        Binding("p", "pause", "pause"),
        Binding("p", "resume", "resume"),
        Binding("s", "sample", "sample"),
        Binding("plus,equals_sign,right_square_bracket", "temperature(1)", "temp", key_display="+/-"),
        Binding("minus,left_square_bracket", "temperature(-1)", "temp-", show=False),
        Binding("c", "checkpoint", "save"),
        Binding("l", "toggle_log", "log/lin"),
        Binding("n", "next_layer", "layer"),
        Binding("question_mark,h", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    REDRAW_HZ = 4           # run panel and samples: refreshes a second at most
    PLOT_HZ = 2             # loss and gradient plots: refreshes a second at most

    def __init__(self, trainer=None, follow: str | None = None, **kw):
        super().__init__(**kw)
        if (trainer is None) == (follow is None):
            raise ValueError("DashboardApp needs a trainer or a directory to follow, not both")
        self.trainer = trainer
        self.follow_dir = follow
        self.state = RunState()
        self.log_scale = True
        self.layer = 0
        self.temperature = trainer.temperature if trainer is not None else float("nan")
        self.paused = False
        self.caught_up = False          # --follow: read to the end of what is written
        self.finished = False           # the trainer thread returned
        self.error = ""                 # a traceback, if the trainer raised
        self.stopping = False
        self.trainer_done = threading.Event()
        self._hold = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._want_sample = threading.Event()
        self._want_checkpoint = threading.Event()
        self._consumed = threading.Event()
        self._notes: dict[str, str] = {}
        self._drawn: dict[str, object] = {}
        self._plotted = 0.0

    # ---- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Container(id="grid"):
            with Vertical(id="loss-panel", classes="panel"):
                yield TextLines(id="loss-numbers")
                yield LossPlot(id="loss-plot")
            with Vertical(id="run-panel", classes="panel"):
                yield TextLines(id="run-info")
            with Vertical(id="grad-panel", classes="panel"):
                yield TextLines(id="grad-numbers")
                yield GradBars(id="grad-bars")
                yield GradHeatmap(id="grad-heatmap")
            with Vertical(id="samples-panel", classes="panel"):
                yield RichLog(id="samples", markup=False, highlight=False, wrap=True, auto_scroll=False, min_width=16)
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#loss-panel").border_title = "Loss"
        self.query_one("#samples-panel").border_title = "Samples"
        self.query_one("#samples-panel").border_subtitle = "newest first"
        self._redraw(force=True)
        self.set_interval(1 / self.REDRAW_HZ, self._redraw)
        if self.trainer is not None:
            self._run_trainer()
        else:
            self._follow()

    def on_unmount(self) -> None:
        # however the app ends (q, ctrl+q, a test leaving run_test), the threads must end too
        self.request_stop()

    # ---- messages --------------------------------------------------------------------------

    def on_events(self, message: Events) -> None:
        feed = self.state.feed
        for e in message.events:
            if e.get("event") == "_reset":
                self.state.reset()
            elif not feed(e):
                continue
            if e.get("event") == "warning":
                self._set_note("warning", f"step {e.get('step')}: {e.get('message')}")
            elif e.get("event") == "start" and e.get("notes"):
                self._set_note("start", "; ".join(map(str, e["notes"])))
            if e.get("event") == "checkpoint" and self._notes.pop("checkpoint", None):
                self._set_note("checkpoint", "")
                self.notify(f"checkpoint saved at step {e.get('step')}", timeout=3)
        self._consumed.set()

    def on_note(self, message: Note) -> None:
        self._set_note(message.slot, message.text)

    def on_held(self, message: Held) -> None:
        self.state.versions["run"] += 1

    def on_caught_up(self, message: CaughtUp) -> None:
        self._redraw(force=True)
        self.caught_up = True

    def on_finished(self, message: Finished) -> None:
        self.finished = True
        self.paused = False
        self.error = message.error
        if message.error:
            self._set_note("error", f"training failed: {message.error.strip().splitlines()[-1]}")
        end = self.state.end
        if end and end.get("reason") in ("diverged", "error"):
            self._set_note("error", str(end.get("message") or "the loss diverged"))
        self.refresh_bindings()
        self._redraw(force=True)

    def _set_note(self, slot: str, text: str) -> None:
        if text:
            self._notes[slot] = text
        else:
            self._notes.pop(slot, None)
        with _unless_taken_down(self):
            bar = self.query_one("#message", Static)
            bar.update(Text("\n".join(self._notes.values())))
            bar.set_class(bool(self._notes), "shown")

    # ---- drawing ---------------------------------------------------------------------------

    def _changed(self, key: str, token) -> bool:
        if self._drawn.get(key) == token:
            return False
        self._drawn[key] = token
        return True

    def _redraw(self, force: bool = False) -> None:
        """Repaint what changed: the run panel at REDRAW_HZ, the plots at most PLOT_HZ (``force``: now)."""
        with _unless_taken_down(self):
            self._repaint(force)

    def _repaint(self, force: bool) -> None:
        v = self.state.versions
        now = time.monotonic()
        plots = force or now - self._plotted >= 1 / self.PLOT_HZ
        drew = False
        if plots and self._changed("loss", v["loss"]):
            self._draw_loss()
            drew = True
        if plots and self._changed("grad", (v["grad"], self.layer, self.log_scale)):
            self._draw_grad()
            drew = True
        if drew:
            self._plotted = now
        if self._changed("samples", v["samples"]):
            self._draw_samples()
        info_height = self.query_one("#run-info").size.height
        if self._changed("run", (v["run"], self.paused, self.stopping, self.finished, self.temperature, info_height)):
            self._draw_run()

    def _draw_loss(self) -> None:
        s = self.state
        self.query_one("#loss-numbers", TextLines).update([panels.loss_row(s)])
        vs = list(s.val_curve)
        self.query_one(LossPlot).set_data(s.train_curve.points(), ([x for x, _ in vs], [y for _, y in vs]))

    def _draw_grad(self) -> None:
        import numpy as np
        s = self.state
        panel = self.query_one("#grad-panel")
        numbers = self.query_one("#grad-numbers", TextLines)
        rows = s.rows
        _set(panel, "border_title", "Gradient norm per timestep")
        if not rows:
            numbers.update([[("waiting for the first step", DIM)]])
            return
        li = self.layer % rows
        last = s.grad_last[li]
        numbers.update([panels.grad_row(s, last)])
        self.query_one(GradBars).set_data(last, self.log_scale, timesteps=s.grad_history.width)
        steps, values = s.grad_history.points()
        heat = self.query_one(GradHeatmap)
        heat.set_data(steps, np.stack([m[li] for m in values]) if values else None, self.log_scale)
        if heat.scale:
            lo, hi = heat.scale
            lo_v, hi_v = (10.0 ** lo, 10.0 ** hi) if self.log_scale else (lo, hi)
            scale = "log" if self.log_scale else "linear"
            name = panels.layer_name(s.config, rows, self.layer)
            _set(panel, "border_subtitle", f"{name} · {scale} {fmt_norm(lo_v)} {RAMP_MARKUP} {fmt_norm(hi_v)}")

    def _draw_samples(self) -> None:
        log = self.query_one("#samples", RichLog)
        log.clear()
        for step, temp, text in reversed(self.state.samples):
            log.write(Text(f"step {step} · temperature {temp:.2f}", style="bold #ffb74d"))
            log.write(Text(text))
            log.write(Text(""))
        if not self.state.samples:
            log.write(Text("no samples yet", style="dim"))
        log.scroll_home(animate=False)

    def _status(self) -> str:
        s = self.state
        if self.error:
            return "✗ failed"
        if s.end:
            reason = s.end.get("reason", "ended")
            return {"done": "✓ done", "stopped": "■ stopped", "diverged": "✗ diverged",
                    "error": "✗ error"}.get(reason, reason)
        if self.follow_dir is not None:
            return "following" if s.started else "waiting"
        if self.stopping:
            return "■ stopping"
        if self.paused:
            return "‖ paused"
        if not s.started:
            return "starting"
        if s.steps_seen == 0:
            return "compiling"
        return "▶ training"

    def _draw_run(self) -> None:
        """The Run panel; one too short for all its lines (80x24) moves a few to its border."""
        s = self.state
        c = s.config
        panel, info = self.query_one("#run-panel"), self.query_one("#run-info", TextLines)
        temp = self.temperature if self.trainer is not None else (
            s.samples[-1][1] if s.samples else c.get("temperature", float("nan")))
        where = self.follow_dir if self.follow_dir is not None else self.trainer.out_dir
        rows = panels.run_rows(s, temp, where)
        epoch, subtitle = "", ""
        if len(rows) > info.size.height > 0:
            rows = panels.run_rows(s, temp, where, compact=True)
            epoch, subtitle = panels.run_border(s, where)
        _set(panel, "border_title", f"Run · {self._status()}{epoch}")
        _set(panel, "border_subtitle", subtitle)
        info.update([[(f"{label:<7}", DIM), (value, None)] for label, value in rows])

    # ---- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        live = self.trainer is not None
        running = live and not self.finished and not self.stopping
        if action == "pause":
            return running and not self.paused
        if action == "resume":
            return running and self.paused
        if action in ("checkpoint",):
            return running
        if action in ("sample", "temperature"):
            return live and not self.stopping
        return True

    def action_pause(self) -> None:
        self.paused = True
        self._hold.set()
        self.refresh_bindings()
        self._redraw()

    def action_resume(self) -> None:
        self.paused = False
        self._hold.clear()
        self._wake.set()
        self.refresh_bindings()
        self._redraw()

    def action_sample(self) -> None:
        if self.finished:
            self._sample_after_end()
        elif self.paused:
            self._want_sample.set()
            self._wake.set()
        else:
            self.trainer.request_sample()

    def action_temperature(self, direction: int) -> None:
        t = round(min(3.0, max(0.1, self.temperature + 0.1 * direction)), 2)
        self.temperature = t
        self.trainer.temperature = t
        self._redraw()

    def action_checkpoint(self) -> None:
        self._set_note("checkpoint", "saving a checkpoint" + ("" if self.paused else " after this step") + " ...")
        if self.paused:
            self._want_checkpoint.set()
            self._wake.set()
        else:
            self.trainer.request_checkpoint()

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._redraw(force=True)

    def action_next_layer(self) -> None:
        self.layer = (self.layer + 1) % max(1, self.state.rows)
        self._redraw(force=True)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.request_stop()
        self.exit(0)

    def request_stop(self) -> None:
        """Stop the trainer after its current step (it saves a checkpoint) and the follower."""
        self._stop.set()
        if self.trainer is not None and not self.trainer_done.is_set():
            self.stopping = True
            self.trainer.stop()
        self._hold.clear()
        self._wake.set()
        self._consumed.set()
