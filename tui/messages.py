"""The messages the dashboard's worker threads post to the screen (Textual's ``post_message``,
which never blocks the thread), and the engine event as the dict they carry."""

from __future__ import annotations

from textual.message import Message


class Events(Message):
    """A batch of engine events, as dicts (``event.to_dict()``, or lines of metrics.jsonl)."""

    def __init__(self, events: list[dict]):
        super().__init__()
        self.events = events


class Note(Message):
    """Set (or, with an empty text, clear) one line of the message bar."""

    def __init__(self, slot: str, text: str):
        super().__init__()
        self.slot, self.text = slot, text


class Held(Message):
    """The trainer is now held (paused) or released."""

    def __init__(self, held: bool):
        super().__init__()
        self.held = held


class CaughtUp(Message):
    """--follow: everything written so far has been read."""


class Finished(Message):
    """The training worker is done; ``error`` is a traceback if the trainer raised."""

    def __init__(self, error: str = ""):
        super().__init__()
        self.error = error


def as_dict(event) -> dict:
    """An engine event as the dict ``to_dict()`` gives, without its deep copy (the trainer's thread
    pays for this; the engine builds a fresh list of norms for every step, nothing is shared)."""
    try:
        return dict(vars(event), event=event.kind)
    except TypeError:   # a dataclass with __slots__
        return event.to_dict()
