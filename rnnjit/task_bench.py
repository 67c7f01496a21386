"""``rnnjit tasks-bench``: the classic result, reproduced. Which cell solves the adding problem at
which length, on a fixed budget?

Every cell (tanh RNN, LSTM, GRU) is trained by the engine on ``adding`` at T = 50, 100, 200, 400
with the same budget (steps x batch sequences, hidden size, optimizer, learning rate, seed),
then scored by its MSE on 512 held-out sequences against the baseline 1/6 of always answering 1.

    rnnjit tasks-bench --threads 1          # 6000 steps x batch 32 per run: about 4 minutes

The published picture (Hochreiter & Schmidhuber 1997; Le et al. 2015; Arjovsky et al. 2016): a tanh
RNN stops beating the baseline beyond T of about 100-150, while LSTM and GRU still solve T = 400,
given enough updates. With a small budget even the gated cells stop short at long T: the table
shows what this budget buys on this machine.
"""

from __future__ import annotations

import json
import sys
import time

SOLVED, LEARNING = 0.1, 0.5   # MSE below this fraction of the baseline: solved / learning


def verdict(mse: float, baseline: float) -> str:
    if mse < SOLVED * baseline:
        return "solved"
    if mse < LEARNING * baseline:
        return "partly"
    return "baseline"


def set_forget_bias(layer, value: float) -> None:
    """An LSTM's forget gates start at sigmoid(value) instead of about 0.5 (Gers et al. 2000;
    Jozefowicz et al. 2015): with value = 1, f ≈ 0.73 and the memory fades far more slowly at first.
    Gate order i, f, g, o: the forget block is rows H..2H of both biases (their sum is what counts)."""
    H = layer.hidden_size
    for k in range(layer.num_layers):
        layer.params[f"bias_ih_l{k}"][H:2 * H] = value
        layer.params[f"bias_hh_l{k}"][H:2 * H] = 0


def run_bench(cells, lengths, steps, batch, hidden, lr, seed, threads, forget_bias=None, on_result=None):
    """-> list of {cell, length, mse, baseline, verdict, seconds, end}, one per (cell, length).

    ``forget_bias``: if given, every LSTM starts with that forget-gate bias (others are unchanged)."""
    from .data.synthetic import ADDING_BASELINE
    from .train.config import TrainConfig
    from .train.engine import Trainer
    rows = []
    for length in lengths:
        for cell in cells:
            config = TrainConfig(task="adding", cell=cell, length=length, hidden=hidden, layers=1, batch=batch,
                                 steps=steps, lr=lr, seed=seed, threads=threads, eval_every=0, sample_every=0,
                                 checkpoint_every=0)
            trainer = Trainer(config)
            if forget_bias is not None and cell == "lstm":
                set_forget_bias(trainer.model.rnn, forget_bias)
            t0 = time.perf_counter()
            end = None
            for event in trainer.run():
                end = event
            mse = trainer.evaluate().val_loss     # also after a stop by the divergence guard
            row = {"cell": cell, "length": length, "mse": mse, "baseline": ADDING_BASELINE,
                   "verdict": verdict(mse, ADDING_BASELINE), "seconds": time.perf_counter() - t0,
                   "steps": end.step, "end": end.reason}
            rows.append(row)
            if on_result:
                on_result(row)
    return rows


def render(rows, cells, lengths) -> str:
    mark = {"solved": "✓", "partly": "~", "baseline": "✗"}
    by = {(r["cell"], r["length"]): r for r in rows}
    head = "cell    " + "".join(f"{'T=' + str(t):>14}" for t in lengths)
    lines = [head, "-" * len(head)]
    for cell in cells:
        cells_txt = []
        for t in lengths:
            r = by.get((cell, t))
            if r is None:
                cells_txt.append(f"{'-':>14}")
                continue
            flag = "!" if r["end"] == "diverged" else ""
            cells_txt.append(f"{r['mse']:>10.4f} {mark[r['verdict']]}{flag:<2}")
        lines.append(f"{cell:<8}" + "".join(cells_txt))
    lines.append(f"final validation MSE (512 sequences); baseline 0.1667 (always answer 1). "
                 f"✓ < {SOLVED:g}x baseline, ~ < {LEARNING:g}x, ✗ otherwise; ! stopped by the divergence guard")
    return "\n".join(lines)


