"""One calling convention for every cell, and the registry that names them.

Each cell's sequence kernels take slightly different arguments (the LSTM has a cell state, the
GRU keeps an extra cache array, the RNN has a choice of nonlinearity). The adapters here give
them all the same shape, so a layer is written once:

    forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity)
        -> out (T, B, H), h_n (B, H), c_n (B, H) or None, cache
    backward(cache, dout, dh_n, dc_n)
        -> dx, dh0, dc0 or None, dW_ih, dW_hh, db_ih, db_hh, norms (T,)

All arrays are C-contiguous and of one dtype; the adapters are plain Python and cost a few
microseconds per call (once per layer and direction, never per timestep).
A new cell is one kernel file plus one entry in ``CELLS``.
"""

from dataclasses import dataclass
from typing import Callable

from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int               # blocks of H rows in W_ih and W_hh
    has_cell_state: bool     # the LSTM carries c beside h
    forward: Callable
    backward: Callable


def make_cells(rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward):
    """The registry for one set of sequence kernels (the CPU ones here; ``cuda/cells.py`` passes
    the CUDA twins, which take and return device arrays but are called the same way)."""

    def _rnn_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        relu = nonlinearity == "relu"
        hs = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, relu)
        T = x.shape[0]
        out, h_n = (hs[:T], hs[0]) if reverse else (hs[1:], hs[T])
        return out, h_n, None, (x, W_ih, W_hh, hs, reverse, relu)

    def _rnn_backward(cache, dout, dh_n, dc_n):
        x, W_ih, W_hh, hs, reverse, relu = cache
        dx, dh0, dW_ih, dW_hh, db_ih, db_hh, norms = rnn_backward(x, W_ih, W_hh, hs, dout, dh_n, reverse, relu)
        return dx, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms

    def _lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        hs, cs, gates = lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse)
        T = x.shape[0]
        if reverse:
            out, h_n, c_n = hs[:T], hs[0], cs[0]
        else:
            out, h_n, c_n = hs[1:], hs[T], cs[T]
        return out, h_n, c_n, (x, W_ih, W_hh, hs, cs, gates, reverse)

    def _lstm_backward(cache, dout, dh_n, dc_n):
        x, W_ih, W_hh, hs, cs, gates, reverse = cache
        return lstm_backward(x, W_ih, W_hh, hs, cs, gates, dout, dh_n, dc_n, reverse)

    def _gru_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        hs, gates, hns = gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse)
        T = x.shape[0]
        out, h_n = (hs[:T], hs[0]) if reverse else (hs[1:], hs[T])
        return out, h_n, None, (x, W_ih, W_hh, hs, gates, hns, reverse)

    def _gru_backward(cache, dout, dh_n, dc_n):
        x, W_ih, W_hh, hs, gates, hns, reverse = cache
        dx, dh0, dW_ih, dW_hh, db_ih, db_hh, norms = gru_backward(x, W_ih, W_hh, hs, gates, hns, dout, dh_n, reverse)
        return dx, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms

    return {
        "rnn": Cell("rnn", 1, False, _rnn_forward, _rnn_backward),
        "lstm": Cell("lstm", 4, True, _lstm_forward, _lstm_backward),
        "gru": Cell("gru", 3, False, _gru_forward, _gru_backward),
    }


CELLS = make_cells(rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward)
