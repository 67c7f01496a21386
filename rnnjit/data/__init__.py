"""Text in, batches out: corpora (built offline and cached), the character vocabulary, and
truncated-BPTT batching.

    text = load_corpus("shakespeare")               # or a path to any UTF-8 text file
    vocab = Vocab.from_text(text)
    train_ids, val_ids = split_train_val(vocab.encode(text))
    stream = CharStream(train_ids, batch=32, seq_len=100)
    x, y, reset = stream.next_batch()                # (T, B) int32 each; zero h when reset
"""

from rnnjit.data.batching import CharStream, split_train_val
from rnnjit.data.corpora import (
    CORPORA,
    DEFAULT_CORPUS,
    CorpusError,
    CorpusInfo,
    corpus_info,
    list_corpora,
    load_corpus,
)
from rnnjit.data.vocab import Vocab

__all__ = [
    "CORPORA",
    "DEFAULT_CORPUS",
    "CharStream",
    "CorpusError",
    "CorpusInfo",
    "Vocab",
    "corpus_info",
    "list_corpora",
    "load_corpus",
    "split_train_val",
]
