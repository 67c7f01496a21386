"""The rnnjit command: the main path, and every bad input as a one-line error with exit status 2."""

import json
import os
import subprocess
import sys

import pytest

from rnnjit.cli import main

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 30


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


SMALL = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2", "--eval-every", "0",
         "--sample-every", "0"]


def run_cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_json_then_sample_then_resume(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    rc, stdout, _ = run_cli(["train", "--corpus", corpus, "--steps", "3", "--out", out, "--json"] + SMALL, capsys)
    assert rc == 0
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] == "step"] == ["step"] * 3
    assert events[-1] == {"event": "end", "step": 3, "reason": "done", "message": ""}

    rc, stdout, _ = run_cli(["sample", out, "--prime", "ROMEO", "--length", "40", "--seed", "1"], capsys)
    assert rc == 0 and stdout.startswith("ROMEO") and len(stdout) == len("ROMEO") + 40 + 1
    rc, again, _ = run_cli(["sample", out, "--prime", "ROMEO", "--length", "40", "--seed", "1"], capsys)
    assert again == stdout

    before = open(os.path.join(out, "metrics.jsonl")).read()
    rc, stdout, err = run_cli(["train", "--resume", out, "--json"], capsys)   # ended: nothing to do
    assert rc == 0 and stdout == "" and "has trained its 3 steps and ended" in err and "--steps above 3" in err
    assert open(os.path.join(out, "metrics.jsonl")).read() == before

    rc, stdout, _ = run_cli(["train", "--resume", out, "--steps", "5", "--json"], capsys)
    steps = [json.loads(line)["step"] for line in stdout.splitlines() if '"event": "step"' in line]
    assert rc == 0 and steps == [4, 5]
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["steps"] == 5


def test_a_run_killed_before_its_end_event_resumes_to_its_end(corpus, tmp_path, capsys):
    """Killed after the checkpoint of its last step, before the final eval and end event were
    written: resuming writes them (once) and exits 0; a lower --steps than trained is refused."""
    out = str(tmp_path / "run")
    args = ["--corpus", corpus, "--steps", "3", "--out", out] + SMALL[:-4] + ["--eval-every", "2"]
    assert run_cli(["train"] + args + ["--sample-every", "0", "--checkpoint-every", "1"], capsys)[0] == 0
    metrics = os.path.join(out, "metrics.jsonl")
    with open(metrics) as f:
        lines = f.read().splitlines(keepends=True)
    kinds = [json.loads(line)["event"] for line in lines]
    assert kinds[-3:] == ["checkpoint", "eval", "end"]   # the final eval: 3 is not a multiple of 2
    with open(metrics, "w") as f:
        f.writelines(lines[:-2])
    rc, stdout, err = run_cli(["train", "--resume", out, "--json"], capsys)
    assert rc == 0, err
    tail = [json.loads(line) for line in stdout.splitlines()]
    assert [e["event"] for e in tail] == ["start", "eval", "end"] and tail[-1]["reason"] == "done"
    with open(metrics) as f:
        final = [json.loads(line) for line in f]
    assert [e["step"] for e in final if e["event"] == "eval"] == [2, 3]

    assert "and ended: nothing to do" in run_cli(["train", "--resume", out], capsys)[2]   # now it has
    with open(metrics) as f:
        lines = f.read().splitlines(keepends=True)
    with open(metrics, "w") as f:                                # killed after the final eval
        f.writelines(line for line in lines if '"event": "end"' not in line)
    rc, stdout, _ = run_cli(["train", "--resume", out, "--json"], capsys)
    assert rc == 0 and [json.loads(line)["event"] for line in stdout.splitlines()] == ["start", "end"]
    rc, _, err = run_cli(["train", "--resume", out, "--steps", "2"], capsys)
    assert rc == 2 and "has trained 3 steps already, --steps is 2" in err


