"""The ``rnnjit-tui`` command: its options (those of ``rnnjit train``, plus ``--follow``), the
signals that stop it as ``q`` does, and what it says once the screen has closed."""

from __future__ import annotations

import argparse
import signal
import sys

from rnnjit.cli import say
from rnnjit.machine import reuse_freed_memory

from .app import EXIT_USAGE, DashboardApp

EXIT_SIGNALLED = 130     # what `rnnjit train` returns when a stop signal ends it


def build_parser() -> argparse.ArgumentParser:
    from rnnjit.cli_options import OneLineParser, _train_options
    p = OneLineParser(
        prog="rnnjit-tui",
        description="Watch a recurrent network learn: loss, gradient norm per timestep, samples. "
                    "Takes the options of `rnnjit train` and starts training at once (with none: a "
                    "2-layer LSTM on the shakespeare corpus), or follows a run with --follow.",
        epilog="Keys: p pause, s sample, +/- temperature, c checkpoint, l log scale, n layer, ? help, q quit.")
    p.add_argument("--follow", metavar="DIR", default=argparse.SUPPRESS,
                   help="watch the run that `rnnjit train` is writing (or wrote) in DIR instead of training")
    _train_options(p)
    return p


def main(argv=None) -> int:
    from rnnjit.cli import CLIError, RunEnded, make_trainer, on_stop_signals
    from rnnjit.train.config import ConfigError
    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()   # steps reuse the last step's workspace pages (see rnnjit.machine)
    follow = vars(args).pop("follow", None)
    if follow is not None:
        given = sorted(vars(args))
        if given:
            print(f"rnnjit-tui: error: --follow watches a run and takes no training options "
                  f"(got --{given[0].replace('_', '-')})", file=sys.stderr)
            return EXIT_USAGE
        app = DashboardApp(follow=follow)
    else:
        try:
            trainer = make_trainer(args)
        except (CLIError, ConfigError) as e:
            print(f"rnnjit-tui: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except RunEnded as e:   # `rnnjit-tui --follow DIR` shows what it logged
            print(f"rnnjit-tui: {e}. To look at it: rnnjit-tui --follow {args.resume}", file=sys.stderr)
            return 0
        app = DashboardApp(trainer=trainer)
    signalled = []

    def on_signal(signum, frame):   # kill or a closed terminal: stop as `q` does, checkpoint and all
        signalled.append(signum)
        app.request_stop()
        app.call_later(app.exit, 0)

    previous = on_stop_signals(on_signal)
    signal.signal(signal.SIGINT, previous.pop(signal.SIGINT))   # Textual reads Ctrl-C as a key
    try:
        app.run()
    except OSError:   # the terminal went away (SIGHUP): the run still ends with a checkpoint
        pass
    finally:
        app.request_stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if app.trainer is None:
        return app.return_code or 0
    if not app.trainer_done.wait(0.5):
        say("rnnjit-tui: finishing the current step and saving a checkpoint ...")
        app.trainer_done.wait()
    code = _report(app)
    return EXIT_SIGNALLED if signalled and code == 0 else code   # as `rnnjit train` stopped by a signal


def _report(app: DashboardApp) -> int:
    """After the screen closes: say where the run is, as `rnnjit train` does."""
    trainer, end = app.trainer, app.state.end or {}
    out = trainer.out_dir
    if app.error:
        say(f"rnnjit-tui: training failed: {app.error}")
        return 1
    if end.get("reason") in ("diverged", "error"):
        say(f"rnnjit-tui: {end.get('message')}")
        return 1
    if end.get("reason") == "done":
        hint = f"Sample from it with: rnnjit sample {out}" if trainer.config.task == "charlm" else f"The run is in {out}"
        say(f"rnnjit-tui: done: {trainer.step} steps. {hint}")
    else:
        say(f"rnnjit-tui: stopped at step {trainer.step}; checkpoint saved. "
            f"Continue with: rnnjit train --resume {out}")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
