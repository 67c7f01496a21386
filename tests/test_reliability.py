"""Runs lose nothing: atomic run files, a full disk, NaNs, exploding gradients, determinism.

The SIGKILL harness is in test_crashes.py; the property-based tests of bad input are in
test_fuzz_cli.py and test_fuzz_checkpoint.py; memory over long runs in test_long_runs.py.
"""

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from rnnjit.cli import main
from rnnjit.train import TrainConfig, Trainer
from rnnjit.train import checkpoint as ckpt
from rnnjit.train.engine import layer_grad_norms
from rnnjit.train.files import MetricsLog, RunFileWarning, atomic_write, read_metrics

from test_train import corpus  # noqa: F401  (the fixture: a small text file)

TIMING = ("tokens_per_s", "elapsed")   # the only fields allowed to differ between identical runs


def tiny(corpus, **kw):
    base = dict(corpus=corpus, hidden=12, layers=2, seq_len=8, batch=4, steps=10, eval_every=5,
                sample_every=5, sample_length=20, checkpoint_every=0, dropout=0.2, seed=3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def untimed(events):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in events
            if e["event"] in ("step", "eval", "sample")]


# ---- run files ----------------------------------------------------------------------------------

def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "step", "step": 1}\n{"event": "step", "step": 2}\n{"event": "st')
    with pytest.warns(RunFileWarning, match="last line .* incomplete"):
        events = read_metrics(str(path))
    assert [e["step"] for e in events] == [1, 2]
    path.write_text('{"event": "step", "step": 1}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_metrics(str(path))) == 1


def test_one_writer_per_run_directory(corpus, tmp_path, capsys):  # noqa: F811
    """While a trainer holds a run directory, a second one (here, or another process: the same
    lock) is refused in one line before it touches anything; when the first run ends, the
    directory is free again and resumes."""
    from rnnjit.train.files import RunBusyError
    out = str(tmp_path / "run")
    first = Trainer(tiny(corpus, steps=4, checkpoint_every=2), out_dir=out)
    events = first.run()
    while next(events).kind != "checkpoint":       # the first run is mid-way, its checkpoint written
        pass
    with pytest.raises(RunBusyError, match="already open in this process"):   # another process: test_train.py
        Trainer(tiny(corpus, steps=6), out_dir=out, resume=True)
    assert main(["train", "--resume", out, "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "already open in this process" in err and len(err.strip().splitlines()) == 1
    code = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    print('busy')")
    assert subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True).stdout == "busy\n"
    assert list(events)[-1].reason == "done"
    resumed = Trainer(tiny(corpus, steps=6), out_dir=out, resume=True)
    assert resumed.step == 4 and list(resumed.run())[-1].reason == "done"


def test_resumed_log_is_mended_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"event": "start", "step": 0}] + [{"event": "step", "step": i} for i in range(1, 8)]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"event": "step", "ste')
    log = MetricsLog(str(path), keep_through=5)
    assert "torn" in log.mended and "dropped 2 lines after step 5" in log.mended
    log.write(json.dumps({"event": "step", "step": 6}))
    log.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [e["step"] for e in read_metrics(str(path))] == [0, 1, 2, 3, 4, 5, 6]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = str(tmp_path / "f.bin")
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, fail)
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temporary file left behind


def test_checkpoint_detects_flipped_data(tmp_path):
    path = str(tmp_path / "c.npz")
    ckpt.save_checkpoint(path, {"w": np.arange(1000, dtype=np.float32)}, {"step": 1})
    arrays, meta = ckpt.load_checkpoint(path)
    assert meta == {"step": 1}
    data = bytearray(open(path, "rb").read())
    at = data.find(np.arange(10, 20, dtype=np.float32).tobytes())
    data[at] ^= 0x10
    open(path, "wb").write(bytes(data))
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(e.value)


# ---- a full disk --------------------------------------------------------------------------------

