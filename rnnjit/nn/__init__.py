"""Layers built on the kernels: recurrent layers with PyTorch's interface."""

from .recurrent import GRU, LAYERS, LSTM, RNN, Recurrent

__all__ = ["RNN", "LSTM", "GRU", "Recurrent", "LAYERS"]
