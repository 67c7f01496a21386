"""One calling convention for every CUDA cell: the twin of ``rnnjit/kernels/cells.py``.

    forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity)
        -> out (T, B, H), h_n (B, H), c_n (B, H) or None, cache
    backward(cache, dout, dh_n, dc_n)
        -> dx, dh0, dc0 or None, dW_ih, dW_hh, db_ih, db_hh, norms (T,)

Every array in and out is a device array (``DeviceNDArray``), C-contiguous and of one dtype
(float32 or float64), ``norms`` included: it is a float64 device array, as the CPU's is a
float64 NumPy array (``to_host(norms)`` brings it back). ``out``, ``h_n`` and ``c_n`` are views
into the state buffers kept in ``cache``, exactly as on the CPU. ``c0`` and ``dc_n`` are ignored
(pass None) for cells without a cell state.

    >>> from rnnjit.kernels.cuda.cells import CUDA_CELLS
    >>> out, h_n, c_n, cache = CUDA_CELLS["lstm"].forward(x_d, h0_d, c0_d, *weights_d, False, "tanh")
"""

from ..cells import Cell
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward


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


CUDA_CELLS = {
    "rnn": Cell("rnn", 1, False, _rnn_forward, _rnn_backward),
    "lstm": Cell("lstm", 4, True, _lstm_forward, _lstm_backward),
    "gru": Cell("gru", 3, False, _gru_forward, _gru_backward),
}
