"""rnnjit: recurrent neural networks (RNN, LSTM, GRU) from scratch, compiled with Numba.

    import rnnjit
    lstm = rnnjit.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    out, (h_n, c_n) = lstm(x)                 # x: (T, B, 8) float32
    dx, (dh0, dc0) = lstm.backward(dout)      # gradients in lstm.grads

The math lives in ``rnnjit.kernels`` (importable on its own); ``rnnjit.nn`` holds the layers.
"""

from .gradcheck import gradcheck
from .nn import GRU, LSTM, RNN

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "gradcheck", "__version__"]
