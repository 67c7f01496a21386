"""The training engine: a loop that knows no screen and says what it does as events.

    trainer = Trainer(config, out_dir="runs/x")
    for event in trainer.run():        # Start, Step, Eval, Sample, Checkpoint, ..., Stopped
        print(event.to_json())

Each step: the task computes the loss and gradients (forward + BPTT), the engine clips them
(reporting the norm before clipping), sets the learning rate and lets the optimizer update the
weights. It writes ``config.json`` and appends every event to ``metrics.jsonl`` in the run
directory, and saves checkpoints atomically.

Guards, each of which stops the run with a one-line ``Stopped`` message and keeps the last good
checkpoint (the event's ``step`` is the last step applied; a divergence message names the step
that failed, one more, and says it stopped at the event's step without applying that one):

- the loss turns NaN or infinite, or climbs above 3x the first loss;
- the gradients hold a NaN or an infinity (the step is not applied; the message gives the step
  number and the gradient norm of every layer, largest first);
- a run file cannot be written (a full disk): reason ``error``, and the previous checkpoint stays
  whole because checkpoints are replaced atomically.

Without clipping, a gradient norm that jumps far above its recent median is reported as a
``Warning`` event that suggests ``--clip``.

A Trainer with a run directory holds its lock (``files.RunLock``) until ``run`` ends: a second
process that tries to write the same directory gets a one-line error. Resuming
(``Trainer(config, out_dir, resume=True)``) loads the checkpoint, deletes temporary
files a killed writer left behind, and cuts ``metrics.jsonl`` back to the checkpoint's step
(see ``files.py``). A run killed before its first checkpoint starts again from step 0.

``stop()`` (from a signal handler or another thread) ends the run cleanly after the current
step, saving a checkpoint; ``pause()``/``resume()`` hold it between steps. The kernels release
the GIL, so a UI thread stays live while this loop runs in a worker thread.
"""

from __future__ import annotations

import errno
import math
import os
import re
import threading
import time
from collections import deque
from typing import Iterator

import numpy as np

from . import events as ev
from .checkpoint import CheckpointError, load_checkpoint, check_values, save_checkpoint
from .config import ConfigError, TrainConfig
from .files import CONFIG, METRICS, MetricsLog, RunLock, logged_at, remove_temporaries, write_json
from .optim import OPTIMIZERS, clip_gradients, gradients

CHECKPOINT = "checkpoint.npz"
EXPLOSION_RATIO = 10.0    # a gradient norm this many times its recent median is "exploding"


class RunFileError(RuntimeError):
    """A run file could not be written (a full disk, a read-only directory): one line."""


