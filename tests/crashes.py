"""Kill `rnnjit train` with SIGKILL at random moments, resume it each time, and check that
nothing was lost: every checkpoint left behind loads, and the finished run's metrics equal an
uninterrupted run's, bit for bit.

    python tests/crashes.py --kills 100          # the full experiment (a few minutes)

test_crashes.py runs it with a handful of kills. A kill lands anywhere: while Python starts,
while the kernels load from Numba's cache, mid-step, or in the middle of writing a checkpoint
(``--checkpoint-every 1`` on every other life makes that common).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import warnings

TIMING = ("tokens_per_s", "elapsed")
CONFIG = ["--hidden", "16", "--layers", "2", "--dropout", "0.1", "--seq-len", "8", "--batch", "4",
          "--eval-every", "10", "--sample-every", "7", "--sample-length", "16", "--seed", "5", "--threads", "1"]


def trained_events(run_dir: str) -> tuple[list[dict], int]:
    """-> (the step, eval and sample events without timings, torn lines seen)."""
    from rnnjit.train.files import RunFileWarning, read_metrics
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        events = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    torn = sum("incomplete" in str(w.message) for w in caught)
    kept = [{k: v for k, v in e.items() if k not in TIMING} for e in events
            if e["event"] in ("step", "eval", "sample")]
    return kept, torn


def run_cli(args, **popen):
    return subprocess.Popen([sys.executable, "-m", "rnnjit", "train", "--json"] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def experiment(workdir: str, corpus: str, kills: int, steps: int = 300, seed: int = 0,
               log=lambda *a: None) -> dict:
    """Kill runs ``kills`` times in all, each after a random delay of up to 1.2x the time an
    uninterrupted run takes (its whole life, start-up included), resuming each until it ends."""
    rng = random.Random(seed)
    base = CONFIG + ["--corpus", corpus, "--steps", str(steps)]
    ref_dir = os.path.join(workdir, "uninterrupted")
    t0 = time.perf_counter()
    ref = run_cli(base + ["--out", ref_dir, "--checkpoint-every", "1"])
    _, err = ref.communicate(timeout=600)
    max_delay = 1.2 * (time.perf_counter() - t0)
    assert ref.returncode == 0, err
    reference, _ = trained_events(ref_dir)

    stats = {"life_s": round(max_delay / 1.2, 2), "rounds": 0, "kills": 0, "kills_after_start": 0,
             "kills_mid_write": 0, "checkpoints_loaded": 0, "no_checkpoint_yet": 0, "torn_lines": 0,
             "resumes": 0, "lives": 0, "tracebacks": 0, "rounds_identical_to_uninterrupted": 0}
    while stats["kills"] < kills:   # a round: one run, killed until a life of it finishes
        run_dir = os.path.join(workdir, f"killed-{stats['rounds']}")
        stats["rounds"] += 1
        stats["rounds_identical_to_uninterrupted"] += _round(run_dir, base, steps, reference, kills,
                                                             max_delay, rng, stats, log)
    return stats


def _round(run_dir, base, steps, reference, kills, max_delay, rng, stats, log) -> bool:
    from rnnjit.train.checkpoint import load_checkpoint
    started = False
    while True:
        every = ["--checkpoint-every", "1" if stats["lives"] % 2 == 0 else "3"]
        args = (["--resume", run_dir] if started else base + ["--out", run_dir]) + every
        stats["resumes"] += started
        proc = run_cli(args)
        stats["lives"] += 1
        if stats["kills"] < kills:
            try:
                proc.wait(timeout=rng.uniform(0, max_delay))
            except subprocess.TimeoutExpired:
                proc.kill()   # SIGKILL: no handler, no cleanup, nothing flushed
                proc.wait()
                stats["kills"] += proc.returncode == -9   # not if it ended on its own meanwhile
        _, err = proc.communicate(timeout=600)
        stats["tracebacks"] += "Traceback" in err
        if proc.returncode == 0:
            break
        if proc.returncode != -9:
            raise AssertionError(f"rnnjit train exited {proc.returncode}: {err.strip()[-500:]}")
        names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
        stats["kills_after_start"] += "metrics.jsonl" in names
        stats["kills_mid_write"] += any(n.endswith(".tmp") for n in names)
        path = os.path.join(run_dir, "checkpoint.npz")
        if os.path.exists(path):
            _, meta = load_checkpoint(path)   # raises if a kill ever left a broken checkpoint
            stats["checkpoints_loaded"] += 1
            log(f"kill {stats['kills']}: checkpoint at step {meta['step']} loads")
        else:
            stats["no_checkpoint_yet"] += 1
            log(f"kill {stats['kills']}: no checkpoint yet")
        if "metrics.jsonl" in names:
            stats["torn_lines"] += trained_events(run_dir)[1]
        # killed before config.json was written: there is no run to resume, so start it afresh
        started = os.path.exists(os.path.join(run_dir, "config.json"))

    events, torn = trained_events(run_dir)
    assert torn == 0, "the finished run's metrics.jsonl still has a torn line"
    steps_seen = [e["step"] for e in events if e["event"] == "step"]
    assert steps_seen == list(range(1, steps + 1)), "steps missing or repeated in metrics.jsonl"
    return events == reference


def main(argv=None) -> int:
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60)
        t0 = time.time()
        stats = experiment(d, corpus, args.kills, args.steps, args.seed, log=print)
        stats["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(stats, indent=2))
    ok = stats["rounds_identical_to_uninterrupted"] == stats["rounds"] and stats["tracebacks"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
