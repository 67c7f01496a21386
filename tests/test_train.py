"""The engine: events, run directory, checkpoints, resume bit for bit, the divergence guard."""

import json
import math
import os

import numpy as np
import pytest

from rnnjit.train import TrainConfig, Trainer
from rnnjit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40)


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


def tiny(corpus, **kw):
    base = dict(corpus=corpus, hidden=12, layers=2, seq_len=8, batch=4, steps=10, eval_every=5,
                sample_every=5, sample_length=20, checkpoint_every=0, dropout=0.2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def read_events(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_run_writes_events_config_and_checkpoint(corpus, tmp_path):
    out = str(tmp_path / "run")
    events = list(Trainer(tiny(corpus), out_dir=out).run())
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and events[-1].reason == "done"
    assert kinds.count("step") == 10 and kinds.count("eval") == 2 and kinds.count("sample") == 2
    assert "checkpoint" in kinds
    logged = read_events(out)
    assert [e["event"] for e in logged] == kinds
    step = next(e for e in logged if e["event"] == "step")
    for field in ("step", "loss", "grad_norm", "hidden_grad_norms", "lr", "tokens_per_s"):
        assert field in step
    assert np.array(step["hidden_grad_norms"]).shape == (2, 8)  # (layers, T)
    ev = next(e for e in logged if e["event"] == "eval")
    assert ev["val_bpc"] == pytest.approx(ev["val_loss"] / math.log(2))
    sample = next(e for e in logged if e["event"] == "sample")
    assert isinstance(sample["text"], str) and sample["temperature"] == 0.8
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["hidden"] == 12
    arrays, meta = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert meta["step"] == 10 and "vocab" in arrays and any(k.startswith("optim/") for k in arrays)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_resume_is_bit_for_bit(corpus, tmp_path, cell):
    whole = [e.loss for e in Trainer(tiny(corpus, cell=cell), out_dir=str(tmp_path / "a")).run()
             if e.kind == "step"]
    b = str(tmp_path / "b")
    first = [e.loss for e in Trainer(tiny(corpus, cell=cell, steps=4), out_dir=b).run() if e.kind == "step"]
    second = [e.loss for e in Trainer(tiny(corpus, cell=cell), out_dir=b, resume=True).run() if e.kind == "step"]
    assert len(first) == 4 and len(second) == 6
    assert first + second == whole  # exactly equal, not approximately


def test_loss_falls(corpus, tmp_path):
    losses = [e.loss for e in Trainer(tiny(corpus, steps=80, lr=1e-2, hidden=32, layers=1, dropout=0.0, eval_every=0, sample_every=0),
                                      out_dir=str(tmp_path / "r")).run() if e.kind == "step"]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_divergence_guard_keeps_last_good_checkpoint(corpus, tmp_path):
    out = str(tmp_path / "run")
    list(Trainer(tiny(corpus, steps=3, eval_every=0, sample_every=0), out_dir=out).run())
    before = open(os.path.join(out, "checkpoint.npz"), "rb").read()
    trainer = Trainer(tiny(corpus, steps=6, eval_every=0, sample_every=0), out_dir=out, resume=True)
    trainer.model.params["decoder.weight"][...] = np.nan  # poison the weights: the loss turns NaN
    events = list(trainer.run())
    end = events[-1]
    assert end.reason == "diverged" and "not finite" in end.message and "\n" not in end.message
    assert not any(e.kind == "checkpoint" for e in events)
    assert open(os.path.join(out, "checkpoint.npz"), "rb").read() == before


def test_explosion_guard(corpus, tmp_path):
    trainer = Trainer(tiny(corpus, steps=5, eval_every=0, sample_every=0), out_dir=str(tmp_path / "r"))
    real = trainer.task.train_step
    calls = []

    def exploding():
        loss = real()
        calls.append(loss)
        return loss if len(calls) < 3 else 10 * calls[0]

    trainer.task.train_step = exploding
    events = list(trainer.run())
    assert events[-1].reason == "diverged" and "3x the first loss" in events[-1].message
    assert trainer.step == 2


def test_stop_saves_a_checkpoint(corpus, tmp_path):
    out = str(tmp_path / "run")
    trainer = Trainer(tiny(corpus, steps=100, eval_every=0, sample_every=0), out_dir=out)
    events = []
    for e in trainer.run():
        events.append(e)
        if e.kind == "step" and e.step == 3:
            trainer.stop()
    assert events[-1].reason == "stopped" and trainer.step == 3
    _, meta = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert meta["step"] == 3


def test_clipping_is_reported(corpus, tmp_path):
    events = [e for e in Trainer(tiny(corpus, clip=1e-3, steps=3, eval_every=0, sample_every=0),
                                 out_dir=str(tmp_path / "r")).run() if e.kind == "step"]
    assert all(e.clipped and e.grad_norm > 1e-3 for e in events)


def test_checkpoint_is_atomic_and_corruption_is_one_line(tmp_path):
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, {"a": np.arange(3)}, {"step": 1})
    assert [f for f in os.listdir(tmp_path)] == ["c.npz"]  # no temp file left behind
    with open(path, "r+b") as f:
        f.truncate(40)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "corrupt" in str(e.value) and "\n" not in str(e.value)


def test_resume_refuses_an_incompatible_configuration(corpus, tmp_path):
    out = str(tmp_path / "run")
    list(Trainer(tiny(corpus, steps=2, eval_every=0, sample_every=0), out_dir=out).run())
    with pytest.raises(CheckpointError, match="--hidden 12"):
        Trainer(tiny(corpus, hidden=16), out_dir=out, resume=True)


def test_paused_run_answers_sample_and_checkpoint_requests(corpus, tmp_path):
    import threading
    out = str(tmp_path / "run")
    trainer = Trainer(tiny(corpus, steps=6, eval_every=0, sample_every=0), out_dir=out)
    seen = []
    for e in trainer.run():
        seen.append(e.kind)
        if e.kind == "step" and e.step == 2:
            trainer.pause()
            trainer.request_sample()
            trainer.request_checkpoint()
            threading.Timer(0.5, trainer.resume).start()
    i = seen.index("step")
    assert seen[i + 2:i + 4] == ["sample", "checkpoint"]  # answered at step 2, before step 3
    assert seen.count("step") == 6 and seen[-1] == "end"


def test_a_second_trainer_in_one_process_is_told_so(tmp_path):
    """The run directory's lock says whose it is: this process's own unclosed Trainer, or
    another process (which the directory's flock tells; here a child holding it)."""
    import subprocess
    import sys
    from rnnjit.train.files import RunBusyError
    config = TrainConfig(task="adding", hidden=4, layers=1, steps=2, batch=2, length=5)
    out = str(tmp_path / "run")
    first = Trainer(config, out_dir=out)
    with pytest.raises(RunBusyError) as e:
        Trainer(config, out_dir=os.path.join(out, "."))          # the same directory by another name
    assert str(e.value) == (f"{out}/. is already open in this process (another Trainer): "
                            "close() it or let its run() end")
    first.close()
    Trainer(config, out_dir=out).close()                           # free again once closed
    code = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, out], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "held\n"
        with pytest.raises(RunBusyError, match=r"^\S+ is being written by another rnnjit process: wait"):
            Trainer(config, out_dir=out)
    finally:
        child.communicate("")


@pytest.mark.parametrize("field, value, message", [
    ("seed", None, "--seed must be an integer, got None"),
    ("hidden", "16", "--hidden must be an integer, got '16'"),
    ("hidden", True, "--hidden must be an integer, got True"),
    ("dropout", "0.5", "--dropout must be a number, got '0.5'"),
    ("clip", None, "--clip must be a number, got None"),
    ("cell", 3, "--cell must be a string, got 3"),
    ("cuda_graphs", 1, "--cuda-graphs must be True or False, got 1"),
])
def test_config_fields_of_the_wrong_type_are_one_line_errors(field, value, message):
    from rnnjit.train.config import ConfigError
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value}).validate()
    assert str(e.value) == message


def test_config_takes_numpy_numbers_and_paths_as_python_values(tmp_path):
    import pathlib
    c = TrainConfig(hidden=np.int64(16), lr=np.float32(0.5), clip=0, corpus=pathlib.Path("a.txt")).validate()
    assert (c.hidden, c.lr, c.clip, c.corpus) == (16, 0.5, 0.0, "a.txt")
    assert [type(v) for v in (c.hidden, c.lr, c.clip)] == [int, float, float]
    json.dumps(c.to_dict())                                         # config.json can hold them
