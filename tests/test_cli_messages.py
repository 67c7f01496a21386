"""What the rnnjit command says: its help, its version, and the one-line errors the README promises."""

import json
import re

import numpy as np
import pytest

import rnnjit
from rnnjit.cli import main
from rnnjit.train.checkpoint import CheckpointError, load_checkpoint
from rnnjit.train.config import TrainConfig
from rnnjit.train.engine import Trainer
from rnnjit.train.tasks import TASKS

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 30
SMALL = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2", "--eval-every", "0",
         "--sample-every", "0", "--threads", "1"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


def exits(argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command that argparse ends with SystemExit."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def help_text(argv, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")     # one option per line: no wrapping inside a phrase
    code, out, _ = exits(argv + ["--help"], capsys)
    assert code == 0
    return out


def test_version(capsys):
    code, out, _ = exits(["--version"], capsys)
    assert code == 0 and out == f"rnnjit {rnnjit.__version__}\n"


def test_an_unknown_train_option_names_rnnjit_train(capsys):
    code, _, err = exits(["train", "--bogus"], capsys)
    assert code == 2
    assert err == "rnnjit train: error: unrecognized arguments: --bogus (see rnnjit train --help)\n"


def test_train_help_lists_every_task_and_what_zero_means(capsys, monkeypatch):
    text = help_text(["train"], capsys, monkeypatch)
    task_line = next(line for line in text.splitlines() if line.strip().startswith("--task"))
    assert all(name in task_line for name in TASKS)
    assert re.search(r"--length T .*adding and copy", text)
    for option, zero in (("--eval-every", "0: only at the end"), ("--sample-every", "0: never"),
                         ("--checkpoint-every", "0: only at the end"), ("--threads", "0: leave as is")):
        assert re.search(rf"{option} N .*{zero}", text), option
    assert re.search(r"--lr-decay-every N +steps between", text)


def test_gradcheck_and_corpora_help_describe_every_option(capsys, monkeypatch):
    text = help_text(["gradcheck"], capsys, monkeypatch)
    entries = re.split(r"\n(?=  -)", text)          # an option's entry: its line and its help below it
    for option in ("--cell", "--layers", "--hidden", "--input", "--seq-len", "--seed"):
        entry = next(e for e in entries if e.startswith(f"  {option} "))
        assert "(default" in entry, entry
    assert re.search(r"--bidirectional +\w", text) and re.search(r"--json +\w", text)
    text = help_text(["corpora"], capsys, monkeypatch)
    assert "List the named corpora" in text and re.search(r"--json +print", text)


def test_the_summary_comes_after_the_last_progress_bar(corpus, tmp_path, capsys):
    assert main(["train", "--corpus", corpus, "--steps", "2", "--out", str(tmp_path / "r")] + SMALL) == 0
    out = capsys.readouterr().out
    assert "step 2/2" in out and out.rindex("step 2/2") < out.index("done: 2 steps")


def test_sampling_a_file_says_it_is_not_a_directory(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--corpus", corpus, "--steps", "1", "--out", str(run), "--json"] + SMALL) == 0
    capsys.readouterr()
    assert main(["sample", str(run / "config.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a run directory" in err and f"here {run}" in err


def test_a_foreign_npz_is_not_an_rnnjit_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "checkpoint.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"is not an rnnjit checkpoint \(it has no 'meta' entry\)"):
        load_checkpoint(str(run / "checkpoint.npz"))
    assert main(["sample", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an rnnjit checkpoint" in err
    assert "corrupt" not in err and "('meta')" not in err


def test_a_diverged_end_event_and_its_message_name_the_same_steps(corpus, tmp_path):
    """The end event's step is the last step applied; its message names the next, which failed."""
    config = TrainConfig(corpus=corpus, hidden=8, layers=1, seq_len=8, batch=2, steps=10, eval_every=0,
                         sample_every=0, checkpoint_every=0, threads=1)
    trainer = Trainer(config, out_dir=str(tmp_path / "run"))
    step = trainer.task.train_step
    trainer.task.train_step = lambda: step() * (100 if trainer.step == 2 else 1)
    end = list(trainer.run())[-1]
    assert end.reason == "diverged" and end.step == 2
    assert "at step 3 is above 3x the first loss: stopped at step 2 without applying step 3" in end.message


def test_the_cli_exits_1_on_divergence_and_agrees_with_its_end_event(tmp_path, capsys):
    argv = ["train", "--corpus", "names", "--hidden", "16", "--layers", "1", "--steps", "300", "--seq-len", "16",
            "--batch", "4", "--clip", "0", "--lr", "50", "--optimizer", "sgd", "--out", str(tmp_path / "div"),
            "--json", "--threads", "1"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    end = json.loads(out.splitlines()[-1])
    assert end["event"] == "end" and end["reason"] == "diverged"
    n = end["step"]
    assert f"at step {n + 1} " in end["message"] and f"stopped at step {n} without applying" in end["message"]
    assert err == f"rnnjit: {end['message']}\n"


def test_the_compile_watch_sees_compilations_and_only_them():
    """Numba fires its compile event on a cache miss: a new function is one episode, calling it again none."""
    from numba import njit
    from rnnjit.compiling import CompileWatch
    begun = []
    watch = CompileWatch(lambda: begun.append(1)).install()
    try:
        @njit
        def twice(x):
            return 2 * x
        assert twice(3) == 6
        assert begun == [1] and watch.functions == 1 and watch.seconds() > 0
        watch.reset()
        assert twice(4) == 8
        assert watch.began is None and watch.functions == 0 and begun == [1]
    finally:
        watch.remove()
    twice(5.0)                  # a new signature compiles, but nobody is listening now
    assert begun == [1] and watch.began is None


def test_the_progress_says_when_it_compiles(corpus, tmp_path, capsys):
    """A first step that compiles is announced, then summed up; a first step that does not, is not."""
    from numba import njit
    from rnnjit.progress import progress_printer
    from rnnjit.train.events import Start, Step
    config = TrainConfig(corpus=corpus, steps=2, hidden=8, layers=1, seq_len=8, batch=2)
    trainer = Trainer(config, out_dir=str(tmp_path / "r"))

    def step(n):
        return Step(step=n, loss=1.0, bpc=1.4, grad_norm=1.0, clipped=False, hidden_grad_norms=[], lr=0.1,
                    tokens_per_s=1.0, elapsed=0.1)
    show = progress_printer(trainer)
    try:
        show(Start(step=0, total_steps=2, config={}, num_parameters=10))

        @njit
        def fresh(x):
            return x + 1
        fresh(1)
        show(step(1))
        fresh(2)
        show(step(2))
    finally:
        show.close()
    out = capsys.readouterr().out.replace("\n", " ")
    assert "compiling the kernels for this model" in out
    assert re.search(r"compiled 1 function in \d+\.\d s", out)
    assert out.count("compil") == 2