def test_sample_from_several_runs_takes_the_newest(corpus, tmp_path, capsys):
    """`rnnjit sample runs/shakespeare-lstm-*/` (README's quick start) after two runs: the most
    recently saved one, said on stderr; the run files are readable by others, as open() makes them."""
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    for out, hidden in ((old, "8"), (new, "6")):
        assert run_cli(["train", "--corpus", corpus, "--steps", "1", "--out", out] + SMALL[2:] + ["--hidden", hidden],
                       capsys)[0] == 0
    os.utime(os.path.join(old, "checkpoint.npz"), (1, 1))
    rc, stdout, err = run_cli(["sample", new, old, "--length", "5", "--seed", "0"], capsys)
    assert rc == 0 and f"sampling from the most recently saved, {new}" in err
    assert stdout == run_cli(["sample", new, "--length", "5", "--seed", "0"], capsys)[1]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.npz", "config.json", "metrics.jsonl"):
        assert os.stat(os.path.join(new, name)).st_mode & 0o777 == 0o666 & ~umask, name


def test_progress_output(corpus, tmp_path, capsys):
    rc, stdout, _ = run_cli(["train", "--corpus", corpus, "--steps", "2", "--out", str(tmp_path / "r")] + SMALL, capsys)
    assert rc == 0 and "rnnjit sample" in stdout


def test_progress_of_a_synthetic_task_speaks_of_its_task(tmp_path, capsys):
    """No bits per character, seq-len or `rnnjit sample` hint for a task that is not a language model."""
    rc, stdout, _ = run_cli(["train", "--task", "adding", "--length", "5", "--steps", "2", "--out",
                             str(tmp_path / "a")] + SMALL, capsys)
    assert rc == 0 and "task adding (T=5), batch 2," in stdout
    assert "bpc" not in stdout and "seq-len" not in stdout and "rnnjit sample" not in stdout
    assert f"done: 2 steps. The run is in {tmp_path / 'a'}" in stdout.replace("\n", "")