def _int_list(s, what):
    from .cli_options import CLIError
    try:
        values = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--{what} takes comma-separated integers, got {s!r}") from None
    if not values or min(values) < 2:
        raise CLIError(f"--{what} takes integers >= 2, got {s!r}")
    return values


def register(sub) -> None:
    p = sub.add_parser(
        "tasks-bench", help="train RNN, LSTM, GRU on the adding problem at T = 50..400: who beats the baseline?",
        description="Train each cell on the adding problem at each length with the same fixed budget and print "
                    "the final validation MSE against the baseline (1/6). CPU-heavy: the budget is yours to "
                    "choose (--steps); time grows with T and the LSTM costs most.")
    p.add_argument("--cells", default="rnn,lstm,gru", metavar="LIST", help="comma-separated (default rnn,lstm,gru)")
    p.add_argument("--lengths", default="50,100,200,400", metavar="LIST", help="values of T (default 50,100,200,400)")
    p.add_argument("--steps", type=int, default=6000, metavar="N",
                   help="optimizer steps per run (default 6000: about 4 minutes on 1 thread for the 12 runs)")
    p.add_argument("--batch", type=int, default=32, metavar="B", help="sequences per step (default 32)")
    p.add_argument("--hidden", type=int, default=32, metavar="N", help="hidden units (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, metavar="F", help="Adam learning rate (default 0.003)")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="BLAS/Numba threads (default: as is)")
    p.add_argument("--forget-bias", type=float, default=None, metavar="F",
                   help="start every LSTM's forget-gate bias at F (e.g. 1) instead of PyTorch's initialisation")
    p.add_argument("--json", action="store_true", help="print one JSON object with every run")
    p.set_defaults(handler=cmd_tasks_bench)


def cmd_tasks_bench(args) -> int:
    from .cli_options import CLIError, parse_cells
    cells = parse_cells(args.cells)
    lengths = _int_list(args.lengths, "lengths")
    if args.steps < 1 or args.batch < 1 or args.hidden < 1 or not args.lr > 0:
        raise CLIError("--steps, --batch and --hidden must be positive integers and --lr > 0")

    def progress(r):
        if not args.json:
            print(f"[{r['cell']} T={r['length']}: MSE {r['mse']:.4f} after {r['steps']} steps, {r['seconds']:.1f} s]",
                  file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    rows = run_bench(cells, lengths, args.steps, args.batch, args.hidden, args.lr, args.seed, args.threads,
                     args.forget_bias, on_result=progress)
    total = time.perf_counter() - t0
    budget = {"steps": args.steps, "batch": args.batch, "hidden": args.hidden, "optimizer": "adam", "lr": args.lr,
              "clip": 5.0, "dtype": "float32", "seed": args.seed, "threads": args.threads,
              "forget_bias": args.forget_bias}
    if args.json:
        print(json.dumps({"budget": budget, "seconds": total, "runs": rows}))
        return 0
    print(f"adding problem: final MSE by cell and length. Budget per run: {args.steps} steps x batch {args.batch} "
          f"= {args.steps * args.batch:,} sequences, hidden {args.hidden}, 1 layer, Adam lr {args.lr:g}, clip 5, "
          f"float32, seed {args.seed}"
          + ("" if args.forget_bias is None else f", LSTM forget-gate bias {args.forget_bias:g}"))
    print(render(rows, cells, lengths))
    print(f"total {total:.0f} s" + (f" on {args.threads} thread(s)" if args.threads else ""))
    return 0
