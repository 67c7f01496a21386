"""What `rnnjit train` shows on a terminal while it trains: a rich progress bar, and a line for
each validation, sample, checkpoint and warning.

``progress_printer(trainer)`` returns ``show(event)`` with a ``close()``; the CLI feeds it the
engine's events (``--json`` prints them instead).

The first run of a model compiles its kernels (half a minute or more on a slow CPU) before the
first step ends, and nothing would move on the screen meanwhile: a line says that it is
compiling (``compiling.CompileWatch``: a warm cache shows nothing), then how many functions it
compiled and in how long.
"""

import math

from .compiling import CompileWatch
from .train.config import LENGTH_TASKS


def progress_printer(trainer):
    """-> show(event), with a ``close()``: rich progress on the terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=False, soft_wrap=True)    # piped into a log, a line stays one line
    c = trainer.config
    lm = c.task == "charlm"     # bits per character, temperature, `rnnjit sample`: a language model's
    if lm:
        what, shape = f"corpus {c.corpus}", f"batch {c.batch} x seq-len {c.seq_len}"
    else:
        what = f"task {c.task}" + (f" (T={c.length})" if c.task in LENGTH_TASKS else "")
        shape = f"batch {c.batch}"
    console.print(f"[bold]rnnjit train[/]: {c.cell} {c.layers}x{c.hidden} on {escape(what)}, "
                  f"{shape}, {c.optimizer} lr {c.lr}, {c.dtype} -> {escape(trainer.out_dir)}")
    loss_column = "loss [bold]{task.fields[loss]}[/]" + (" ({task.fields[bpc]} bpc)" if lm else "")
    progress = Progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn(loss_column),
                        TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn(), console=console)
    episodes = []

    def compiling():
        episodes.append(None)
        progress.console.print("[dim]compiling the kernels for this model: on its first run only, Numba caches them[/]"
                               if len(episodes) == 1 else "[dim]compiling more kernels (first run only)[/]")

    watch = CompileWatch(compiling).install()
    progress.start()
    bar = progress.add_task("train", total=c.steps, completed=trainer.step, loss="-", bpc="-", tps="-")
    smooth = None

    def show(event):
        nonlocal smooth
        kind = event.kind
        out = progress.console.print
        if watch.began is not None and kind != "start":
            n = watch.functions
            out(f"[dim]compiled {n} function{'' if n == 1 else 's'} in {watch.seconds():.1f} s[/]")
            watch.reset()
        if kind == "start":
            out(f"{event.num_parameters:,} parameters"
                + (f", vocabulary of {event.vocab_size}" if event.vocab_size else "")
                + (f"; resumed at step {event.step}" if event.resumed else ""))
            for note in event.notes:
                out(f"[yellow]note:[/] {escape(note)}")
        elif kind == "step":
            smooth = event.loss if smooth is None else 0.95 * smooth + 0.05 * event.loss
            progress.update(bar, completed=event.step, loss=f"{smooth:.3f}", bpc=f"{smooth / math.log(2):.3f}",
                            tps=f"{event.tokens_per_s:,.0f}")
        elif kind == "eval":
            extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in event.metrics.items())
            bpc = f" ({event.val_bpc:.3f} bpc)" if lm else ""
            out(f"step {event.step}: validation loss [bold]{event.val_loss:.4f}[/]{bpc}{escape(extra)}")
        elif kind == "sample":
            out(f"[dim]sample at step {event.step}" + (f", temperature {event.temperature}:[/]" if lm else ":[/]"))
            out(event.text, markup=False, highlight=False)
        elif kind == "checkpoint":
            out(f"[dim]checkpoint: {escape(event.path)}[/]")
        elif kind == "warning":
            out(f"[yellow]warning:[/] {escape(event.message)}")
        elif kind == "end" and event.reason == "done":
            out(f"done: {event.step} steps. " + (f"Sample from it with: rnnjit sample {escape(trainer.out_dir)}"
                                                  if lm else f"The run is in {escape(trainer.out_dir)}"))

    def close():
        watch.remove()
        try:
            progress.stop()
        except OSError:
            pass

    show.close = close
    return show
