"""``rnnjit``: the headless face of the package.

    rnnjit train                      train a character-level LSTM on Shakespeare
    rnnjit sample DIR                 make a trained model write
    rnnjit gradcheck --cell gru       check BPTT against finite differences
    rnnjit corpora                    list the corpora and where they come from
    rnnjit bench | vanish | tasks-bench   speed, vanishing gradients, the adding problem

Every bad option is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time

from .cli_options import EXIT_USAGE, CLIError, build_parser
from .machine import reuse_freed_memory
from .train.config import LENGTH_TASKS, ConfigError, TrainConfig

class RunEnded(Exception):
    """``--resume`` of a run that has trained all its steps and ended: nothing to do (exit 0, so
    that a script resuming until success stops, whether or not a kill came after the ending)."""


# ---- train ------------------------------------------------------------------------------------

def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, str, bool]:
    """-> (config, run directory, resume?). Options given override a resumed run's config."""
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    resume_dir = getattr(args, "resume", None)
    if resume_dir:
        path = os.path.join(resume_dir, "config.json")
        if not os.path.isfile(path):
            raise CLIError(f"--resume {resume_dir}: no run there (no config.json): check the path")
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            raise CLIError(f"--resume {resume_dir}: config.json is unreadable") from None
        if not isinstance(saved, dict):
            raise CLIError(f"--resume {resume_dir}: config.json does not hold a run's configuration "
                           "(a JSON object): restore it from a copy or start a new run")
        if isinstance(given.get("corpus"), str) and isinstance(saved.get("corpus"), str) \
                and _same_file(given["corpus"], saved["corpus"]):
            given = {k: v for k, v in given.items() if k != "corpus"}   # the same file by another path
        config = TrainConfig.from_dict({**saved, **given})
        if getattr(args, "out", None) and os.path.abspath(args.out) != os.path.abspath(resume_dir):
            raise CLIError("--out and --resume name different directories: a resumed run stays in its directory")
        return config.validate(), resume_dir, True
    config = TrainConfig.from_dict(_corpus_as_absolute_path(given)).validate()
    if config.device == "cuda" and "cuda_graphs" not in given:
        # A fresh run on the GPU replays its steps as CUDA graphs unless --no-cuda-graphs: the
        # same numbers to the last bit, and the default model trained at 548,000 tokens/s with
        # them against 224,000 without on an H200 (benchmarks/README.md). A resumed run keeps
        # what it was started with.
        config = dataclasses.replace(config, cuda_graphs=True)
    if "length" in given and config.task not in LENGTH_TASKS:
        raise CLIError(f"--length sets the sequences of --task {' and '.join(LENGTH_TASKS)}; the {config.task} task's "
                       + ("chunks are --seq-len long" if config.task == "charlm" else "sequences have lengths of their own"))
    out = getattr(args, "out", None)
    if out is None:
        base = os.path.basename(str(config.corpus)).split(".")[0] if config.task == "charlm" else config.task
        out = os.path.join("runs", f"{base}-{config.cell}-{time.strftime('%Y%m%d-%H%M%S')}")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a directory: choose another --out")
    elif os.path.exists(os.path.join(out, "checkpoint.npz")) or os.path.exists(os.path.join(out, "metrics.jsonl")):
        raise CLIError(f"--out {out} already holds a run: continue it with --resume {out}, or choose another --out")
    return config, out, False


def _corpus_as_absolute_path(given: dict) -> dict:
    """A corpus file is recorded by its absolute path, so that the run resumes from any working
    directory (a corpus's name, such as shakespeare, stays a name)."""
    from .data.corpora import CORPORA
    corpus = given.get("corpus")
    if isinstance(corpus, str) and corpus not in CORPORA and os.path.isfile(os.path.expanduser(corpus)):
        return {**given, "corpus": os.path.abspath(os.path.expanduser(corpus))}
    return given


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(os.path.expanduser(a), os.path.expanduser(b))
    except OSError:
        return False


def _too_big(config) -> str:
    return (f"not enough memory for this model: make --hidden ({config.hidden}), --layers ({config.layers}), "
            f"--batch ({config.batch}) or --seq-len ({config.seq_len}) smaller")