def test_a_corpus_file_resumes_from_any_directory(tmp_path, monkeypatch, capsys):
    """A corpus given by a relative path is recorded by its absolute path; resuming from elsewhere,
    or naming the same file by another path, works."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "data")
    out = str(tmp_path / "run")
    assert run_cli(["train", "--corpus", "c.txt", "--steps", "2", "--out", out] + SMALL, capsys)[0] == 0
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["corpus"] == str(tmp_path / "data" / "c.txt")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["train", "--resume", out, "--steps", "3"], capsys)[0] == 0
    rc, _, err = run_cli(["train", "--resume", out, "--steps", "4", "--corpus", "data/c.txt"], capsys)
    assert rc == 0, err
    (tmp_path / "other.txt").write_text(TEXT, encoding="utf-8")
    rc, _, err = run_cli(["train", "--resume", out, "--steps", "5", "--corpus", "other.txt"], capsys)
    assert rc == 2 and "checkpoint was made with --corpus" in err


def test_a_config_that_is_not_an_object_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]\n")
    rc, _, err = run_cli(["train", "--resume", str(run)], capsys)
    assert rc == 2 and "does not hold a run's configuration" in err and len(err.strip().splitlines()) == 1


BAD = [
    (["train", "--corpus", "EMPTY"], "empty"),
    (["train", "--corpus", "/no/such/file.txt"], "no such file"),
    (["train", "--corpus", "BINARY"], "UTF-8"),
    (["train", "--corpus", "TINY", "--batch", "64", "--seq-len", "100"], "--batch"),
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--steps", "-3"], "--steps"),
    (["train", "--optimizer", "adamw"], "adamw"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--clip-mode", "sideways"], "--clip-mode"),
    (["train", "--resume", "/no/such/run"], "no run"),
    (["sample", "/no/such/run"], "no such run"),
    (["gradcheck", "--layers", "0"], "--layers"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00abc\x80")
    (tmp_path / "tiny.txt").write_text("hello world\n" * 3)
    names = {"EMPTY": "empty.txt", "BINARY": "binary.bin", "TINY": "tiny.txt"}
    args = [str(tmp_path / names[a]) if a in names else a for a in args]
    rc, out, err = run_cli(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_unknown_cell_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--cell", "transformer"])
    assert e.value.code == 2


def test_out_never_overwrites_a_run(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run_cli(["train", "--corpus", corpus, "--steps", "1", "--out", out, "--json"] + SMALL, capsys)[0] == 0
    before = open(os.path.join(out, "checkpoint.npz"), "rb").read()
    rc, _, err = run_cli(["train", "--corpus", corpus, "--steps", "1", "--out", out] + SMALL, capsys)
    assert rc == 2 and "--resume" in err
    assert open(os.path.join(out, "checkpoint.npz"), "rb").read() == before


def test_corrupt_checkpoint(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    run_cli(["train", "--corpus", corpus, "--steps", "1", "--out", out, "--json"] + SMALL, capsys)
    with open(os.path.join(out, "checkpoint.npz"), "wb") as f:
        f.write(b"not a zip")
    for args in (["sample", out], ["train", "--resume", out]):
        rc, _, err = run_cli(args, capsys)
        assert rc == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1


def test_prime_outside_vocabulary(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    run_cli(["train", "--corpus", corpus, "--steps", "1", "--out", out, "--json"] + SMALL, capsys)
    rc, _, err = run_cli(["sample", out, "--prime", "Zounds"], capsys)
    assert rc == 2 and "'Z'" in err and "--prime" in err
    rc, _, err = run_cli(["sample", out, "--stop", "Z"], capsys)      # a stop it could never write
    assert rc == 2 and err.count("\n") == 1 and "--stop='Z' is not one of the model's characters" in err


def test_gradcheck_command(capsys):
    rc, out, _ = run_cli(["gradcheck", "--cell", "gru", "--layers", "2", "--bidirectional", "--json"], capsys)
    result = json.loads(out)
    assert rc == 0 and result["ok"] and result["worst"] < 1e-6


def test_corpora_command(capsys):
    rc, out, _ = run_cli(["corpora", "--json"], capsys)
    names = {r["name"] for r in json.loads(out)}
    assert rc == 0 and {"shakespeare", "python", "names"} <= names


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "rnnjit", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--corpus", "--cell", "--hidden", "--layers", "--dropout", "--seq-len", "--batch", "--steps",
                   "--optimizer", "--lr", "--clip", "--clip-mode", "--seed", "--dtype", "--eval-every",
                   "--sample-every", "--checkpoint-every", "--out", "--resume", "--json"):
        assert option in out.stdout


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_stop_signals_stop_cleanly_with_a_checkpoint(corpus, tmp_path, signame):
    """A real SIGINT (Ctrl-C), SIGTERM (kill) or SIGHUP (a closed terminal) to a running `rnnjit
    train`: exit 130, one line naming the signal, a checkpoint, and --resume continues."""
    import signal
    import time
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "rnnjit", "train", "--corpus", corpus, "--steps", "100000", "--out", out,
           "--json"] + SMALL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until it is training
        if '"event": "step"' in line:
            break
    time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.count("\n") == 1 and f"stopped by {signame}" in stderr and "--resume" in stderr, stderr
    end = json.loads(stdout.strip().splitlines()[-1])
    assert end["event"] == "end" and end["reason"] == "stopped"
    from rnnjit.train.checkpoint import load_checkpoint
    _, meta = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert meta["step"] == end["step"] > 0


def test_a_new_cuda_run_replays_cuda_graphs_unless_told_not_to(tmp_path):
    """``--device cuda`` starts a run with CUDA graphs (measured 2.4x the tokens/s on an H200,
    the same numbers); ``--no-cuda-graphs`` launches every kernel from Python; the CPU has
    none; a resumed run keeps the choice it was started with. Parsing only: no GPU needed."""
    from rnnjit.cli import config_from_args
    from rnnjit.cli_options import build_parser
    parser = build_parser()

    def graphs(*extra):
        args = parser.parse_args(["train", "--out", str(tmp_path / "new"), *extra])
        return config_from_args(args)[0].cuda_graphs

    assert graphs("--device", "cuda") is True
    assert graphs("--device", "cuda", "--no-cuda-graphs") is False
    assert graphs("--device", "cuda", "--cuda-graphs") is True
    assert graphs() is False
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"device": "cuda", "cuda_graphs": False}))
    config, _, resumed = config_from_args(parser.parse_args(["train", "--resume", str(run)]))
    assert resumed and config.device == "cuda" and config.cuda_graphs is False
