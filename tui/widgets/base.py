"""A widget drawn line by line from cached strips (Textual's line API).

The dashboard repaints a few times a second while the trainer shares the CPU and the GIL, so
its widgets skip Textual's text pipeline (markup, wrapping, layout): they build their lines
once per data change and size, in the panel's colours, and hand them back from ``render_line``.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget


class StripWidget(Widget):
    def __init__(self, **kw):
        super().__init__(**kw)
        self._cache: tuple | None = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache = None   # new colours (a theme change)

    def invalidate(self) -> None:
        """The data changed: build the lines again at the next paint."""
        self._cache = None
        self.refresh()

    def build(self, width: int, height: int) -> list[Strip]:   # pragma: no cover - abstract
        raise NotImplementedError

    def render_line(self, y: int) -> Strip:
        w, h = self.size
        if self._cache is None or self._cache[0] != (w, h):
            base = self.rich_style   # the panel's colours, under the widget's own
            lines = self.build(w, h) if w > 0 and h > 0 else []
            self._cache = ((w, h), [line.apply_style(base) for line in lines], Strip.blank(w, base))
        lines = self._cache[1]
        return lines[y] if y < len(lines) else self._cache[2]


class TextLines(StripWidget):
    """Lines of styled text, cut to the width with an ellipsis: ``update([[(text, style), ...], ...])``."""

    DEFAULT_CSS = """
    TextLines { height: 1; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._rows: list[list[tuple[str, Style | None]]] = []

    def update(self, rows: list[list[tuple[str, Style | None]]]) -> None:
        if rows != self._rows:
            self._rows = rows
            self.invalidate()

    @property
    def plain(self) -> str:
        return "\n".join("".join(t for t, _ in row) for row in self._rows)

    def build(self, width: int, height: int) -> list[Strip]:
        lines = []
        for row in self._rows[:height]:
            strip = Strip([Segment(text, style) for text, style in row if text])
            if strip.cell_length > width:
                strip = Strip(list(strip.crop(0, width - 1)) + [Segment("…")], width)
            lines.append(strip.extend_cell_length(width))
        return lines
