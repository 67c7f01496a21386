"""``rnnjit.no_grad()``: forward passes that keep nothing for backward, as ``torch.no_grad()``.

    with rnnjit.no_grad():
        out, (h_n, c_n) = lstm(x)          # lstm.backward(...) here would raise: nothing was kept

A recurrent layer's forward keeps, for backward, every step's gates (an LSTM's four, a GRU's
three and its W_hn h_{t-1} + b_hn) and every cell state: 4TBH numbers of gates for an LSTM,
105 MB at B = 128, H = 512, T = 100 in float32. Inside ``no_grad`` the layers call the cells'
inference kernels instead (``lstm_inference``, ``gru_inference``), which reuse one chunk of
steps' worth of gates and two cell states (a dense input's gates are still made for every step
when the batch is shared out over threads, ``kernels/shares.py``, since each thread reads every
step's input part): the same outputs, bit for bit, in less memory and
less time (a quarter less at B = 128, H = 512 on one thread, 279 -> 206 ms; see README). The RNN keeps
only its outputs either way. Evaluation (``CharLM.loss``, the tasks' validation), sampling
(``models/sampling.py``) and the benchmark's forward pass run inside it; ``eval()`` is a different switch (dropout off), and a
layer in eval mode still keeps what backward needs, as in PyTorch.

The switch belongs to the thread that sets it (a ``ContextVar``): a sampling thread inside
``no_grad`` does not change a training thread beside it. Usable as a decorator too.
"""

import contextlib
import contextvars

_grad_enabled = contextvars.ContextVar("rnnjit_grad_enabled", default=True)


def is_grad_enabled() -> bool:
    """False inside ``no_grad()`` (in this thread)."""
    return _grad_enabled.get()


@contextlib.contextmanager
def no_grad():
    """Forward passes in this block keep nothing for backward (see the module's docstring)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)