def make_trainer(args):
    from .data import CorpusError
    from .train.checkpoint import CheckpointError
    from .train.engine import Trainer
    config, out, resume = config_from_args(args)
    try:
        trainer = Trainer(config, out_dir=out, resume=resume)
        if resume and trainer.step > config.steps:
            trainer.close()
            raise CLIError(f"{out} has trained {trainer.step} steps already, --steps is {config.steps}: "
                           f"to train on, resume it with --steps above {trainer.step}")
        if resume and trainer.finished:
            trainer.close()
            raise RunEnded(f"{out} has trained its {trainer.step} steps and ended: nothing to do. "
                           f"To train on, resume it with --steps above {trainer.step}")
        return trainer
    except (ConfigError, CorpusError, CheckpointError, RuntimeError) as e:  # RuntimeError: no CUDA here
        raise CLIError(str(e)) from None
    except ValueError as e:  # data too short for the batch, etc.: still the user's input
        if "array is too big" not in str(e):   # NumPy's word for sizes past the address space
            raise CLIError(str(e).splitlines()[0]) from None
        raise CLIError(_too_big(config)) from None
    except MemoryError:
        raise CLIError(_too_big(config)) from None
    except OSError as e:
        raise CLIError(f"cannot use {out}: {e.strerror or e}") from None


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")   # Ctrl-C, kill, a closed terminal: the same clean stop


def on_stop_signals(handler) -> dict:
    """Install ``handler`` for the stop signals this platform has; -> the previous handlers."""
    previous = {}
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, handler)
    return previous


