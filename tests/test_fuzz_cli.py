"""Property: whatever options `rnnjit train` is given, it ends cleanly.

Hypothesis draws command lines from the whole option space, valid and not: numbers out of range,
NaN and infinity, words where numbers belong, unknown names, corpora that are empty, binary, a
directory or missing, run directories that are files or hold no run. Whatever it draws,
``main()`` must return (never raise), with status 0 (it trained), 1 (the run stopped with a
reason) or 2 (a usage error), and a failure must be exactly one line on stderr, never a
traceback and never the catch-all "internal error" (which would mean a bug slipped through).
Sizes stay small where they are valid, so that every drawn run that trains finishes in moments;
one option in five is drawn bad, so that most command lines get past the parser and train.
"""

import contextlib
import io
import itertools
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rnnjit.cli import main

_counter = itertools.count()

garbage = st.sampled_from(["", "x", "-", "1.5", "nan", "inf", "-inf", "1e400", "0x10", "--", "💥", "9" * 30])
huge = st.sampled_from(["1000000000", "1000000000000", "-1000000000", "-1"])


def ints(lo, hi):
    return st.integers(lo, hi).map(str)


def floats(lo, hi):
    return st.floats(lo, hi).map(repr)


def words(*w):
    return st.sampled_from(w)


any_float = st.floats(allow_nan=True, allow_infinity=True).map(repr)

# option -> (values a user could mean, values that are wrong or absurd)
OPTIONS = {
    "--task": (words("charlm", "adding", "copy", "captions", "dates"), words("nope", "", "CHARLM")),
    "--length": (ints(1, 8), st.one_of(ints(-2, 0), huge, garbage)),
    "--cell": (words("rnn", "rnn-relu", "lstm", "gru"), words("LSTM", "transformer", "")),
    "--hidden": (ints(1, 12), st.one_of(ints(-2, 0), huge, garbage)),
    "--layers": (ints(1, 3), st.one_of(ints(-2, 0), huge, garbage)),
    "--dropout": (floats(0, 0.9), st.one_of(floats(1, 5), floats(-2, -0.01), any_float, garbage)),
    "--embedding": (ints(0, 10), st.one_of(ints(-3, -1), huge, garbage)),
    "--dtype": (words("float32", "float64"), words("float16", "int", "")),
    "--device": (words("cpu"), words("cuda", "tpu")),
    "--seq-len": (ints(1, 12), st.one_of(ints(-2, 0), huge, garbage)),
    "--batch": (ints(1, 6), st.one_of(ints(-2, 0), huge, garbage)),
    "--steps": (ints(1, 3), st.one_of(ints(-2, 0), garbage)),
    "--optimizer": (words("sgd", "adagrad", "rmsprop", "adam"), words("lbfgs", "", "Adam")),
    "--lr": (floats(1e-4, 10), st.one_of(any_float, garbage)),
    "--momentum": (floats(0, 0.99), st.one_of(any_float, garbage)),
    "--lr-decay": (floats(0.1, 1), st.one_of(any_float, garbage)),
    "--lr-decay-every": (ints(1, 5), st.one_of(ints(-2, 0), garbage)),
    "--clip": (floats(0, 10), st.one_of(any_float, garbage)),
    "--clip-mode": (words("norm", "value"), words("both", "")),
    "--seed": (st.one_of(ints(0, 2**32), words(str(2**64))), st.one_of(words("-1", str(-2**70)), garbage)),
    "--threads": (ints(0, 4), st.one_of(ints(-3, -1), huge, garbage)),
    "--eval-every": (ints(0, 3), st.one_of(ints(-3, -1), garbage)),
    "--eval-batches": (ints(0, 2), st.one_of(ints(-3, -1), garbage)),
    "--sample-every": (ints(0, 3), st.one_of(ints(-3, -1), garbage)),
    "--sample-length": (ints(1, 12), st.one_of(ints(-3, 0), garbage)),
    "--temperature": (floats(0.05, 3), st.one_of(any_float, garbage)),
    "--checkpoint-every": (ints(0, 3), st.one_of(ints(-3, -1), garbage)),
}
PLACES = ("corpus", "out", "resume")   # paths, drawn from the fixture's menagerie


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "text.txt").write_text("Speak, speak. First Citizen: you are all resolved rather to die?\n" * 20)
    (d / "empty.txt").write_text("")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes("café crème brûlée\n".encode("latin-1") * 50)
    (d / "one-char.txt").write_text("a" * 500)
    (d / "a-dir").mkdir()
    (d / "not-a-run").mkdir()
    (d / "a-file").write_text("x")
    return {
        "corpus": [str(d / n) for n in ("text.txt", "empty.txt", "binary.bin", "latin1.txt", "one-char.txt",
                                         "a-dir", "missing.txt")] + ["names", "nonexistent-corpus"],
        "out": [str(d / "a-file"), str(d / "a-file" / "below"), str(d / "not-a-run")],
        "resume": [str(d / "not-a-run"), str(d / "missing-run"), str(d / "a-file")],
        "root": d,
    }