def test_full_disk_stops_with_a_clear_error_and_keeps_the_checkpoint(corpus, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    list(Trainer(tiny(corpus, steps=4), out_dir=out).run())
    before = open(os.path.join(out, "checkpoint.npz"), "rb").read()

    real_savez = np.savez

    def full(f, **arrays):
        real_savez(f, **{k: v for k, v in list(arrays.items())[:2]})  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", full)
    events = list(Trainer(tiny(corpus, steps=8, checkpoint_every=2), out_dir=out, resume=True).run())
    end = events[-1]
    assert end.kind == "end" and end.reason == "error"
    assert "No space left on device" in end.message and "checkpoint of step 4 is kept" in end.message
    assert "--resume" in end.message and "\n" not in end.message
    assert open(os.path.join(out, "checkpoint.npz"), "rb").read() == before
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    monkeypatch.undo()
    resumed = list(Trainer(tiny(corpus, steps=8), out_dir=out, resume=True).run())
    assert resumed[0].step == 4 and resumed[-1].reason == "done"


def test_full_disk_for_real_in_the_cli(corpus, tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the kernel refuse the checkpoint's write, as a full
    disk would: the CLI exits 1 with one line, and the previous checkpoint loads."""
    out = str(tmp_path / "run")
    small = ["--hidden", "24", "--layers", "1", "--seq-len", "8", "--batch", "2", "--eval-every", "0",
             "--sample-every", "0", "--corpus", corpus, "--threads", "1"]
    assert main(["train", "--steps", "3", "--out", out, "--json"] + small) == 0
    before = open(os.path.join(out, "checkpoint.npz"), "rb").read()
    limit = os.path.getsize(os.path.join(out, "metrics.jsonl")) + 20000   # room for the log, not a checkpoint
    assert len(before) > limit
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from rnnjit.cli import main
        sys.exit(main(["train", "--resume", {out!r}, "--steps", "6", "--checkpoint-every", "1"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "could not write the checkpoint" in proc.stderr, proc.stderr
    assert "checkpoint of step 3 is kept" in proc.stderr and "Traceback" not in proc.stderr
    assert open(os.path.join(out, "checkpoint.npz"), "rb").read() == before
    assert main(["train", "--resume", out, "--steps", "5", "--json"]) == 0


# ---- numerical trouble --------------------------------------------------------------------------

def test_nan_gradient_stops_at_that_step_with_norms_per_layer(corpus, tmp_path):
    out = str(tmp_path / "run")
    trainer = Trainer(tiny(corpus, steps=10, checkpoint_every=3), out_dir=out)
    step = trainer.task.train_step

    def poisoned():
        loss = step()
        if trainer.step == 6:   # the 7th step: a NaN in the second recurrent layer's gradient
            trainer.model.rnn.grads["weight_hh_l1"][0, 0] = np.nan
        return loss

    trainer.task.train_step = poisoned
    weights = None
    events = []
    for e in trainer.run():
        events.append(e)
        if e.kind == "step" and e.step == 6:
            weights = trainer.model.state_dict()
    end = events[-1]
    assert end.reason == "diverged" and end.step == 6
    assert "at step 7" in end.message and "nan" in end.message
    assert end.message.index("rnn layer 1 nan") < end.message.index("rnn layer 0")  # largest first
    assert "last good checkpoint (step 6) is kept" in end.message and "\n" not in end.message
    for k, v in trainer.model.state_dict().items():   # the bad step was not applied
        np.testing.assert_array_equal(v, weights[k])
    _, meta = ckpt.load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert meta["step"] == 6


def test_nan_loss_names_the_step_and_keeps_the_checkpoint(corpus, tmp_path):
    out = str(tmp_path / "run")
    trainer = Trainer(tiny(corpus, steps=10, checkpoint_every=2), out_dir=out)
    step = trainer.task.train_step
    trainer.task.train_step = lambda: step() if trainer.step < 5 else float("nan")
    end = list(trainer.run())[-1]
    assert end.reason == "diverged" and "loss nan at step 6" in end.message
    assert "Gradient norm per layer" in end.message and "(step 4) is kept" in end.message
    assert ckpt.load_checkpoint(os.path.join(out, "checkpoint.npz"))[1]["step"] == 4


def test_layer_grad_norms_group_parameters_by_layer(corpus):
    trainer = Trainer(tiny(corpus, layers=2))
    trainer.task.train_step()
    norms = layer_grad_norms(trainer.model)
    assert set(norms) == {"embedding", "rnn layer 0", "rnn layer 1", "decoder"}
    total = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for _, _, g in trainer.model.parameters()))
    assert np.sqrt(sum(v * v for v in norms.values())) == pytest.approx(total)


def test_exploding_gradients_without_clipping_suggest_clip(corpus, tmp_path):
    trainer = Trainer(tiny(corpus, steps=40, clip=0.0, eval_every=0, sample_every=0, dropout=0.0))
    step = trainer.task.train_step

    def exploding():
        loss = step()
        if trainer.step == 30:
            for _, _, g in trainer.model.parameters():
                g *= 1e4
        return loss

    trainer.task.train_step = exploding
    events = list(trainer.run())
    warns = [e for e in events if e.kind == "warning"]
    assert len(warns) == 1 and warns[0].step == 31 and "--clip" in warns[0].message
    clipped = Trainer(tiny(corpus, steps=40, clip=5.0, eval_every=0, sample_every=0))
    assert not [e for e in clipped.run() if e.kind == "warning"]   # clipping already handles it


def test_cli_says_diverged_in_one_line(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    code = main(["train", "--corpus", corpus, "--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2",
                 "--lr", "1e6", "--clip", "0", "--optimizer", "sgd", "--steps", "50", "--out", out,
                 "--eval-every", "0", "--sample-every", "0", "--json", "--cell", "rnn-relu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "stopped" in err and "at step" in err, err


# ---- determinism --------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["charlm", "adding", "copy", "dates"])
def test_same_seed_same_metrics_bit_for_bit(corpus, tmp_path, task):
    kw = dict(task=task, steps=6, length=6, seq_len=8, hidden=8)
    runs = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        list(Trainer(tiny(corpus, **kw), out_dir=out).run())
        runs.append(untimed(read_metrics(os.path.join(out, "metrics.jsonl"))))
    assert len(runs[0]) >= 6 and runs[0] == runs[1]
    other = str(tmp_path / "c")
    list(Trainer(tiny(corpus, seed=4, **kw), out_dir=other).run())
    assert untimed(read_metrics(os.path.join(other, "metrics.jsonl"))) != runs[0]


@pytest.mark.parametrize("task", ["adding", "copy", "captions", "dates"])
def test_stopped_and_resumed_equals_uninterrupted(corpus, tmp_path, task):
    kw = dict(task=task, length=6, hidden=8, eval_every=3, sample_every=3)
    whole = str(tmp_path / "whole")
    list(Trainer(tiny(corpus, steps=8, **kw), out_dir=whole).run())
    split = str(tmp_path / "split")
    list(Trainer(tiny(corpus, steps=4, **kw), out_dir=split).run())
    list(Trainer(tiny(corpus, steps=8, **kw), out_dir=split, resume=True).run())
    a = untimed(read_metrics(os.path.join(whole, "metrics.jsonl")))
    b = untimed(read_metrics(os.path.join(split, "metrics.jsonl")))
    steps = [e for e in a if e["event"] == "step"]
    assert len(steps) == 8 and steps == [e for e in b if e["event"] == "step"]
    # the split run has one more eval (at its end, step 4); every other eval and sample is the same
    assert [e for e in a if e["event"] != "step"] == [e for e in b if e["event"] != "step" and
                                                     not (e["event"] == "eval" and e["step"] == 4)]


def test_resume_before_the_first_checkpoint_starts_over(corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(tiny(corpus).to_dict()))
    (out / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n{"event": "step", "step": 1, "lo')
    (out / ".rnnjit-abc.tmp").write_bytes(b"half a checkpoint")
    events = list(Trainer(tiny(corpus, steps=3), out_dir=str(out), resume=True).run())
    notes = " ".join(events[0].notes)
    assert "starting again from step 0" in notes and "temporary" in notes and "torn" in notes
    assert events[-1].reason == "done" and not (out / ".rnnjit-abc.tmp").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps = [e["step"] for e in read_metrics(str(out / "metrics.jsonl")) if e["event"] == "step"]
    assert steps == [1, 2, 3]
