"""The ``rnnjit`` command's parser: its subcommands and their options (``cli.py`` runs them).

The training options are shared with ``rnnjit-tui`` (``_train_options``); ``bench``,
``vanish`` and ``tasks-bench`` register their own subcommands from their modules.
"""

from __future__ import annotations

import argparse

from . import __version__
from .train.config import CELL_CHOICES, LENGTH_TASKS, TrainConfig

EXIT_USAGE = 2


class CLIError(Exception):
    """A one-line error for the user; exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points to --help (not the whole usage)."""

    commands: dict = {}   # the subcommands' parsers by name (build_parser sets them)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unknown option is refused by the subcommand it was given to, so the
        error names `rnnjit train` (say) and points to `rnnjit train --help`."""
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self.commands.get(getattr(known, "command", None), self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return known


def parse_cells(text: str) -> list[str]:
    """"rnn,lstm" -> ["rnn", "lstm"], or a CLIError naming the unknown ones."""
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELL_CHOICES]
    if bad or not cells:
        raise CLIError(f"--cells: unknown cell {', '.join(bad) or '(none)'}: choose from {', '.join(CELL_CHOICES)}")
    return cells


# ---- arguments --------------------------------------------------------------------------------

def _task_help() -> str:
    """--task's help, from the task registry: charlm and the synthetic tasks, by name."""
    from .train.tasks import TASKS
    synthetic = [name for name in TASKS if name != "charlm"]
    return ("charlm (the default: a character language model on --corpus) or a synthetic task: "
            + ", ".join(synthetic))