@st.composite
def command_lines(draw, places):
    argv = ["train", "--corpus", places["corpus"][0], "--steps", "2", "--hidden", "6", "--layers", "1",
            "--seq-len", "6", "--batch", "2", "--eval-batches", "1", "--sample-length", "8", "--threads", "1",
            "--out", str(places["root"] / f"run-{next(_counter)}")]
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONS) + list(PLACES)), max_size=6, unique=True)):
        if name in PLACES:
            argv += [f"--{name}", draw(st.sampled_from(places[name]))]
        else:
            good, bad = OPTIONS[name]
            argv += [name, draw(bad if draw(st.integers(0, 4)) == 0 else good)]   # one option in five is bad
    if draw(st.booleans()):
        argv.append("--json")
    return argv


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:   # argparse's usage errors
            code = e.code
    return code, err.getvalue()


@settings(max_examples=int(os.environ.get("RNNJIT_FUZZ_EXAMPLES", 120)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_command_line_ends_cleanly(places, data):
    argv = data.draw(command_lines(places))
    code, err = run(argv)
    event(f"exit status {code}")   # --hypothesis-show-statistics: how many trained, stopped, were refused
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code != 0:
        assert err.count("\n") == 1 and err.strip(), (argv, err)
        assert err.startswith(("rnnjit train: error: ", "rnnjit: ")), (argv, err)


def test_the_menagerie_gives_the_expected_errors(places):
    """A few fixed points of the same space, so a regression names itself."""
    base = ["train", "--steps", "1", "--hidden", "6", "--layers", "1", "--seq-len", "6", "--batch", "2",
            "--threads", "1", "--eval-batches", "1"]
    root = places["root"]
    (root / "menagerie-empty-dir").mkdir(exist_ok=True)
    cases = [
        (["--corpus", str(root / "empty.txt")], 2, "empty"),
        (["--corpus", str(root / "binary.bin")], 2, "UTF-8"),
        (["--corpus", str(root / "a-dir")], 2, "directory"),
        (["--hidden", "1000000000000", "--corpus", "names"], 2, "needs at least"),
        (["--seq-len", "1000000", "--corpus", "names"], 2, "smaller --batch or --seq-len"),
        (["--lr", "nan"], 2, "--lr"),
        (["--clip", "nan"], 2, "--clip"),
        (["--resume", str(root / "menagerie-empty-dir")], 2, "no run there"),
        (["--out", str(root / "a-file")], 2, "a-file"),
    ]
    for extra, want_code, needle in cases:
        out = [] if "--resume" in extra or "--out" in extra else ["--out", str(root / f"fixed-{next(_counter)}")]
        code, err = run(base + out + extra)
        assert code == want_code and needle in err and err.count("\n") == 1, (extra, code, err)
