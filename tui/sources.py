"""Reading a run's ``metrics.jsonl`` as it grows (``rnnjit-tui --follow DIR``).

:class:`JsonlTail` hands back the complete lines added since the last poll, parsed. A last line
without its newline is held back (the writer may be in the middle of it) and reported by
``partial``; a line that is not JSON (a run cut off mid-line, then resumed, leaves one), or not
an event the dashboard can read (a field of the wrong type, see ``state.well_formed``), is
skipped and counted in ``bad_lines``. If the file shrinks it starts over (``reset``).
"""

from __future__ import annotations

import os

from rnnjit.train.files import METRICS, parse_event

from .state import well_formed


class JsonlTail:
    def __init__(self, path: str, chunk: int = 1 << 22):
        self.path = path
        self.chunk = chunk
        self.pos = 0
        self.buf = b""
        self.lineno = 0             # complete lines read so far
        self.bad_lines: list[int] = []
        self.reset = False          # set when the file shrank and reading started over

    @property
    def partial(self) -> bool:
        """The file ends with an incomplete line (held back until its newline comes)."""
        return bool(self.buf.strip())

    def poll(self) -> list[dict]:
        """The events of the complete lines added since the last call (at most ``chunk`` bytes)."""
        self.reset = False
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return []
        if size < self.pos:   # truncated or replaced: start over
            self.pos, self.buf, self.lineno, self.bad_lines = 0, b"", 0, []
            self.reset = True
        if size == self.pos:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read(self.chunk)
        self.pos += len(data)
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        events = []
        for raw in lines:
            self.lineno += 1
            if not raw.strip():
                continue
            e = parse_event(raw)
            if e is None or not well_formed(e):
                self.bad_lines.append(self.lineno)
            else:
                events.append(e)
        return events


def describe_missing(run_dir: str) -> str | None:
    """Why there is nothing to follow in ``run_dir`` (None when its metrics.jsonl exists)."""
    if not os.path.exists(run_dir):
        return f"{run_dir}: no such directory. Waiting for a run to appear there (rnnjit train --out {run_dir})."
    if not os.path.isdir(run_dir):
        return f"{run_dir} is a file, not a run directory: give the directory that `rnnjit train` writes."
    if not os.path.exists(os.path.join(run_dir, METRICS)):
        return (f"no run in {run_dir}: it has no {METRICS}. A run directory written by `rnnjit train` "
                f"holds config.json, {METRICS} and checkpoint.npz. Waiting for one to appear.")
    return None
