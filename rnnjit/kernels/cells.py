"""One calling convention for every cell, and the registry that names them.

Each cell's sequence kernels take slightly different arguments (the LSTM has a cell state, the
GRU keeps an extra cache array, the RNN has a choice of nonlinearity). The adapters here give
them all the same shape, so a layer is written once:

    forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity)
        -> out (T, B, H), h_n (B, H), c_n (B, H) or None, cache
    forward_onehot(ids, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity)
        the same for one-hot inputs given as indices ids (T, B) (CPU only; None on the GPU)
    infer(...), infer_onehot(...)
        ``forward`` and ``forward_onehot`` keeping nothing for backward (cache None): the
        cells' inference kernels, for ``rnnjit.no_grad()`` (CPU only; None on the GPU)
    backward(cache, dout, dh_n, dc_n, need_dx=True, into=None)
        -> dx or None, dh0, dc0 or None, dW_ih, dW_hh, db_ih, db_hh, norms (T,)

``into`` (dh0, dc0, dW_ih, dW_hh, db_ih, db_hh, norms; None for any) are arrays for the results
after dx, a layer's own gradients and state stacks: they are written and returned. The CUDA
twins compute into them (no new arrays, and none of the device-to-device copies that cost a
driver call each); on the CPU the results are copied into them.

On the CPU, backward runs the cell's recurrent part (``*_recurrence_backward``, which returns
the gate gradients dG) and then the input part: dW_ih = dG^T x with one GEMM, or a scatter-add of
dG into the columns of the characters read when the input was one-hot, and dx = dG W_ih only when
``need_dx`` (PyTorch likewise skips the input's gradient when the input does not require one).
The CUDA twins run whole-sequence kernels; there ``need_dx=False`` only drops dx.

All arrays are C-contiguous and of one dtype; the adapters are plain Python and cost a few
microseconds per call (once per layer and direction, never per timestep).
A new cell is one kernel file plus one entry in ``CELLS``.
"""

from dataclasses import dataclass
from typing import Callable

from .dense import gather_weight_grad, input_grad, input_weight_grad
from .gru import (gru_backward, gru_forward, gru_forward_onehot, gru_inference, gru_inference_onehot,
                  gru_recurrence_backward)
from .lstm import (lstm_backward, lstm_forward, lstm_forward_onehot, lstm_inference, lstm_inference_onehot,
                   lstm_recurrence_backward)
from .rnn import rnn_backward, rnn_forward, rnn_forward_onehot, rnn_recurrence_backward


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int               # blocks of H rows in W_ih and W_hh
    has_cell_state: bool     # the LSTM carries c beside h
    forward: Callable
    backward: Callable
    forward_onehot: Callable | None = None   # None: the caller builds the one-hot vectors
    infer: Callable | None = None            # None: no_grad runs ``forward``
    infer_onehot: Callable | None = None


def _split(states, T, reverse):
    """State buffer (T+1, B, H) -> the outputs (T rows) and the final state."""
    return (states[:T], states[0]) if reverse else (states[1:], states[T])


def _without_dc0(into):
    """``into`` for a cell without a cell state, whose kernels return no dc0."""
    return None if into is None else (into[0], *into[2:])


