"""The math of rnnjit: Numba kernels over NumPy arrays, importable on their own.

One file per cell (``rnn.py``, ``lstm.py``, ``gru.py``), each with a readable step pair and a
fast sequence pair. ``CELLS`` names the cells; ``cells.py`` gives them one calling convention
so that the layers (and the tests) can treat every cell alike.

    >>> from rnnjit.kernels import lstm_step_forward, lstm_step_backward
"""

from . import _cache, _malloc, _vector_width  # noqa: F401  (_malloc: set on import, see _malloc.py)

_cache.install()          # before anything here is decorated: see _cache.py
_vector_width.install()   # before anything here compiles: see _vector_width.py

from .cells import CELLS, Cell  # noqa: E402
from .gru import gru_backward, gru_forward, gru_inference, gru_step_backward, gru_step_forward  # noqa: E402
from .lstm import lstm_backward, lstm_forward, lstm_inference, lstm_step_backward, lstm_step_forward  # noqa: E402
from .rnn import rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward  # noqa: E402

__all__ = [
    "CELLS", "Cell",
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward", "lstm_inference",
    "gru_step_forward", "gru_step_backward", "gru_forward", "gru_backward", "gru_inference",
]
