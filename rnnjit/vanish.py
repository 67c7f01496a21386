"""The vanishing-gradient probe, and ``rnnjit vanish`` which prints it for RNN, LSTM and GRU.

For a loss that reads only the last step, L = ℓ(h_T), backpropagation through time gives

    dL/dh_t = (∂h_{t+1}/∂h_t)^T (∂h_{t+2}/∂h_{t+1})^T ... (∂h_T/∂h_{T-1})^T dL/dh_T

a product of T - t Jacobians. For a tanh RNN each factor is W_hh^T diag(1 - h²), whose norm is
usually below 1, so the product shrinks geometrically with the distance T - t: the gradient
*vanishes*, and what happened early in the sequence cannot be learned. An LSTM's cell state
adds instead of multiplying (c_t = f ⊙ c_{t-1} + i ⊙ g): along that path the factor is the
forget gate f, and a trained network learns to hold f near 1 where it needs memory. A GRU's
update gate plays the same role (h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}).

The probe is the layer's own record: after a backward whose output gradient is zero everywhere
except at the last step, ``layer.hidden_grad_norms`` is ||dL/dh_t|| for every t. It is shown
relative to its value at t = T, on a log scale: one character per step (or per group of steps),
each block one step taller per ``decades / 8`` decades.

    rnnjit vanish --length 100             at initialisation and after training on `adding`
"""

from __future__ import annotations

import math
import time

import numpy as np

BARS = " ▁▂▃▄▅▆▇█"


# ---- the probe ------------------------------------------------------------------------------------

def last_step_gradient_norms(layer, x, g_last) -> np.ndarray:
    """||dL/dh_t||, t = 1..T, for the loss L = <g_last, h_T> that reads only the last output.

    ``layer`` is a recurrent layer (time-major x (T, B, I)); ``g_last`` (B, D*H) is dL/dh_T.
    Returns the norms of the top layer (forward direction), (T,) float64.
    """
    out, _ = layer(x)
    dout = np.zeros_like(out)
    dout[-1] = g_last
    layer.backward(dout)
    L, D = layer.num_layers, layer.num_directions
    return layer.hidden_grad_norms[(L - 1) * D].copy()


def probe(model, x, y) -> np.ndarray:
    """The probe for a many-to-one model on its own loss: ||dL/dh_t|| / ||dL/dh_T||, t = 1..T.

    The model's layer and head are copied to float64 first, so that gradients far below float32's
    range (1e-38) still show as numbers rather than zeros.
    """
    from .models import SequenceClassifier
    twin = SequenceClassifier(model.input_size, model.output_size, model.hidden_size, model.num_layers,
                              model.cell, model.rnn.bidirectional, model.loss_kind, dtype=np.float64)
    twin.load_state_dict(model.state_dict())
    twin.eval().forward_backward(np.asarray(x, np.float64), y)   # the gradient enters at h_T only
    norms = twin.hidden_grad_norms[(twin.num_layers - 1) * twin.rnn.num_directions]
    return norms / norms[-1]


def reach(ratios, threshold=1e-3) -> int:
    """How many steps back from T the gradient stays above ``threshold`` of its value at T."""
    below = np.flatnonzero(ratios[::-1] < threshold)
    return int(below[0]) if below.size else len(ratios)


def sparkline(ratios, width: int = 60, decades: float = 16.0) -> str:
    """One character per step (the largest ratio of each group when T > width), log scale:
    █ for 1 (and above), one block lower per decades/8 decades, blank below 10^-decades."""
    T = len(ratios)
    cols = min(width, T)
    edges = np.linspace(0, T, cols + 1).round().astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        r = float(np.max(ratios[a:b]))
        level = 0 if r <= 0 else math.ceil(8 * (1 + math.log10(r) / decades))
        out.append(BARS[min(max(level, 0), 8)])
    return "".join(out)


# ---- the command ----------------------------------------------------------------------------------

def run_probe(cells, length, hidden, steps, batch, lr, seed, threads, probe_batch=64, on_trained=None):
    """-> {cell: {"init": ratios, "trained": ratios, "val_mse": float, "seconds": float}}.

    Each cell: a fresh model on the adding problem at T = length, probed at initialisation,
    trained for ``steps`` steps by the engine, probed again, on one fixed probe batch.
    """
    from .data.synthetic import adding
    from .train.config import TrainConfig
    from .train.engine import Trainer
    x, y = adding(np.random.default_rng([seed, 99]), probe_batch, length, np.float64)
    results = {}
    for cell in cells:
        config = TrainConfig(task="adding", cell=cell, length=length, hidden=hidden, layers=1, batch=batch,
                             steps=steps, lr=lr, seed=seed, threads=threads, eval_every=0, sample_every=0,
                             checkpoint_every=0)
        trainer = Trainer(config)
        init = probe(trainer.model, x, y)
        t0 = time.perf_counter()
        end = val = None
        for event in trainer.run():
            if event.kind == "eval":
                val = event.val_loss
            end = event
        res = {"init": init, "trained": probe(trainer.model, x, y), "val_mse": val,
               "seconds": time.perf_counter() - t0, "end": end.reason, "steps": end.step}
        results[cell] = res
        if on_trained:
            on_trained(cell, res)
    return results


