"""Inference: ``rnnjit.no_grad()`` and the cells' inference kernels keep nothing for backward and
give the training forward's outputs, bit for bit (``rnnjit/grad_mode.py``, ``dense.ring_row``)."""

import threading

import numpy as np
import pytest

import rnnjit
from rnnjit.kernels import dense, gru, lstm, rnn
from rnnjit.kernels.cells import CELLS

DTYPES = (np.float32, np.float64)


def weights(G, I, H, dtype, rng):
    return ((rng.standard_normal((G * H, I)) * 0.4).astype(dtype), (rng.standard_normal((G * H, H)) * 0.4).astype(dtype),
            rng.standard_normal(G * H).astype(dtype), rng.standard_normal(G * H).astype(dtype))


def on_threads(n):
    """numba's thread count for a block (skipped when there are fewer)."""
    import contextlib

    import numba

    @contextlib.contextmanager
    def block():
        before = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            yield
        finally:
            numba.set_num_threads(before)
    if n > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"{n} threads: Numba has {numba.config.NUMBA_NUM_THREADS}")
    return block()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_kernels_give_forwards_outputs(cell, dtype, threads):
    """``*_inference`` and ``*_inference_onehot`` against ``*_forward``: hs (and the LSTM's last
    cell state) equal, for batches of 1, 3 and 16 (16 runs on shares with two threads), one step
    and several, both directions; and B = 16, H = 64, T = 37, whose gates take a chunk of 16
    steps at a time (the last chunk 5 steps), so that the dense input's buffer is reused."""
    rng = np.random.default_rng(11)
    G = {"lstm": 4, "gru": 3}[cell]
    with on_threads(threads):
        for B, T, I, H in ((1, 1, 3, 4), (3, 6, 5, 4), (16, 6, 5, 8), (16, 37, 9, 64)):
            for reverse in (False, True):
                x = rng.standard_normal((T, B, I)).astype(dtype)
                ids = rng.integers(0, I, (T, B))
                h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
                W = weights(G, I, H, dtype, rng)
                if cell == "lstm":
                    for fwd, inf, inp in ((lstm.lstm_forward, lstm.lstm_inference, x),
                                          (lstm.lstm_forward_onehot, lstm.lstm_inference_onehot, ids)):
                        hs, cs, _ = fwd(inp, h0, c0, *W, reverse)
                        hs2, c_n = inf(inp, h0, c0, *W, reverse)
                        assert np.array_equal(hs, hs2), (fwd.__name__, B, T, reverse)
                        assert np.array_equal(cs[0] if reverse else cs[T], c_n), (fwd.__name__, B, T, reverse)
                else:
                    for fwd, inf, inp in ((gru.gru_forward, gru.gru_inference, x),
                                          (gru.gru_forward_onehot, gru.gru_inference_onehot, ids)):
                        assert np.array_equal(fwd(inp, h0, *W, reverse)[0], inf(inp, h0, *W, reverse)), \
                            (fwd.__name__, B, T, reverse)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_gates_buffer_of_one_chunk_is_reused_step_after_step(cell, threads):
    """The recurrences with a buffer of 3 rows for the input part, filled 3 steps at a time
    (``project_chunk``; T = 8 leaves a last chunk of 2, which in reverse lands in rows 1 and 2:
    ``ring_row``), give what they give with a buffer of all T rows. B = 16 also runs on shares
    with two threads, where the recurrence makes itself a buffer of all T rows."""
    rng = np.random.default_rng(12)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    T, I, H = 8, 5, 6
    with on_threads(threads):
        for B in (2, 16):
            for reverse in (False, True):
                x = rng.standard_normal((T, B, I))
                h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
                W_ih, W_hh, b, b_hh = weights(G, I, H, np.float64, rng)
                if cell == "gru":
                    b = gru.gru_input_bias(b, b_hh)
                runs = []
                for rows in (T, 3):
                    inputs = dense.dense_inputs(x, W_ih, b, 3)
                    gates = np.empty((rows, B, G * H))
                    if cell == "lstm":
                        hs, cs = lstm.lstm_recurrence(gates, h0, c0, W_hh, reverse, dense=inputs)
                        runs.append((hs, cs[0] if reverse else cs[T % cs.shape[0]]))
                    elif cell == "gru":
                        runs.append((gru.gru_recurrence(gates, h0, W_hh, b_hh, reverse, dense=inputs)[0],))
                    else:
                        runs.append((rnn.rnn_recurrence(gates, h0, W_hh, reverse, False, dense=inputs),))
                for a, b_ in zip(*runs):
                    assert np.array_equal(a, b_), (cell, B, reverse)


