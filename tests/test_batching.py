"""Truncated-BPTT batching: what each (T, B) batch holds and how it follows the previous one."""

from __future__ import annotations

import numpy as np
import pytest

from rnnjit.data import CharStream, split_train_val

B, T = 3, 4


def make_stream(n: int = 100, batch: int = B, seq_len: int = T) -> tuple[np.ndarray, CharStream]:
    ids = np.arange(n, dtype=np.int32)  # id == position in the text, so checks are arithmetic
    return ids, CharStream(ids, batch=batch, seq_len=seq_len)


def test_shapes_and_counts():
    _, stream = make_stream(100)
    assert stream.stream_len == 99 // B == 33
    assert stream.chunks_per_epoch == 33 // T == 8
    x, y, reset = stream.next_batch()
    assert x.shape == y.shape == (T, B)
    assert x.dtype == y.dtype == np.int32
    assert x.flags.c_contiguous and y.flags.c_contiguous
    assert reset is True


def test_targets_are_the_next_character():
    _, stream = make_stream(100)
    for _ in range(2 * stream.chunks_per_epoch):
        x, y, _ = stream.next_batch()
        np.testing.assert_array_equal(y, x + 1)  # ids are positions: next char = position + 1


def test_targets_follow_the_text_not_arithmetic():
    ids = np.random.default_rng(0).integers(0, 50, size=200).astype(np.int32)
    stream = CharStream(ids, batch=B, seq_len=T)
    x, y, _ = stream.next_batch()
    L = stream.stream_len
    for b in range(B):
        np.testing.assert_array_equal(x[:, b], ids[b * L : b * L + T])
        np.testing.assert_array_equal(y[:, b], ids[b * L + 1 : b * L + T + 1])


def test_streams_are_contiguous_and_chunks_continue_where_they_stopped():
    _, stream = make_stream(100)
    L = stream.stream_len
    columns = [[] for _ in range(B)]
    for k in range(stream.chunks_per_epoch):
        x, _, _ = stream.next_batch()
        for b in range(B):
            if k:  # chunk k of stream b starts right after chunk k-1 ended
                assert x[0, b] == columns[b][-1] + 1
            columns[b].extend(x[:, b].tolist())
    for b in range(B):
        used = stream.chunks_per_epoch * T
        assert columns[b] == list(range(b * L, b * L + used))  # stream b = ids[b*L : (b+1)*L]


def test_reset_only_at_epoch_start():
    _, stream = make_stream(100)
    flags = [stream.next_batch()[2] for _ in range(3 * stream.chunks_per_epoch)]
    starts = [i for i, flag in enumerate(flags) if flag]
    assert starts == [0, stream.chunks_per_epoch, 2 * stream.chunks_per_epoch]
    assert stream.epoch == 3 and stream.position == 0


def test_next_epoch_repeats_the_first():
    _, stream = make_stream(100)
    first = [stream.next_batch()[0].copy() for _ in range(stream.chunks_per_epoch)]
    again = [stream.next_batch()[0] for _ in range(stream.chunks_per_epoch)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_state_round_trip():
    ids, stream = make_stream(100)
    for _ in range(stream.chunks_per_epoch + 3):
        stream.next_batch()
    state = stream.state()
    assert all(isinstance(v, int) for v in state.values())
    assert state["position"] == 3 and state["epoch"] == 1

    resumed = CharStream(ids, batch=B, seq_len=T)
    resumed.load_state(state)
    for _ in range(stream.chunks_per_epoch + 2):
        x1, y1, r1 = stream.next_batch()
        x2, y2, r2 = resumed.next_batch()
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert r1 == r2
    assert resumed.state() == stream.state()


def test_load_state_rejects_another_shape():
    ids, stream = make_stream(100)
    other = CharStream(ids, batch=B + 1, seq_len=T)
    with pytest.raises(ValueError, match="batch"):
        other.load_state(stream.state())


def test_iter_epoch_does_not_move_training_position():
    _, stream = make_stream(100)
    stream.next_batch()
    stream.next_batch()
    batches = list(stream.iter_epoch())
    assert len(batches) == stream.chunks_per_epoch
    np.testing.assert_array_equal(batches[0][0], CharStream(np.arange(100), B, T).next_batch()[0])
    assert stream.position == 2 and stream.epoch == 0


def test_smallest_corpus_gives_one_chunk():
    _, stream = make_stream(B * T + 1)
    assert stream.chunks_per_epoch == 1
    x, y, reset = stream.next_batch()
    assert reset and x.max() == B * T - 1 and y.max() == B * T
    assert stream.next_batch()[2]  # the next batch starts a new epoch


def test_too_short_corpus_says_what_is_needed():
    with pytest.raises(ValueError) as error:
        CharStream(np.zeros(50, dtype=np.int32), batch=32, seq_len=100)
    message = str(error.value)
    assert message == (
        "corpus has 50 characters; batch 32 x seq-len 100 needs at least 3201: "
        "use a smaller --batch or --seq-len"
    )


@pytest.mark.parametrize("batch, seq_len", [(0, 4), (3, -1), (2.0, 4), (True, 4)])
def test_batch_and_seq_len_must_be_positive_ints(batch, seq_len):
    with pytest.raises(ValueError, match="positive integer"):
        CharStream(np.arange(100), batch=batch, seq_len=seq_len)


def test_batches_are_read_only_views():
    _, stream = make_stream(100)
    x, _, _ = stream.next_batch()
    with pytest.raises(ValueError):
        x[0, 0] = 7


def test_split_is_the_last_ten_percent():
    ids = np.arange(1000)
    train, val = split_train_val(ids)
    np.testing.assert_array_equal(train, ids[:900])
    np.testing.assert_array_equal(val, ids[900:])
    train, val = split_train_val(ids, val_fraction=0.25)
    assert len(train) == 750 and val[0] == 750
    with pytest.raises(ValueError):
        split_train_val(ids, val_fraction=1.0)
