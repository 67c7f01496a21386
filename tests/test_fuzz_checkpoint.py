"""Property: a damaged checkpoint never crashes rnnjit and never runs code.

Hypothesis damages a real run's ``checkpoint.npz`` in every way we could think of: cut short,
bits flipped, bytes overwritten, arrays of the wrong shape or dtype, arrays missing or extra,
metadata with missing fields or wrong types, a pickle inside, a pickle instead. Each damaged
file is then resumed (`rnnjit train --resume`) and sampled from (`rnnjit sample`). Either works,
or the answer is one line and exit status 2. The pickles, if ever unpickled, would create a
marker file: it must never appear.
"""

import contextlib
import io
import itertools
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rnnjit.cli import main
from rnnjit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

_counter = itertools.count()
EXAMPLES = int(os.environ.get("RNNJIT_FUZZ_EXAMPLES", 120))


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the proof that code was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def run(argv):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    corpus = d / "text.txt"
    corpus.write_text("Speak, speak. First Citizen: you are all resolved rather to die than to famish?\n" * 30)
    run_dir = d / "good"
    code, err = run(["train", "--corpus", str(corpus), "--steps", "2", "--hidden", "6", "--layers", "2",
                     "--seq-len", "6", "--batch", "2", "--eval-batches", "1", "--sample-length", "8",
                     "--threads", "1", "--dropout", "0.1", "--out", str(run_dir), "--json"])
    assert code == 0, err
    return d, run_dir


# ---- the damage -----------------------------------------------------------------------------------

def rewrite(path, change):
    """Load the checkpoint, let ``change(arrays, meta)`` spoil it, save it with a valid checksum:
    a well-formed file whose contents are wrong (the checks behind the checksum must catch it)."""
    arrays, meta = load_checkpoint(path)
    change(arrays, meta)
    save_checkpoint(path, arrays, meta)