def make_cells(rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward):
    """The registry for one set of whole-sequence kernels (the CUDA twins, which take and return
    device arrays but are called the same way as the CPU's ``*_forward`` / ``*_backward``)."""

    def _rnn_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        relu = nonlinearity == "relu"
        hs = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, relu)
        out, h_n = _split(hs, x.shape[0], reverse)
        return out, h_n, None, (x, W_ih, W_hh, hs, reverse, relu)

    def _rnn_backward(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        x, W_ih, W_hh, hs, reverse, relu = cache
        dx, dh0, dW_ih, dW_hh, db_ih, db_hh, norms = rnn_backward(x, W_ih, W_hh, hs, dout, dh_n, reverse, relu,
                                                                  into=_without_dc0(into))
        return dx if need_dx else None, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms

    def _lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        hs, cs, gates = lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse)
        (out, h_n), (_, c_n) = _split(hs, x.shape[0], reverse), _split(cs, x.shape[0], reverse)
        return out, h_n, c_n, (x, W_ih, W_hh, hs, cs, gates, reverse)

    def _lstm_backward(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        x, W_ih, W_hh, hs, cs, gates, reverse = cache
        dx, *rest = lstm_backward(x, W_ih, W_hh, hs, cs, gates, dout, dh_n, dc_n, reverse, into=into)
        return (dx if need_dx else None, *rest)

    def _gru_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
        hs, gates, hns = gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse)
        out, h_n = _split(hs, x.shape[0], reverse)
        return out, h_n, None, (x, W_ih, W_hh, hs, gates, hns, reverse)

    def _gru_backward(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        x, W_ih, W_hh, hs, gates, hns, reverse = cache
        dx, dh0, dW_ih, dW_hh, db_ih, db_hh, norms = gru_backward(x, W_ih, W_hh, hs, gates, hns, dout, dh_n, reverse,
                                                                  into=_without_dc0(into))
        return dx if need_dx else None, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms

    return {
        "rnn": Cell("rnn", 1, False, _rnn_forward, _rnn_backward),
        "lstm": Cell("lstm", 4, True, _lstm_forward, _lstm_backward),
        "gru": Cell("gru", 3, False, _gru_forward, _gru_backward),
    }


# ---- the CPU registry: the recurrent part and the input part as separate kernels --------------

def _input_backward(inputs, dG, W_ih, need_dx):
    """The input part of backward -> dx (None unless need_dx), dW_ih. inputs = (x, onehot): x is
    (T, B, I) floats, or (T, B) indices of one-hot vectors when onehot."""
    x, onehot = inputs
    dW_ih = gather_weight_grad(dG, x, W_ih.shape[1]) if onehot else input_weight_grad(dG, x)
    return (input_grad(dG, W_ih) if need_dx else None), dW_ih


def _into(into, *computed):
    """The results after dx, copied into the arrays of ``into`` where given (the CPU side of
    ``into=``)."""
    if into is None:
        return computed
    out = []
    for dst, src in zip(into, computed):
        if dst is not None and src is not None:
            dst[...] = src
        out.append(src if dst is None or src is None else dst)
    return tuple(out)


def _cpu_cells():
    def rnn_fwd(kernel, onehot):
        def forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
            relu = nonlinearity == "relu"
            hs = kernel(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, relu)
            out, h_n = _split(hs, x.shape[0], reverse)
            return out, h_n, None, ((x, onehot), W_ih, W_hh, hs, reverse, relu)
        return forward

    def rnn_bwd(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        inputs, W_ih, W_hh, hs, reverse, relu = cache
        dG, dh0, dW_hh, db_ih, db_hh, norms = rnn_recurrence_backward(W_hh, hs, dout, dh_n, reverse, relu)
        dx, dW_ih = _input_backward(inputs, dG, W_ih, need_dx)
        return dx, *_into(into, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms)

    def lstm_fwd(kernel, onehot):
        def forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
            hs, cs, gates = kernel(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse)
            (out, h_n), (_, c_n) = _split(hs, x.shape[0], reverse), _split(cs, x.shape[0], reverse)
            return out, h_n, c_n, ((x, onehot), W_ih, W_hh, hs, cs, gates, reverse)
        return forward

    def lstm_bwd(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        inputs, W_ih, W_hh, hs, cs, gates, reverse = cache
        dG, dh0, dc0, dW_hh, db_ih, db_hh, norms = lstm_recurrence_backward(W_hh, hs, cs, gates, dout, dh_n, dc_n,
                                                                           reverse)
        dx, dW_ih = _input_backward(inputs, dG, W_ih, need_dx)
        return dx, *_into(into, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh, norms)

    def gru_fwd(kernel, onehot):
        def forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
            hs, gates, hns = kernel(x, h0, W_ih, W_hh, b_ih, b_hh, reverse)
            out, h_n = _split(hs, x.shape[0], reverse)
            return out, h_n, None, ((x, onehot), W_ih, W_hh, hs, gates, hns, reverse)
        return forward

    def lstm_infer(kernel):
        def forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
            hs, c_n = kernel(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse)
            out, h_n = _split(hs, x.shape[0], reverse)
            return out, h_n, c_n, None
        return forward

    def gru_infer(kernel):
        def forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity):
            out, h_n = _split(kernel(x, h0, W_ih, W_hh, b_ih, b_hh, reverse), x.shape[0], reverse)
            return out, h_n, None, None
        return forward

    def gru_bwd(cache, dout, dh_n, dc_n, need_dx=True, into=None):
        inputs, W_ih, W_hh, hs, gates, hns, reverse = cache
        dGx, dh0, dW_hh, db_ih, db_hh, norms = gru_recurrence_backward(W_hh, hs, gates, hns, dout, dh_n, reverse)
        dx, dW_ih = _input_backward(inputs, dGx, W_ih, need_dx)
        return dx, *_into(into, dh0, None, dW_ih, dW_hh, db_ih, db_hh, norms)

    return {
        # the RNN's forward keeps only hs, its outputs: it is its own inference
        "rnn": Cell("rnn", 1, False, rnn_fwd(rnn_forward, False), rnn_bwd, rnn_fwd(rnn_forward_onehot, True)),
        "lstm": Cell("lstm", 4, True, lstm_fwd(lstm_forward, False), lstm_bwd, lstm_fwd(lstm_forward_onehot, True),
                     lstm_infer(lstm_inference), lstm_infer(lstm_inference_onehot)),
        "gru": Cell("gru", 3, False, gru_fwd(gru_forward, False), gru_bwd, gru_fwd(gru_forward_onehot, True),
                    gru_infer(gru_inference), gru_infer(gru_inference_onehot)),
    }


CELLS = _cpu_cells()

# the whole-sequence kernels stay importable from here (the CUDA twins mirror them)
__all__ = ["CELLS", "Cell", "make_cells", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward"]