def test_ring_rows_hold_each_chunk_in_consecutive_rows():
    """Every chunk that ``project_chunk`` writes (steps s .. s + n - 1 in reading order, s a
    multiple of R) lands in consecutive rows inside the buffer, and no two steps of one chunk
    share a row."""
    for T in range(1, 23):
        for R in range(1, T + 1):
            for reverse in (False, True):
                for s in range(0, T, R):
                    n = min(R, T - s)
                    t0 = T - s - n if reverse else s
                    rows = [dense.ring_row(t, T, R, reverse) for t in range(t0, t0 + n)]
                    assert rows == list(range(rows[0], rows[0] + n)) and rows[-1] < R, (T, R, reverse, s)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_no_grad_layers_give_the_same_outputs_and_keep_nothing(cell, bidirectional):
    """A stacked layer inside ``rnnjit.no_grad()``: outputs and final states equal the training
    forward's (dense and one-hot input); backward afterwards is a one-line error; the switch is
    back on after the block, even one that raised."""
    rng = np.random.default_rng(13)
    layer = {"lstm": rnnjit.LSTM, "gru": rnnjit.GRU, "rnn": rnnjit.RNN}[cell](6, 5, num_layers=2,
                                                                           bidirectional=bidirectional)
    x = rng.standard_normal((7, 3, 6)).astype(np.float32)
    ids = rng.integers(0, 6, (7, 3))
    for run in (lambda: layer(x), lambda: layer.forward_onehot(ids)):
        out, state = run()
        with rnnjit.no_grad():
            assert not rnnjit.is_grad_enabled()
            out2, state2 = run()
        assert rnnjit.is_grad_enabled()
        assert np.array_equal(out, out2)
        for a, b in zip(state if isinstance(state, tuple) else (state,), state2 if isinstance(state2, tuple) else (state2,)):
            assert np.array_equal(a, b)
        with pytest.raises(ValueError, match="inside rnnjit.no_grad"):
            layer.backward(np.ones_like(out))
    with pytest.raises(RuntimeError):
        with rnnjit.no_grad():
            raise RuntimeError("boom")
    assert rnnjit.is_grad_enabled()
    out, _ = layer(x)
    layer.backward(np.ones_like(out))   # a forward outside no_grad can be differentiated again


def test_no_grad_belongs_to_the_thread_that_set_it():
    """A thread started inside ``no_grad`` (a training thread beside a sampling one) keeps its
    gradients."""
    seen = []
    with rnnjit.no_grad():
        t = threading.Thread(target=lambda: seen.append(rnnjit.is_grad_enabled()))
        t.start()
        t.join()
        seen.append(rnnjit.is_grad_enabled())
    assert seen == [True, False]


def test_models_evaluate_without_keeping_the_layers_caches():
    """``CharLM.loss`` runs inside ``no_grad``: the loss is the one the training forward's logits
    give, and the layer keeps nothing, so the gates of a validation batch are not held."""
    from rnnjit.models.char_lm import CharLM
    from rnnjit.nn.recurrent import NOTHING_KEPT
    rng = np.random.default_rng(14)
    for cell in ("lstm", "gru"):
        m = CharLM(11, 8, 2, cell, seed=3)
        x, y = rng.integers(0, 11, (6, 4)), rng.integers(0, 11, (6, 4))
        z, _, _ = m.logits(x, m.initial_state(4))
        expected = float(m.k.cross_entropy(z, m._ids(y)))
        loss, _ = m.loss(x, y, m.initial_state(4))
        assert loss == expected
        assert m.rnn._cache is NOTHING_KEPT


def test_cells_registry_has_inference_for_the_gated_cells():
    """The layers find the inference kernels through the registry; the RNN's forward is its own."""
    assert CELLS["lstm"].infer is not None and CELLS["lstm"].infer_onehot is not None
    assert CELLS["gru"].infer is not None and CELLS["gru"].infer_onehot is not None
    assert CELLS["rnn"].infer is None