def _train_options(p: argparse.ArgumentParser) -> None:
    """The training options, shared with rnnjit-tui. Defaults are SUPPRESSed so that a resumed
    run can tell the options given on the command line from its saved configuration."""
    d = TrainConfig()
    S = argparse.SUPPRESS
    g = p.add_argument_group("what to learn")
    g.add_argument("--corpus", default=S, metavar="NAME|PATH",
                   help=f"corpus name (see `rnnjit corpora`) or a UTF-8 text file (default {d.corpus})")
    g.add_argument("--task", default=S, metavar="NAME", help=_task_help())
    g.add_argument("--length", type=int, default=S, metavar="T",
                   help=f"sequence length of --task {' and '.join(LENGTH_TASKS)} (default {d.length})")
    g = p.add_argument_group("the network")
    g.add_argument("--cell", default=S, choices=CELL_CHOICES,
                   help=f"recurrent cell (default {d.cell})")
    g.add_argument("--hidden", type=int, default=S, metavar="N", help=f"hidden units per layer (default {d.hidden})")
    g.add_argument("--layers", type=int, default=S, metavar="N", help=f"stacked layers (default {d.layers})")
    g.add_argument("--dropout", type=float, default=S, metavar="F", help="dropout between layers (default 0)")
    g.add_argument("--embedding", type=int, default=S, metavar="N", help="embedding size (default: --hidden)")
    g.add_argument("--dtype", default=S, choices=["float32", "float64"], help="precision (default float32)")
    g.add_argument("--device", default=S, choices=["cpu", "cuda"],
                   help="where the model trains (default cpu; cuda needs a GPU and rnnjit[cuda])")
    g.add_argument("--cuda-graphs", action="store_true", default=S,
                   help="with --device cuda: replay each step's forward and backward as one CUDA graph "
                        "(the default for a new run on cuda: the same numbers, 2.4x the tokens/s of the "
                        "default model on an H200)")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=S,
                   help="with --device cuda: launch every kernel of a step from Python (as a run "
                        "started with it continues)")
    g = p.add_argument_group("the optimisation")
    g.add_argument("--seq-len", type=int, default=S, metavar="T",
                   help=f"characters per truncated-BPTT chunk (default {d.seq_len})")
    g.add_argument("--batch", type=int, default=S, metavar="B", help=f"parallel streams (default {d.batch})")
    g.add_argument("--steps", type=int, default=S, metavar="N", help=f"optimizer steps (default {d.steps})")
    g.add_argument("--optimizer", default=S, metavar="NAME", help="sgd, adagrad, rmsprop or adam (default adam)")
    g.add_argument("--lr", type=float, default=S, metavar="F", help=f"learning rate (default {d.lr})")
    g.add_argument("--momentum", type=float, default=S, metavar="F", help="SGD momentum (default 0.9)")
    g.add_argument("--lr-decay", type=float, default=S, metavar="F",
                   help="multiply the learning rate by F every --lr-decay-every steps (default 1: none)")
    g.add_argument("--lr-decay-every", type=int, default=S, metavar="N",
                   help=f"steps between two --lr-decay multiplications (default {d.lr_decay_every})")
    g.add_argument("--clip", type=float, default=S, metavar="F", help=f"gradient clipping threshold, 0 for none (default {d.clip})")
    g.add_argument("--clip-mode", default=S, metavar="MODE", help="norm (global L2 norm, default) or value")
    g.add_argument("--seed", type=int, default=S, metavar="N", help="seed for weights, data, dropout, samples (default 0)")
    g.add_argument("--threads", type=int, default=S, metavar="N",
                   help="BLAS/Numba threads (default 0: leave as is, normally all cores)")
    g = p.add_argument_group("what it reports and saves")
    g.add_argument("--eval-every", type=int, default=S, metavar="N",
                   help=f"validation loss every N steps and at the end; 0: only at the end (default {d.eval_every})")
    g.add_argument("--eval-batches", type=int, default=S, metavar="N", help="validation batches (default 0: all)")
    g.add_argument("--sample-every", type=int, default=S, metavar="N",
                   help=f"a sample every N steps; 0: never (default {d.sample_every})")
    g.add_argument("--sample-length", type=int, default=S, metavar="N", help=f"characters per sample (default {d.sample_length})")
    g.add_argument("--temperature", type=float, default=S, metavar="F", help=f"sampling temperature (default {d.temperature})")
    g.add_argument("--checkpoint-every", type=int, default=S, metavar="N",
                   help=f"checkpoint every N steps and at the end; 0: only at the end (default {d.checkpoint_every})")
    g.add_argument("--out", default=S, metavar="DIR", help="run directory (default runs/CORPUS-CELL-YYYYMMDD-HHMMSS; TASK-CELL-... for a synthetic task)")
    g.add_argument("--resume", default=S, metavar="DIR",
                   help="continue the run in DIR with its saved configuration (options given here override it)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="rnnjit",
        description="Recurrent networks (RNN, LSTM, GRU) from scratch in Numba: train, sample, check, time.",
        epilog="Start with `rnnjit train`, then `rnnjit sample runs/<the run>`.")
    p.add_argument("--version", action="version", version=f"rnnjit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (default: an LSTM on Shakespeare, character by character)",
                       description="Train a recurrent network. With no options: a 2-layer LSTM language model "
                                   "on the shakespeare corpus. Writes config.json, metrics.jsonl and "
                                   "checkpoint.npz into the run directory; Ctrl-C stops cleanly with a checkpoint.")
    _train_options(t)
    t.add_argument("--json", action="store_true", help="print the events as JSON lines instead of progress")

    s = sub.add_parser("sample", help="make a trained language model write",
                       description="Generate text from the checkpoint in a run directory.")
    s.add_argument("run", metavar="DIR", nargs="+",
                   help="a run directory written by `rnnjit train` (given several, as a pattern like "
                        "runs/shakespeare-lstm-* gives them, the most recently saved one)")
    s.add_argument("--prime", default="", metavar="TEXT", help="text to read before writing")
    s.add_argument("--length", type=int, default=500, metavar="N", help="characters to write (default 500)")
    s.add_argument("--temperature", type=float, default=0.8, metavar="F",
                   help="below 1: safer, more repetitive; above 1: wilder (default 0.8)")
    s.add_argument("--top-k", type=int, default=None, metavar="K", help="draw only from the K likeliest characters")
    s.add_argument("--argmax", action="store_true", help="always take the likeliest character")
    s.add_argument("--stop", default=None, metavar="CHAR", help="stop after writing this character")
    s.add_argument("--seed", type=int, default=None, metavar="N", help="make the sample repeatable")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model runs (default cpu)")

    g = sub.add_parser("gradcheck", help="check backpropagation through time against finite differences",
                       description="Compare a layer's analytic gradients with central finite differences "
                                   "in float64; prints the worst relative error of every parameter.")
    g.add_argument("--cell", default="lstm", choices=CELL_CHOICES, help="the layer's cell (default lstm)")
    g.add_argument("--layers", type=int, default=1, metavar="N", help="stacked layers (default 1)")
    g.add_argument("--hidden", type=int, default=5, metavar="N", help="hidden units (default 5)")
    g.add_argument("--input", type=int, default=3, metavar="N", help="input size (default 3)")
    g.add_argument("--seq-len", type=int, default=4, metavar="T", help="timesteps (default 4)")
    g.add_argument("--bidirectional", action="store_true", help="check a bidirectional layer")
    g.add_argument("--seed", type=int, default=0, metavar="N", help="seed for the weights and inputs (default 0)")
    g.add_argument("--json", action="store_true", help="print the errors as one JSON object instead of a table")

    c = sub.add_parser("corpora", help="list the corpora: size, source, licence, availability",
                       description="List the named corpora of `rnnjit train --corpus NAME`: their size once "
                                   "built, source, licence, and whether they can be built here (offline, "
                                   "from an installed package, at first use). Any UTF-8 text file works too.")
    c.add_argument("--json", action="store_true", help="print the list as JSON")
    _extra_commands(sub)
    p.commands = sub.choices
    return p


def _extra_commands(sub) -> None:
    """Commands that live in their own modules (registered here so --help lists them)."""
    from . import bench, task_bench, vanish
    for module in (bench, vanish, task_bench):
        module.register(sub)
