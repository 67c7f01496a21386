"""One calling convention for every CUDA cell: the twin of ``rnnjit/kernels/cells.py``.

    forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse, nonlinearity)
        -> out (T, B, H), h_n (B, H), c_n (B, H) or None, cache
    backward(cache, dout, dh_n, dc_n, need_dx=True, into=None)
        -> dx, dh0, dc0 or None, dW_ih, dW_hh, db_ih, db_hh, norms (T,)

(``into``: device arrays the results after dx are computed into, a layer's own; see
``rnnjit/kernels/cells.py``.)

Every array in and out is a device array (``DeviceNDArray``), C-contiguous and of one dtype
(float32 or float64), ``norms`` included: it is a float64 device array, as the CPU's is a
float64 NumPy array (``to_host(norms)`` brings it back). ``out``, ``h_n`` and ``c_n`` are views
into the state buffers kept in ``cache``, exactly as on the CPU. ``c0`` and ``dc_n`` are ignored
(pass None) for cells without a cell state.

    >>> from rnnjit.kernels.cuda.cells import CUDA_CELLS
    >>> out, h_n, c_n, cache = CUDA_CELLS["lstm"].forward(x_d, h0_d, c0_d, *weights_d, False, "tanh")
"""

from ..cells import make_cells
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward

CUDA_CELLS = make_cells(rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward)
