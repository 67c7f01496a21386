"""The synthetic tasks through the engine: each formulation learns, eval events carry the metric,
runs resume exactly, and ``rnnjit train --task`` works."""

import json

import numpy as np
import pytest

from rnnjit.cli import main
from rnnjit.train.config import ConfigError, TrainConfig
from rnnjit.train.engine import Trainer
from rnnjit.train.tasks import TASKS


def train(**kw):
    """Train through the engine (no run directory); -> (last eval event, trainer)."""
    base = dict(layers=1, batch=32, eval_every=0, sample_every=0, checkpoint_every=0, threads=1)
    trainer = Trainer(TrainConfig(**{**base, **kw}))
    events = list(trainer.run())
    assert events[-1].kind == "end" and events[-1].reason == "done"
    return [e for e in events if e.kind == "eval"][-1], trainer


def test_registry():
    assert set(TASKS) == {"charlm", "adding", "copy", "captions", "dates"}


# ---- each formulation learns its task on a tiny configuration, far beyond its baseline -----------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_adding_learns(cell):   # many-to-one
    ev, _ = train(task="adding", cell=cell, length=10, hidden=16, steps=1000, lr=0.01)
    assert ev.metrics["baseline"] == pytest.approx(1 / 6)
    assert ev.metrics["mse"] == ev.val_loss < 0.1 * ev.metrics["baseline"]


def test_copy_learns():         # many-to-many with a delay
    ev, _ = train(task="copy", cell="gru", length=5, hidden=64, steps=1000, lr=0.03)
    assert ev.metrics["baseline"] == pytest.approx(10 * np.log(8) / 25)
    assert ev.val_loss < 0.75 * ev.metrics["baseline"]
    assert ev.metrics["accuracy"] > 0.3            # chance is 1/8 per recalled symbol


def test_captions_learns():     # one-to-many
    ev, _ = train(task="captions", cell="gru", hidden=32, steps=600, lr=0.003)
    assert ev.val_loss < 0.3 * ev.metrics["baseline"]
    assert ev.metrics["accuracy"] > 0.4            # exact match on held-out images; chance 1/144


def test_dates_learns():        # encoder-decoder
    ev, _ = train(task="dates", cell="lstm", hidden=48, steps=600, lr=0.01)
    assert ev.val_loss < 0.25 * ev.metrics["baseline"]
    assert ev.metrics["accuracy"] > 0.4            # exact match on days never trained on


# ---- the task interface -----------------------------------------------------------------------

@pytest.mark.parametrize("task", ["adding", "copy", "captions", "dates"])
def test_eval_and_sample(task):
    config = TrainConfig(task=task, cell="gru", hidden=8, layers=1, batch=4, length=6, eval_batches=2)
    t = TASKS[task](config)
    loss = t.train_step()
    assert np.isfinite(loss) and t.tokens_per_step > 0
    val, metrics = t.evaluate()
    assert np.isfinite(val) and "baseline" in metrics
    assert ("mse" in metrics) if task == "adding" else ("accuracy" in metrics)
    text = t.sample(0.8, np.random.default_rng(0))
    assert isinstance(text, str) and ("->" in text or "predicted" in text)
    assert t.model.hidden_grad_norms is not None


def test_resume_continues_the_same_data_stream(tmp_path):
    kw = dict(task="dates", cell="lstm", hidden=8, layers=1, batch=4, eval_every=0, sample_every=0, threads=1)
    straight = [e.loss for e in Trainer(TrainConfig(steps=6, **kw)).run() if e.kind == "step"]
    out = str(tmp_path / "run")
    first = [e.loss for e in Trainer(TrainConfig(steps=3, checkpoint_every=3, **kw), out_dir=out).run()
             if e.kind == "step"]
    rest = [e.loss for e in Trainer(TrainConfig(steps=6, **kw), out_dir=out, resume=True).run()
            if e.kind == "step"]
    np.testing.assert_allclose(first + rest, straight, rtol=1e-6)


def test_bad_length_is_a_config_error():
    with pytest.raises(ConfigError, match="length"):
        TASKS["adding"](TrainConfig(task="adding", length=1))


def test_cuda_graphs_are_for_cuda():
    """--cuda-graphs replays a step's GPU work: asked for on the CPU, one line says so, for the
    config and for every model."""
    from rnnjit.models import CharLM, ConditionedGenerator, Seq2Seq, SequenceClassifier
    with pytest.raises(ConfigError, match="needs --device cuda"):
        TrainConfig(cuda_graphs=True).validate()
    TrainConfig(task="dates", device="cuda", cuda_graphs=True).validate()      # every task has graphs
    for make in (lambda: CharLM(5, 4, cuda_graphs=True), lambda: SequenceClassifier(2, 1, 3, cuda_graphs=True),
                 lambda: ConditionedGenerator(4, 6, 3, cuda_graphs=True), lambda: Seq2Seq(5, 6, 3, cuda_graphs=True)):
        with pytest.raises(ValueError, match="needs device='cuda'"):
            make()


def test_absurd_thread_counts_are_one_line_errors(capsys):
    """A --threads too large for the thread pools' C setters (found by test_fuzz_cli with
    threadpoolctl installed: an OverflowError deep inside it) is refused up front."""
    with pytest.raises(ConfigError, match="--threads must be at most"):
        TrainConfig(threads=10 ** 30).validate()
    assert main(["bench", "--threads", str(10 ** 30)]) == 2
    assert "--threads must be at most" in capsys.readouterr().err


def test_cli_train_task(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--task", "adding", "--length", "12", "--hidden", "8", "--layers", "1", "--steps", "4",
                 "--eval-every", "2", "--sample-every", "2", "--json", "--out", out]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert evals and set(evals[-1]["metrics"]) == {"mse", "baseline"}
    assert any(e["event"] == "sample" and "predicted" in e["text"] for e in events)
    assert main(["train", "--task", "nope", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task" in capsys.readouterr().err