def raw_bytes_damage(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "empty", "noise"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "overwrite":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + draw(st.binary(min_size=1, max_size=64)) + data[i + 65:]
    if kind == "empty":
        return b""
    return draw(st.binary(min_size=1, max_size=4096))


def content_damage(draw, marker):
    """-> change(arrays, meta) for rewrite()."""
    kind = draw(st.sampled_from(["shape", "dtype", "missing", "extra", "nan", "meta-missing", "meta-type",
                                 "meta-config", "rng", "stream", "hidden"]))

    def change(arrays, meta):
        keys = sorted(k for k in arrays if k != "vocab")
        key = keys[draw(st.integers(0, len(keys) - 1))]
        if kind == "shape":
            a = arrays[key]
            shape = draw(st.sampled_from([(), (1,), (a.size + 1,), a.shape[::-1] + (1,), (0,)]))
            arrays[key] = np.zeros(shape, a.dtype)
        elif kind == "dtype":
            arrays[key] = arrays[key].astype(draw(st.sampled_from([np.int8, np.complex64, np.bool_, "U3"])))
        elif kind == "missing":
            del arrays[draw(st.sampled_from(sorted(arrays)))]
        elif kind == "extra":
            arrays["param/extra"] = np.zeros(3, np.float32)
        elif kind == "nan":
            arrays[key] = np.full_like(arrays[key], np.nan) if arrays[key].dtype.kind == "f" else arrays[key]
        elif kind == "meta-missing":
            meta.pop(draw(st.sampled_from(sorted(meta))))
        elif kind == "meta-type":
            meta[draw(st.sampled_from(sorted(meta)))] = draw(st.sampled_from([None, -1, 1e300, "x", [], {}, 2**70]))
        elif kind == "meta-config":
            field = draw(st.sampled_from(sorted(meta["config"])))
            meta["config"][field] = draw(st.sampled_from([None, -5, 0, "lstm", 1e9, [], 3.5]))
        elif kind == "rng":
            meta[draw(st.sampled_from(["sample_rng"]))] = {"bit_generator": "PCG64", "state": {"state": "x"}}
        elif kind == "stream":
            meta["task"]["data"] = {"position": draw(st.sampled_from([-1, 10**9, "0"])), "epoch": 0,
                                    "batch": 2, "seq_len": 6, "length": 1}
        elif kind == "hidden":
            arrays["task/hidden/h"] = np.zeros((1, 1, 1), np.float32)

    return change


@st.composite
def damaged_runs(draw, good_run):
    root, good = good_run
    run_dir = root / f"damaged-{next(_counter)}"
    shutil.copytree(good, run_dir)
    path = run_dir / "checkpoint.npz"
    marker = root / f"EXECUTED-{run_dir.name}"
    how = draw(st.sampled_from(["bytes", "content", "pickle-inside", "pickle-instead", "directory"]))
    if how == "bytes":
        path.write_bytes(raw_bytes_damage(draw, path.read_bytes()))
    elif how == "content":
        rewrite(str(path), content_damage(draw, marker))
    elif how == "pickle-inside":
        arrays, _ = load_checkpoint(str(path))
        name = draw(st.sampled_from(["meta", "param/embedding.weight", "vocab", "extra"]))
        evil = np.empty(1, dtype=object)
        evil[0] = Payload(str(marker))
        arrays[name] = evil
        with open(path, "wb") as f:
            np.savez(f, **arrays)   # allow_pickle is on when saving: the trap is laid
    elif how == "pickle-instead":
        path.write_bytes(pickle.dumps(Payload(str(marker))))
    else:
        path.unlink()
        path.mkdir()
    return run_dir, marker, how


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_checkpoints_fail_cleanly_and_never_run_code(good_run, data):
    run_dir, marker, how = data.draw(damaged_runs(good_run))
    try:
        load_checkpoint(str(run_dir / "checkpoint.npz"))
    except CheckpointError as e:
        assert "\n" not in str(e)
    for argv in (["train", "--resume", str(run_dir), "--steps", "3", "--json"],
                 ["sample", str(run_dir), "--length", "5", "--seed", "1"]):
        code, err = run(argv)
        event(f"{how}: {argv[0]} exit status {code}")
        assert code in (0, 2), (how, argv, code, err)
        assert "Traceback" not in err and "internal error" not in err, (how, err)
        if code:
            assert err.count("\n") == 1, (how, err)
    assert not marker.exists(), f"{how}: loading a checkpoint executed code from it"


@pytest.mark.parametrize("name", ["meta", "sha256", "param/embedding.weight", "vocab", "optim/t", "extra", "whole file"])
def test_a_pickle_is_never_loaded(good_run, name):
    """The pickle cases, each by hand (hypothesis reaches them too, but rarely)."""
    root, good = good_run
    run_dir = root / f"pickle-{name.replace('/', '-').replace(' ', '-')}"
    shutil.copytree(good, run_dir)
    path = run_dir / "checkpoint.npz"
    marker = root / f"EXECUTED-{run_dir.name}"
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(str(marker))
    if name == "whole file":
        path.write_bytes(pickle.dumps(Payload(str(marker))))
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[name] = evil
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    with pytest.raises(CheckpointError):
        load_checkpoint(str(path))
    for argv in (["train", "--resume", str(run_dir), "--steps", "3"], ["sample", str(run_dir)]):
        code, err = run(argv)
        assert code == 2 and err.count("\n") == 1 and "corrupt" in err, err
    assert not marker.exists()


def test_a_flipped_bit_in_the_metadata_is_caught(good_run):
    root, good = good_run
    run_dir = root / "meta-flip"
    shutil.copytree(good, run_dir)
    path = run_dir / "checkpoint.npz"
    data = bytearray(path.read_bytes())
    at = data.find('"step": 2'.encode("utf-32-le"))   # NumPy stores the JSON string as UTF-32
    assert at > 0
    data[at + 8 * 4] = ord("7")   # "step": 7 -- valid JSON, a plausible value, and wrong
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|damaged"):
        load_checkpoint(str(path))


def test_the_good_run_resumes(good_run):
    root, good = good_run
    run_dir = root / "intact"
    shutil.copytree(good, run_dir)
    code, err = run(["train", "--resume", str(run_dir), "--steps", "3", "--json"])
    assert code == 0, err
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 3