def render(results, length, width=60, decades=16.0, title="") -> str:
    lines = [title] if title else []
    pad = " " * 8
    cols = min(width, length)
    axis = f"t=1{' ' * max(cols - 3 - len(f't={length}'), 1)}t={length}"
    for phase, label in (("init", "at initialisation"), ("trained", "after training")):
        lines.append(f"{label}:")
        lines.append(f"{pad}{axis:<{cols}}   ‖∂L/∂h_1‖/‖∂L/∂h_T‖   reach (> 1e-3)")
        for cell, res in results.items():
            r = res[phase]
            extra = ""
            if phase == "trained" and res.get("val_mse") is not None:
                extra = f"   val MSE {res['val_mse']:.4f}"
            lines.append(f"  {cell:<6}{sparkline(r, width, decades)}   {r[0]:>19.1e}   "
                         f"{reach(r):>4} steps{extra}")
    step = decades / 8
    lines.append(f"scale: █ = 1 (the gradient at t = T); each step down is {step:g} decades; "
                 f"▁ ≥ 1e-{decades - step:g}; blank < 1e-{decades:g}")
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser(
        "vanish", help="show vanishing gradients: RNN vs LSTM vs GRU, at init and after training",
        description="For the loss at the last step of the adding problem, print ||dL/dh_t|| relative to "
                    "||dL/dh_T|| for every step t, on a log scale, for each cell: once at initialisation, "
                    "once after a short training run. The probe runs in float64.")
    p.add_argument("--length", type=int, default=100, metavar="T", help="sequence length (default 100)")
    p.add_argument("--cells", default="rnn,lstm,gru", metavar="LIST", help="comma-separated (default rnn,lstm,gru)")
    p.add_argument("--hidden", type=int, default=32, metavar="N", help="hidden units (default 32)")
    p.add_argument("--steps", type=int, default=6000, metavar="N",
                   help="training steps per cell (default 6000: about half a minute for all three at T=100)")
    p.add_argument("--batch", type=int, default=32, metavar="B", help="training batch (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, metavar="F", help="Adam learning rate (default 0.003)")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="BLAS/Numba threads (default: as is)")
    p.add_argument("--width", type=int, default=60, metavar="N", help="characters per sparkline (default 60)")
    p.add_argument("--decades", type=float, default=16, metavar="D",
                   help="decades the scale spans below 1 (default 16)")
    p.add_argument("--json", action="store_true", help="print the ratios as JSON")
    p.set_defaults(handler=cmd_vanish)


def cmd_vanish(args) -> int:
    import json
    import sys

    from .cli_options import CLIError, parse_cells
    cells = parse_cells(args.cells)
    for name in ("length", "hidden", "batch", "width"):
        if getattr(args, name) < (2 if name == "length" else 1):
            raise CLIError(f"--{name} must be {'>= 2' if name == 'length' else 'a positive integer'}")
    if args.steps < 0 or not args.lr > 0 or not args.decades > 0:
        raise CLIError("--steps must be >= 0, --lr and --decades > 0")

    def progress(cell, res):
        if not args.json:
            print(f"[{cell}: {res['steps']} steps in {res['seconds']:.1f} s]", file=sys.stderr, flush=True)

    results = run_probe(cells, args.length, args.hidden, max(args.steps, 0), args.batch, args.lr, args.seed,
                        args.threads, on_trained=progress)
    if args.json:
        print(json.dumps({"length": args.length, "hidden": args.hidden, "steps": args.steps, "lr": args.lr,
                          "cells": {c: {"init": r["init"].tolist(), "trained": r["trained"].tolist(),
                                        "val_mse": r["val_mse"]} for c, r in results.items()}}))
        return 0
    title = (f"‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ for the loss at the last step, adding problem T={args.length}, "
             f"hidden {args.hidden}; trained {args.steps} steps x batch {args.batch}, Adam lr {args.lr:g} "
             f"(baseline MSE 0.167)")
    print(render(results, args.length, args.width, args.decades, title))
    return 0
