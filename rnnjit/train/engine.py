"""The training engine: a loop that knows no screen and says what it does as events.

    trainer = Trainer(config, out_dir="runs/x")
    for event in trainer.run():        # Start, Step, Eval, Sample, Checkpoint, ..., Stopped
        print(event.to_json())

Each step: the task computes the loss and gradients (forward + BPTT), the engine clips them
(reporting the norm before clipping), sets the learning rate and lets the optimizer update the
weights. It writes ``config.json`` and appends every event to ``metrics.jsonl`` in the run
directory, and saves checkpoints atomically.

A guard stops a run whose loss turns NaN or infinite, or climbs above 3x the first loss: the
bad step is not applied and no checkpoint is written, so the last good checkpoint is kept.

``stop()`` (from a signal handler or another thread) ends the run cleanly after the current
step, saving a checkpoint; ``pause()``/``resume()`` hold it between steps. The kernels release
the GIL, so a UI thread stays live while this loop runs in a worker thread.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Iterator

import numpy as np

from . import events as ev
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .optim import OPTIMIZERS, clip_gradients

CHECKPOINT = "checkpoint.npz"


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
        arrays = meta = None
        if resume:
            arrays, meta = load_checkpoint(self.checkpoint_path)
            from ..data import Vocab
            vocab = Vocab.from_array(arrays["vocab"]) if "vocab" in arrays else None
            self.task = make_task(config, vocab)
            self._restore(arrays, meta)
        else:
            self.task = make_task(config)
        self.model = self.task.model
        if not resume:
            opt_cls = OPTIMIZERS[config.optimizer]
            kw = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
            self.optimizer = opt_cls(self.model.parameters(), config.lr, **kw)

    # ---- run directory ----------------------------------------------------------------------

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT) if self.out_dir else None

    def _restore(self, arrays, meta):
        c = self.config
        saved = meta["config"]
        for key in ("task", "cell", "hidden", "layers", "embedding", "dtype", "batch", "seq_len", "corpus", "length"):
            if saved.get(key) != getattr(c, key):
                raise CheckpointError(f"checkpoint was made with --{key.replace('_', '-')} {saved.get(key)}, "
                                      f"not {getattr(c, key)}: drop that option to resume, or start a new run")
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        try:
            self.task.model.load_state_dict(params)
        except ValueError as e:
            raise CheckpointError(f"checkpoint does not match this configuration: {e}") from None
        opt_cls = OPTIMIZERS[c.optimizer]
        kw = {"momentum": c.momentum} if c.optimizer == "sgd" else {}
        self.optimizer = opt_cls(self.task.model.parameters(), c.lr, **kw)
        if meta.get("optimizer") == c.optimizer:
            self.optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim/")})
        self.step = int(meta["step"])
        self.first_loss = meta.get("first_loss")
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
        return save_checkpoint(self.checkpoint_path, arrays, meta)

    def _log(self, event: ev.Event):
        if self._metrics is not None:
            self._metrics.write(event.to_json() + "\n")
            self._metrics.flush()
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
        c = self.config
        self._metrics = None
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
            with open(os.path.join(self.out_dir, "config.json"), "w") as f:
                json.dump(c.to_dict(), f, indent=2)
            self._metrics = open(os.path.join(self.out_dir, "metrics.jsonl"), "a", encoding="utf-8")
        try:
            yield from self._loop()
        finally:
            if self._metrics is not None:
                self._metrics.close()

    def _loop(self):
        c, log = self.config, self._log
        yield log(ev.Start(self.step, c.steps, c.to_dict(), int(self.model.num_parameters()),
                           getattr(getattr(self.task, "vocab", None), "size", 0), self.resumed))
        t_start = time.perf_counter()
        reason, message = "done", ""
        last_saved = self.step if self.resumed else -1
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
                           f"stopped; the last good checkpoint is kept. Try a lower --lr or --clip")
                break
            grads = [g for _, _, g in self.model.parameters()]
            norm, clipped = clip_gradients(grads, c.clip, c.clip_mode)
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
            for e in self._requests(log):
                if e.kind == "checkpoint":
                    last_saved = self.step
                yield e
        if reason != "diverged":
            if reason == "done" and not (c.eval_every and self.step % c.eval_every == 0) and self.step > 0:
                yield log(self.evaluate())
            if self.out_dir and last_saved != self.step:
                yield log(ev.Checkpoint(self.step, self.save()))
        yield log(ev.Stopped(self.step, reason, message))

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
        return ev.Eval(self.step, val, bpc, metrics)

    def sample_event(self, length: int | None = None) -> ev.Sample | None:
        text = self.task.sample(self.temperature, self.rng, length)
        return None if text is None else ev.Sample(self.step, text, self.temperature)