def say(text: str) -> None:
    """One line to stderr, even when the terminal has gone away (SIGHUP)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def cmd_train(args) -> int:
    try:
        trainer = make_trainer(args)
    except RunEnded as e:
        say(f"rnnjit: {e}")
        return 0
    stop_requests = []

    def on_signal(signum, frame):
        if stop_requests:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        stop_requests.append(signum)
        trainer.stop()

    previous = on_stop_signals(on_signal)
    events = trainer.run()
    last = None
    try:
        from .progress import progress_printer
        show = _print_json if args.json else progress_printer(trainer)
        try:
            for last in _drain_on_output_error(events, show, trainer):
                pass
        finally:
            getattr(show, "close", lambda: None)()
    except KeyboardInterrupt:
        events.close()
        say(f"rnnjit: stopped at once at step {trainer.step}, without saving; {trainer._kept()}. "
            f"Continue with: rnnjit train --resume {trainer.out_dir}")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if last is not None and last.reason in ("diverged", "error"):
        say(f"rnnjit: {last.message}")
        return 1
    if stop_requests:
        name = signal.Signals(stop_requests[0]).name
        say(f"rnnjit: stopped by {name} at step {trainer.step}; checkpoint saved. "
            f"Continue with: rnnjit train --resume {trainer.out_dir}")
        return 130
    return 0


def _drain_on_output_error(events, show, trainer):
    """Show each event; if the output breaks (a closed terminal or pipe), stop the run and go on
    reading its events silently, so that it still ends with a checkpoint."""
    broken = False
    for event in events:
        if not broken:
            try:
                if event.kind == "end":     # the progress bar's last frame goes above the summary
                    getattr(show, "close", lambda: None)()
                show(event)
            except OSError:
                broken = True
                trainer.stop()
        yield event


def _print_json(event) -> None:
    print(event.to_json(), flush=True)


# ---- sample -----------------------------------------------------------------------------------

def newest_run(dirs: list[str]) -> str:
    """The run to sample from: the one given, or of several the one whose checkpoint is the most
    recent (said on stderr)."""
    if len(dirs) == 1:
        return dirs[0]

    def saved(d):
        try:
            return os.path.getmtime(os.path.join(d, "checkpoint.npz"))
        except OSError:
            return -math.inf
    run = max(dirs, key=saved)
    print(f"rnnjit sample: {len(dirs)} runs given: sampling from the most recently saved, {run}", file=sys.stderr)
    return run


def load_model(run_dir: str, device: str = "cpu"):
    """-> (model, vocab, config) of a language-model run, for ``rnnjit sample``."""
    from .train.checkpoint import CheckpointError
    from .train.runs import load_run
    try:
        run = load_run(run_dir, device)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    if run.config.task != "charlm":
        raise CLIError(f"{run_dir} is a run of the {run.config.task} task: `rnnjit sample` writes text from "
                       "language-model runs (--task charlm)")
    return run.model, run.vocab, run.config


def cmd_sample(args) -> int:
    from .models import sample_stream
    run = newest_run(args.run)
    try:
        model, vocab, _ = load_model(run, args.device)
    except RuntimeError as e:  # no CUDA here
        raise CLIError(str(e)) from None
    if args.length < 0:
        raise CLIError(f"--length must be >= 0, got {args.length}")
    if args.stop is not None and len(args.stop) != 1:
        raise CLIError(f"--stop takes one character, got {args.stop!r}")
    if not args.temperature > 0:
        raise CLIError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
    if args.seed is not None and args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    chars = sample_stream(model, vocab, args.length, prime=args.prime, temperature=args.temperature,
                          top_k=args.top_k, argmax=args.argmax, stop=args.stop, seed=args.seed)
    from .compiling import CompileWatch
    watch = CompileWatch(lambda: print("rnnjit: compiling the kernels for this model: on its first run only, "
                                       "Numba caches them", file=sys.stderr, flush=True)).install()
    try:
        first = next(chars, "")          # the checks (the prime's characters...) run before any output
    except ValueError as e:
        message = str(e)                 # sample's messages name its arguments: give them the flags' names
        if message.startswith("stop"):
            message = "--" + message
        elif "vocabulary" in message:    # a prime character the model does not know (Vocab.encode's words)
            message = f"--prime: {message}"
        raise CLIError(message) from None
    finally:
        watch.remove()
    out = sys.stdout
    out.write(args.prime + first)
    for i, ch in enumerate(chars):       # as they are drawn: a long sample shows, Ctrl-C keeps what came
        out.write(ch)
        if ch == "\n" or i % 100 == 99:
            out.flush()
    out.write("\n")
    return 0


# ---- gradcheck, corpora -----------------------------------------------------------------------

def cmd_gradcheck(args) -> int:
    import numpy as np
    from .finite_differences import gradcheck
    from .nn import LAYERS
    for name in ("layers", "hidden", "input", "seq_len"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer")
    cell, nl = ("rnn", "relu") if args.cell == "rnn-relu" else (args.cell, "tanh")
    kw = {"nonlinearity": nl} if cell == "rnn" else {}
    layer = LAYERS[cell](args.input, args.hidden, num_layers=args.layers, bidirectional=args.bidirectional,
                         dtype=np.float64, seed=args.seed, **kw)
    errors = gradcheck(layer, seq_len=args.seq_len, seed=args.seed)
    worst = max(errors.values())
    ok = worst < 1e-6
    if args.json:
        print(json.dumps({"cell": args.cell, "layers": args.layers, "bidirectional": args.bidirectional,
                          "errors": errors, "worst": worst, "ok": ok}))
    else:
        from rich.console import Console
        from rich.table import Table
        table = Table(title=f"{layer!r}: analytic vs central differences (float64)")
        table.add_column("gradient of")
        table.add_column("worst relative error", justify="right")
        for k, v in errors.items():
            table.add_row(k, f"[{'green' if v < 1e-6 else 'red'}]{v:.2e}[/]")
        Console().print(table)
        print(("OK" if ok else "FAILED") + f": worst {worst:.2e} (threshold 1e-6)")
    return 0 if ok else 1


def cmd_corpora(args) -> int:
    from .data import list_corpora
    rows = list_corpora()
    if args.json:
        print(json.dumps(rows))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title="corpora (`rnnjit train --corpus NAME`, or a path to any UTF-8 text file)")
    for col in ("name", "size", "source", "licence", "available here"):
        table.add_column(col)
    for r in rows:
        size = f"{r['size']:,} chars" if r["size"] else "not built yet"
        avail = "[green]yes[/]" if r["available"] else f"[red]no[/]: {r['hint']}"
        table.add_row(r["name"], size, r["source"], r["licence"], avail)
    Console().print(table)
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "gradcheck": cmd_gradcheck, "corpora": cmd_corpora}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    reuse_freed_memory()   # steps reuse the last step's workspace pages (see rnnjit.machine)
    try:
        return handler(args)
    except (CLIError, ConfigError) as e:
        say(f"rnnjit {args.command}: error: {e}")
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        say(f"rnnjit {args.command}: interrupted")
        return 130
    except MemoryError:
        say(f"rnnjit {args.command}: error: out of memory: try smaller sizes")
        return 1
    except Exception as e:  # a bug: one line that says where, the traceback on request
        if os.environ.get("RNNJIT_DEBUG"):
            raise
        say(f"rnnjit {args.command}: internal error: {internal_error(e)} "
            "(a bug: please report it; RNNJIT_DEBUG=1 shows the traceback)")
        return 1


def internal_error(e: BaseException) -> str:
    """"ValueError: message (at engine.py:123)": the exception and the line it came from."""
    import traceback
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}{': ' + text if text else ''}{where}"


if __name__ == "__main__":
    sys.exit(main())
