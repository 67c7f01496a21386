"""Memory over a long run: RSS at step 1,000 and at step 20,000, in the CLI and in the dashboard.

    python benchmarks/long_run_memory.py                 # 20,000 steps each (a few minutes)
    python benchmarks/long_run_memory.py --steps 5000

A small model (LSTM, 2 x 32, batch 8, seq-len 16) trains on a generated text with an eval, a
sample and a checkpoint every 250 steps, so every kind of event keeps coming. The CLI runs as
`rnnjit train --json` in a child process whose resident set is read from /proc as its step
events go by; the dashboard runs headless (Textual's run_test) in this process, with the same
trainer options, and its own resident set is read from inside the event stream. Flat means the
difference between the two readings is small against the first: histories are bounded, nothing
accumulates per step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile

OPTIONS = ["--hidden", "32", "--layers", "2", "--batch", "8", "--seq-len", "16", "--eval-every", "250",
           "--eval-batches", "2", "--sample-every", "250", "--sample-length", "40", "--checkpoint-every", "250",
           "--threads", "1"]


def rss_kib(pid="self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc")


def cli(corpus, out, steps, marks):
    proc = subprocess.Popen([sys.executable, "-m", "rnnjit", "train", "--json", "--corpus", corpus, "--out", out,
                             "--steps", str(steps)] + OPTIONS, stdout=subprocess.PIPE, text=True)
    seen = {}
    for line in proc.stdout:
        e = json.loads(line)
        if e["event"] == "step" and e["step"] in marks:
            seen[e["step"]] = rss_kib(proc.pid)
    proc.wait()
    return seen


def tui(corpus, out, steps, marks):
    from rnnjit.cli import make_trainer
    from rnnjit_tui.app import DashboardApp
    from rnnjit_tui.command import build_parser
    trainer = make_trainer(build_parser().parse_args(["--corpus", corpus, "--out", out, "--steps", str(steps)]
                                                     + OPTIONS))
    seen = {}
    run = trainer.run

    def measured():
        for event in run():
            if event.kind == "step" and event.step in marks:
                seen[event.step] = rss_kib()
            yield event
    trainer.run = measured

    async def drive():
        app = DashboardApp(trainer=trainer)
        async with app.run_test(size=(120, 40)) as pilot:
            while not app.trainer_done.is_set():
                await pilot.pause(0.5)
    asyncio.run(drive())
    return seen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--first", type=int, default=1000)
    p.add_argument("--only", choices=["cli", "tui"], help="measure one face only")
    args = p.parse_args(argv)
    middle = (args.first + args.steps) // 2
    marks = {args.first, middle, args.steps}
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n"
                            for i in range(3000)))
        rows = {}
        if args.only in (None, "cli"):
            rows["rnnjit train"] = cli(corpus, os.path.join(d, "cli"), args.steps, marks)
        if args.only in (None, "tui"):
            rows["rnnjit-tui"] = tui(corpus, os.path.join(d, "tui"), args.steps, marks)
    print(f"{'RSS (MiB) at step':18s}" + "".join(f"{m:>10,d}" for m in sorted(marks)) + f"{'growth':>10s}")
    for name, seen in rows.items():
        values = [seen[m] / 1024 for m in sorted(marks)]
        print(f"{name:18s}" + "".join(f"{v:10.1f}" for v in values) + f"{values[-1] - values[0]:+10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