def layer_grad_norms(model) -> dict[str, float]:
    """The L2 norm of each layer's gradient (all its parameters together), in float64.

    Parameters are grouped by layer: ``rnn.weight_ih_l1_reverse`` belongs to "rnn layer 1",
    ``decoder.weight`` to "decoder".
    """
    sums: dict[str, float] = {}
    for name, _, g in model.parameters():
        m = re.match(r"^(.*?)\.?(?:weight|bias)_(?:ih|hh)_l(\d+)(?:_reverse)?$", name)
        layer = f"{m.group(1) or 'recurrent'} layer {m.group(2)}" if m else name.rsplit(".", 1)[0]
        g = np.asarray(g, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            sums[layer] = sums.get(layer, 0.0) + float(np.sum(g * g))
    return {k: math.sqrt(v) if v >= 0 else float("nan") for k, v in sums.items()}


def describe_norms(norms: dict[str, float]) -> str:
    """"rnn layer 1 inf, head 3.2e+04, ..." with the largest first (NaN counts as largest)."""
    order = sorted(norms.items(), key=lambda kv: -math.inf if math.isnan(kv[1]) else -kv[1])
    return ", ".join(f"{k} {v:.3g}" for k, v in order)


def make_task(config: TrainConfig, vocab=None):
    from .tasks import TASKS
    if config.task not in TASKS:
        raise ConfigError(f"unknown task {config.task!r}: choose {', '.join(TASKS)}")
    return TASKS[config.task](config, vocab) if vocab is not None else TASKS[config.task](config)


def _set_threads(n: int) -> None:
    if n > 0:
        from ..threads import set_threads
        set_threads(n)


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: str | None = None, resume: bool = False):
        self.config = config.validate()
        self.out_dir = out_dir
        _set_threads(config.threads)
        self.step = 0
        self.first_loss: float | None = None
        self.rng = np.random.default_rng([config.seed, 7])   # samples draw from here
        self.temperature = config.temperature
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._sample_now = threading.Event()
        self._checkpoint_now = threading.Event()
        self.resumed = False
        self.last_saved = -1            # the step of the checkpoint on disk (-1: none yet)
        self.finished = False           # resumed a run that had already ended its last step
        self._evaluated_at = -1         # the step of the last Eval logged
        self.notes: list[str] = []      # said once, in the Start event
        self._resume_dir = out_dir if resume else None
        self._lock = RunLock(out_dir) if out_dir else None     # one writer per run directory
        try:
            self._start(config, out_dir, resume)
        except BaseException:
            self.close()
            raise

    def _start(self, config, out_dir, resume):
        """The model, the optimizer and, resuming, the checkpoint's state."""
        if resume and out_dir:
            gone = remove_temporaries(out_dir)
            if gone:
                self.notes.append(f"removed {len(gone)} temporary file(s) left by a run that was killed mid-write")
            if not os.path.exists(self.checkpoint_path):
                self.notes.append(f"no checkpoint in {out_dir} yet (the run stopped before its first one): "
                                  "starting again from step 0")
                resume = False
        if resume:
            arrays, meta = load_checkpoint(self.checkpoint_path)
            from ..data import Vocab
            vocab = Vocab.from_array(arrays["vocab"]) if "vocab" in arrays else None
            self.task = make_task(config, vocab)
            self._restore(arrays, meta)
            self.last_saved = self.step
            # A run killed after its last checkpoint but before its end event still has its
            # ending to write (the final eval, the end event): only an "end:done" means it is over.
            logged = logged_at(os.path.join(out_dir, METRICS), self.step)
            self.finished = self.step >= config.steps and "end:done" in logged
            if "eval" in logged:
                self._evaluated_at = self.step
        else:
            self.task = make_task(config)
        self.model = self.task.model
        if not resume:
            opt_cls = OPTIMIZERS[config.optimizer]
            kw = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
            self.optimizer = opt_cls(self.model.parameters(), config.lr, **kw)

    def close(self):
        """Give up the run directory (``run`` does when it ends): another process may write it."""
        if self._lock is not None:
            self._lock.release()

    # ---- run directory ----------------------------------------------------------------------

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT) if self.out_dir else None

    def _restore(self, arrays, meta):
        """Put the run back where the checkpoint left it; anything that does not fit the
        configuration is a CheckpointError (one line), never a traceback."""
        try:
            self._restore_unchecked(arrays, meta)
        except CheckpointError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
            what = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not fit this run ({what}): "
                                  "restore it from a copy or start a new run") from None

    def _restore_unchecked(self, arrays, meta):
        c = self.config
        saved = meta["config"]
        for key in ("task", "cell", "hidden", "layers", "embedding", "dtype", "batch", "seq_len", "corpus", "length"):
            if saved.get(key) != getattr(c, key):
                raise CheckpointError(f"checkpoint was made with --{key.replace('_', '-')} {saved.get(key)}, "
                                      f"not {getattr(c, key)}: drop that option to resume, or start a new run")
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        check_values(arrays, self.checkpoint_path, c.dtype)
        try:
            self.task.model.load_state_dict(params)
        except ValueError as e:
            raise CheckpointError(f"checkpoint does not match this configuration: {e}") from None
        opt_cls = OPTIMIZERS[c.optimizer]
        kw = {"momentum": c.momentum} if c.optimizer == "sgd" else {}
        self.optimizer = opt_cls(self.task.model.parameters(), c.lr, **kw)
        if meta.get("optimizer") == c.optimizer:
            for name, value in self.optimizer.state_dict().items():
                if np.shape(value) != np.shape(arrays["optim/" + name]):
                    raise CheckpointError(f"checkpoint {self.checkpoint_path}: optimizer state {name} has the "
                                          "wrong shape: restore it from a copy or start a new run")
            self.optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim/")})
        step, first_loss = meta["step"], meta.get("first_loss")
        if not isinstance(step, int) or not 0 <= step <= 1 << 53:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} has a bad step {step!r}: restore it from a copy")
        if first_loss is not None and not (isinstance(first_loss, (int, float)) and 0 < first_loss < math.inf):
            raise CheckpointError(f"checkpoint {self.checkpoint_path} has a bad first loss: restore it from a copy")
        self.step = step
        self.first_loss = first_loss
        self.rng.bit_generator.state = meta["sample_rng"]
        self.task.load_state({k[5:]: v for k, v in arrays.items() if k.startswith("task/")}, meta["task"])
        self.resumed = True

    def save(self) -> str:
        arrays = {"param/" + k: v for k, v in self.model.state_dict().items()}
        arrays.update({"optim/" + k: v for k, v in self.optimizer.state_dict().items()})
        task_arrays, task_meta = self.task.state()
        arrays.update({"task/" + k: v for k, v in task_arrays.items()})
        if "vocab" in task_arrays:
            arrays["vocab"] = task_arrays["vocab"]
        meta = {"step": self.step, "config": self.config.to_dict(), "optimizer": self.config.optimizer,
                "first_loss": self.first_loss, "sample_rng": self.rng.bit_generator.state, "task": task_meta}
        try:
            path = save_checkpoint(self.checkpoint_path, arrays, meta)
            if getattr(self, "_metrics", None) is not None:
                self._metrics.sync()
        except OSError as e:
            raise RunFileError(self._io_message("the checkpoint", e)) from None
        self.last_saved = self.step
        return path

    def _io_message(self, what: str, e: OSError) -> str:
        kept = (f"the checkpoint of step {self.last_saved} is kept" if self.last_saved >= 0
                else "no checkpoint was written yet")
        full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        todo = "Free some space" if full else f"Make {self.out_dir} a writable directory"
        then = f"continue with: rnnjit train --resume {self.out_dir}" if self.last_saved >= 0 else "run again"
        return f"could not write {what} in {self.out_dir} ({e.strerror or e}) at step {self.step}: {kept}. {todo}, then {then}"

    def _log(self, event: ev.Event):
        if self._metrics is not None:
            try:
                self._metrics.write(event.to_json())
            except OSError as e:
                raise RunFileError(self._io_message(METRICS, e)) from None
        return event

    # ---- control from other threads ---------------------------------------------------------

    def stop(self):
        self._stop.set()
        self._running.set()

    def pause(self):
        self._running.clear()

    def resume(self):
        self._running.set()

    @property
    def paused(self):
        return not self._running.is_set()

    def request_sample(self):
        self._sample_now.set()

    def request_checkpoint(self):
        self._checkpoint_now.set()

    def lr_at(self, step: int) -> float:
        c = self.config
        return c.lr * c.lr_decay ** (step // c.lr_decay_every)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> Iterator[ev.Event]:
        """The events of the run, from Start to Stopped. Nothing raises out of here for trouble
        the user can act on (a full disk, too little memory): it ends with ``Stopped("error")``."""
        self._metrics = None
        try:
            if self.out_dir:
                try:
                    os.makedirs(self.out_dir, exist_ok=True)
                    write_json(os.path.join(self.out_dir, CONFIG), self.config.to_dict())
                    keep = self.step if self._resume_dir else None
                    self._metrics = MetricsLog(os.path.join(self.out_dir, METRICS), keep_through=keep)
                except OSError as e:
                    raise RunFileError(self._io_message("the run files", e)) from None
                if self._metrics.mended:
                    self.notes.append(self._metrics.mended)
            yield from self._loop()
        except RunFileError as e:
            yield ev.Stopped(self.step, "error", str(e))
        except MemoryError:
            yield ev.Stopped(self.step, "error", f"out of memory at step {self.step}: make the model or the "
                                                 "batch smaller (--hidden, --layers, --batch, --seq-len)")
        finally:
            if self._metrics is not None:
                self._metrics.close()
            self.close()

    def _loop(self):
        c, log = self.config, self._log
        yield log(ev.Start(self.step, c.steps, c.to_dict(), int(self.model.num_parameters()),
                           getattr(getattr(self.task, "vocab", None), "size", 0), self.resumed, list(self.notes)))
        t_start = time.perf_counter()
        reason, message = "done", ""
        recent_norms: deque = deque(maxlen=50)
        warned_at = -(1 << 30)
        while self.step < c.steps:
            while not self._running.is_set():  # paused: still answer "sample now" and "save now"
                self._running.wait(0.05)
                yield from self._requests(log, paused=True)
            if self._stop.is_set():
                reason = "stopped"
                break
            t0 = time.perf_counter()
            loss = self.task.train_step()
            if self.first_loss is None and math.isfinite(loss):
                self.first_loss = loss
            if not math.isfinite(loss) or loss > 3 * self.first_loss:
                reason = "diverged"
                message = (f"loss {loss:.4g} at step {self.step + 1} is "
                           f"{'not finite' if not math.isfinite(loss) else 'above 3x the first loss'}: "
                           f"stopped at step {self.step} without applying step {self.step + 1}; {self._kept()}. "
                           "Gradient norm per layer: "
                           f"{describe_norms(layer_grad_norms(self.model))}. Try a lower --lr or --clip")
                break
            norm, clipped = clip_gradients(gradients(self.model.parameters()), c.clip, c.clip_mode)
            if not math.isfinite(norm):
                reason = "diverged"
                message = (f"the gradient norm is {norm} at step {self.step + 1} (loss {loss:.4g}): stopped at step "
                           f"{self.step} without applying it; {self._kept()}. Gradient norm per layer: "
                           f"{describe_norms(layer_grad_norms(self.model))}. "
                           + ("Try --clip 5 or a lower --lr" if c.clip == 0 else "Try a lower --lr"))
                break
            if c.clip == 0 and len(recent_norms) >= 20 and self.step - warned_at >= 100:
                median = float(np.median(recent_norms))
                if norm > EXPLOSION_RATIO * median:
                    warned_at = self.step
                    yield log(ev.Warning(self.step + 1, f"the gradient norm {norm:.3g} at step {self.step + 1} is "
                                                        f"{norm / median:.0f}x its recent median: the gradients are "
                                                        "exploding. Clip them with --clip 5"))
            recent_norms.append(norm)
            self.optimizer.lr = self.lr_at(self.step)
            self.optimizer.step()
            self.step += 1
            dt = time.perf_counter() - t0
            hgn = self.model.hidden_grad_norms
            yield log(ev.Step(self.step, loss, loss / math.log(2), norm, clipped,
                              [] if hgn is None else hgn.tolist(), self.optimizer.lr,
                              self.task.tokens_per_step / dt, time.perf_counter() - t_start,
                              getattr(self.task, "epoch", 0)))
            if c.eval_every and self.step % c.eval_every == 0:
                yield log(self.evaluate())
            if c.sample_every and self.step % c.sample_every == 0:
                self._sample_now.set()
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self._checkpoint_now.set()
            yield from self._requests(log)
        if reason != "diverged":
            if reason == "done" and self._evaluated_at != self.step and self.step > 0:
                yield log(self.evaluate())
            if self.out_dir and self.last_saved != self.step:
                yield log(ev.Checkpoint(self.step, self.save()))
        yield log(ev.Stopped(self.step, reason, message))

    def _kept(self) -> str:
        if not self.out_dir:
            return "nothing was saved (no run directory)"
        if self.last_saved < 0:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept"

    def _requests(self, log, paused=False):
        """Samples and checkpoints that are due or were asked for (between steps, or while paused)."""
        if self._sample_now.is_set():
            self._sample_now.clear()
            s = self.sample_event()
            if s is not None:
                yield log(s)
        if self._checkpoint_now.is_set():
            self._checkpoint_now.clear()
            if self.out_dir:
                yield log(ev.Checkpoint(self.step, self.save()))

    def evaluate(self) -> ev.Eval:
        val, metrics = self.task.evaluate()
        metrics = dict(metrics)
        bpc = metrics.pop("val_bpc", val / math.log(2))
        self._evaluated_at = self.step
        return ev.Eval(self.step, val, bpc, metrics)

    def sample_event(self, length: int | None = None) -> ev.Sample | None:
        text = self.task.sample(self.temperature, self.rng, length)
        return None if text is None else ev.Sample(self.step, text, self.temperature)
