"""A run directory's files, written so that a crash at any moment never leaves half of one.

A run directory holds three files::

    config.json      the configuration (written once, atomically)
    checkpoint.npz   the latest checkpoint (replaced atomically: see checkpoint.py)
    metrics.jsonl    every event, one JSON object per line, appended

and one process at a time writes them (``RunLock``): two trainers in one directory would each
write their own checkpoints and lines, and the files would stop agreeing with each other.

**Whole files** (``atomic_write``): write a temporary file in the same directory, flush, fsync,
rename it over the destination, fsync the directory. A rename within one file system is atomic,
so a reader, or a process started after a SIGKILL or a power cut, sees the old file or the new
one, never a mixture. If the write fails (a full disk) the temporary file is removed and the old
file is untouched.

**Appended lines** (``MetricsLog``): renaming the whole log for every step would cost O(steps²),
so each event is appended with a single ``write`` of the whole line (``O_APPEND``). A process
killed mid-write can still leave the last line without its newline; the log is fsynced at each
checkpoint. Readers skip such a torn last line with a warning (``read_metrics``); the writer,
when a run is resumed, cuts it off and drops the lines of the steps after the checkpoint (they
are about to be trained again, identically), so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

try:
    import fcntl
except ImportError:        # Windows: no advisory locks, so no guard against a second writer
    fcntl = None

METRICS = "metrics.jsonl"
CONFIG = "config.json"
TEMP_PREFIX = ".rnnjit-"


_UMASK = os.umask(0o022)       # read once (setting is the only way to read it), then put back
os.umask(_UMASK)


class RunBusyError(RuntimeError):
    """Another writer holds the run directory: another process, or an unclosed Trainer in this one."""


_HELD: dict[str, int] = {}   # realpath -> pid: the run directories this process holds (for the message)


class RunLock:
    """The right to write a run directory: an exclusive ``flock`` on the directory itself (no
    file of its own, so nothing is left behind). The operating system drops the lock when the
    process ends, however it ends (a SIGKILL included), so a killed run can always be resumed;
    a second writer while the first lives is refused with ``RunBusyError``, which says whether
    the first is this process (another Trainer not closed) or another one."""

    def __init__(self, directory: str):
        self._fd, self._held = -1, False
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(directory, os.O_RDONLY)
        self._key = os.path.realpath(directory)
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.release()
            if _HELD.get(self._key) == os.getpid():
                raise RunBusyError(f"{directory} is already open in this process (another Trainer): "
                                   "close() it or let its run() end") from None
            raise RunBusyError(f"{directory} is being written by another rnnjit process: wait for it to "
                               "finish or stop it, or train into another --out") from None
        _HELD[self._key], self._held = os.getpid(), True

    def release(self) -> None:
        if self._fd >= 0:
            if self._held:
                _HELD.pop(self._key, None)
                self._held = False
            os.close(self._fd)        # closing the file drops the lock
            self._fd = -1

    def __del__(self):
        self.release()


class RunFileWarning(UserWarning):
    """A run file needed mending (a torn line, a temporary file left by a killed run)."""


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> str:
    """Create or replace ``path`` atomically: ``write(f)`` fills a binary temporary file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)     # as open() would make it (mkstemp's are private: 0600)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)
    return path


def write_json(path: str, obj) -> str:
    data = (json.dumps(obj, indent=2) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def remove_temporaries(directory: str) -> list[str]:
    """Delete the temporary files a killed writer left in ``directory``; -> their names."""
    gone = []
    try:
        names = os.listdir(directory)
    except OSError:
        return gone
    for name in names:
        if name.startswith(TEMP_PREFIX) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
                gone.append(name)
            except OSError:
                pass
    return gone


# ---- metrics.jsonl ------------------------------------------------------------------------------

def parse_event(line: bytes) -> dict | None:
    """One line of metrics.jsonl -> its event, or None if it is not one (not JSON, no "event")."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def read_metrics(path: str) -> list[dict]:
    """The events in a ``metrics.jsonl``. A torn last line (a run killed mid-write) and any line
    that is not an event are skipped with a ``RunFileWarning`` naming the line."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with its newline
    events = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        event = parse_event(raw)
        if event is None:
            warnings.warn(f"{path}: line {i} is not an event: skipped", RunFileWarning, stacklevel=2)
        else:
            events.append(event)
    if torn.strip():
        warnings.warn(f"{path}: the last line (line {len(lines) + 1}) is incomplete, the run was cut off "
                      "while writing it: skipped", RunFileWarning, stacklevel=2)
    return events


def logged_at(path: str, step: int) -> set[str]:
    """The kinds of the events a ``metrics.jsonl`` holds for ``step`` ("eval", "end:done", ...;
    an end event is named with its reason). Empty when the file is missing or unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunFileWarning)
            events = read_metrics(path)
    except OSError:
        return set()
    return {e["event"] + (f":{e.get('reason')}" if e["event"] == "end" else "")
            for e in events if e.get("step") == step}


class MetricsLog:
    """Appends events to ``metrics.jsonl``, one ``write`` per line.

    ``MetricsLog(path, keep_through=step)`` (a resumed run) first mends the file: it cuts off a
    torn last line and drops the lines of events after ``step``, rewriting the file atomically.
    """

    def __init__(self, path: str, keep_through: int | None = None):
        self.path = path
        self.mended = ""
        if keep_through is not None and os.path.exists(path):
            self.mended = self._mend(keep_through)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def _mend(self, step: int) -> str:
        with open(self.path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        torn = lines.pop().strip() != b""
        kept, dropped = [], 0
        for raw in lines:
            event = parse_event(raw)
            if event is not None and isinstance(event.get("step"), int) and event["step"] > step:
                dropped += 1
            elif raw.strip():
                kept.append(raw)
        if not torn and not dropped:
            return ""
        body = b"".join(line + b"\n" for line in kept)
        atomic_write(self.path, lambda f: f.write(body))
        what = []
        if torn:
            what.append("cut off its torn last line")
        if dropped:
            what.append(f"dropped {dropped} line{'s' if dropped > 1 else ''} after step {step}, which will be trained again")
        return f"{METRICS}: " + " and ".join(what)

    def write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        while data:  # a regular file takes it in one go; a short write is finished, never torn
            n = os.write(self._fd, data)
            data = data[n:]

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = -1
