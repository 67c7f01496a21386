"""rnnjit: recurrent neural networks (RNN, LSTM, GRU) from scratch, compiled with Numba.

    import rnnjit
    lstm = rnnjit.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    out, (h_n, c_n) = lstm(x)                 # x: (T, B, 8) float32
    dx, (dh0, dc0) = lstm.backward(dout)      # gradients in lstm.grads
    with rnnjit.no_grad():                    # forward only: nothing kept for backward
        out, _ = lstm(x)

The math lives in ``rnnjit.kernels`` (importable on its own: ``import rnnjit.kernels`` loads
nothing above it); ``rnnjit.nn`` holds the layers. The names below load on first use.
"""

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "gradcheck", "no_grad", "__version__"]


def __getattr__(name):
    if name in ("RNN", "LSTM", "GRU"):
        from . import nn
        return getattr(nn, name)
    if name in ("no_grad", "is_grad_enabled"):
        from . import grad_mode
        return getattr(grad_mode, name)
    if name == "gradcheck":
        from .finite_differences import gradcheck
        return gradcheck
    raise AttributeError(f"module 'rnnjit' has no attribute {name!r}")


def __dir__():
    """The public names (for tab completion), without importing what they load lazily."""
    return sorted(set(globals()) | set(__all__))
