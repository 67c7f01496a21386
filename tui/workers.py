"""The threads that feed the dashboard its events, one per source (a mixin of ``DashboardApp``).

* ``_run_trainer``: iterates ``Trainer.run()`` (the kernels release the GIL, so the screen stays
  live) and posts the events in batches at most every ``FLUSH_S`` seconds with ``post_message``,
  which never blocks the trainer. Pausing holds it between two events (``_held``), where "sample
  now" and "save checkpoint" are served from this thread, the model being idle.
* ``_follow``: tails a run directory's ``metrics.jsonl`` (``--follow``), with back-pressure so a
  long file is read no faster than the screen digests it, and notes about a missing, cut-off or
  damaged file.

Both talk to the app only through messages (``messages.py``) and ``threading.Event`` flags that
the app sets (``_hold``, ``_stop``, ``_wake``, ``_want_sample``, ``_want_checkpoint``,
``_consumed``), so the screen's state is only ever touched by the app's own thread.
"""

from __future__ import annotations

import os
import time
import traceback

from textual import work

from .messages import CaughtUp, Events, Finished, Held, Note, as_dict
from .sources import METRICS, JsonlTail, describe_missing


class Sources:
    """The worker threads of ``DashboardApp`` (which holds the flags and ``trainer``/``follow_dir``)."""

    FLUSH_S = 0.1           # the trainer thread posts its events at most this often
    FOLLOW_POLL_S = 0.2     # --follow: how often to look for new lines
    PARTIAL_GRACE_S = 0.5   # --follow: how long a line may stay unfinished before it is reported
    FOLLOW_BATCH = 2000     # --follow: events per message while catching up

    # ---- the training thread ---------------------------------------------------------------

    @work(thread=True, exit_on_error=False, name="trainer", group="source")
    def _run_trainer(self) -> None:
        trainer = self.trainer
        pending: list[dict] = []
        last = time.monotonic()

        def flush():
            nonlocal pending, last
            if pending:
                self.post_message(Events(pending))
                pending = []
            last = time.monotonic()

        error = ""
        try:
            if getattr(trainer, "resumed", False) and trainer.out_dir:
                self._replay_history(os.path.join(trainer.out_dir, METRICS))
            for event in trainer.run():
                # a shallow dict: the engine builds a fresh list for each step's norms, so nothing
                # here is shared with the kernels, and to_dict()'s deep copy would cost the trainer
                pending.append(as_dict(event))
                if event.kind != "step" or time.monotonic() - last >= self.FLUSH_S:
                    flush()
                if self._hold.is_set() and not self._stop.is_set():
                    flush()
                    self._held()
        except Exception as e:   # shown on screen and printed on exit, never a crash mid-screen
            from rnnjit.cli import internal_error
            error = traceback.format_exc() if os.environ.get("RNNJIT_DEBUG") else internal_error(e)
        finally:
            flush()
            self.trainer_done.set()
            self.post_message(Finished(error))

    def _replay_history(self, path: str) -> None:
        """A resumed run: show what it did before (its metrics.jsonl) under what it does now."""
        tail = JsonlTail(path)
        while True:
            events = tail.poll()
            if not events:
                break
            for i in range(0, len(events), self.FOLLOW_BATCH):
                self.post_message(Events(events[i:i + self.FOLLOW_BATCH]))

    def _held(self) -> None:
        """Hold the trainer between two events; serve samples and checkpoints meanwhile."""
        from rnnjit.train.events import Checkpoint
        trainer = self.trainer
        self.post_message(Held(True))
        while self._hold.is_set() and not self._stop.is_set():
            self._wake.clear()
            try:   # a failure here is reported, and training goes on when resumed
                if self._want_sample.is_set():
                    self._want_sample.clear()
                    s = trainer.sample_event()
                    if s is not None:
                        self.post_message(Events([s.to_dict()]))
                if self._want_checkpoint.is_set():
                    self._want_checkpoint.clear()
                    if trainer.out_dir:
                        self.post_message(Events([Checkpoint(trainer.step, trainer.save()).to_dict()]))
            except Exception as e:
                self.post_message(Note("checkpoint", f"failed while paused: {type(e).__name__}: {e}"))
            self._wake.wait(0.5)
        self.post_message(Held(False))

    @work(thread=True, exit_on_error=False, name="sampler", group="sampler", exclusive=True)
    def _sample_after_end(self) -> None:
        """Once training has ended the model is idle: samples come straight from it."""
        try:
            s = self.trainer.sample_event()
        except Exception as e:
            self.post_message(Note("sample", f"sample failed: {e}"))
            return
        if s is not None:
            self.post_message(Events([s.to_dict()]))

    # ---- following a run directory ---------------------------------------------------------

    @work(thread=True, exit_on_error=False, name="follow", group="source")
    def _follow(self) -> None:
        run_dir = self.follow_dir
        tail = JsonlTail(os.path.join(run_dir, METRICS))
        notes: dict[str, str] = {}

        def note(slot, text):
            if notes.get(slot, "") != text:
                notes[slot] = text
                self.post_message(Note(slot, text))

        idle_since = None
        announced = False
        while not self._stop.is_set():
            missing = describe_missing(run_dir)
            note("source", missing or "")
            events = [] if missing else tail.poll()
            if tail.reset:
                self.post_message(Events([{"event": "_reset"}]))
                note("partial", "")
                note("bad", "")
            for i in range(0, len(events), self.FOLLOW_BATCH):
                self._consumed.clear()
                self.post_message(Events(events[i:i + self.FOLLOW_BATCH]))
                # back-pressure: a long file is read no faster than the screen digests it
                while not self._consumed.wait(0.2) and not self._stop.is_set():
                    pass
            if tail.bad_lines:
                n, first = len(tail.bad_lines), tail.bad_lines[0]
                note("bad", f"{METRICS}: {n} line{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not "
                            f"a readable event skipped (line {first}{', ...' if n > 1 else ''}): the run was cut "
                            f"off mid-line, or the file was changed by hand")
            if events:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            waited = now - idle_since >= self.PARTIAL_GRACE_S
            if tail.partial and waited:
                note("partial", f"{METRICS} ends in the middle of line {tail.lineno + 1}: the run was cut off "
                                f"while writing it (or is still writing). Showing the {tail.lineno} complete lines.")
            elif not tail.partial:
                note("partial", "")
            if not announced and (missing or not tail.partial or waited):
                announced = True
                self.post_message(CaughtUp())
            self._stop.wait(self.FOLLOW_POLL_S)
