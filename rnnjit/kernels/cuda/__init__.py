"""CUDA twins of the sequence kernels, for ``numba-cuda`` (an optional extra: ``pip install "rnnjit[cuda]"``).

Same names, same argument order, same return values as ``rnnjit.kernels.{rnn,lstm,gru}``, but every
array is a device array (``numba.cuda`` ``DeviceNDArray``, or anything with
``__cuda_array_interface__``) and every returned array is a ``DeviceNDArray``:

    >>> from rnnjit.kernels.cuda import require_cuda, to_device, to_host
    >>> require_cuda()                       # one-line RuntimeError when there is no CUDA
    >>> from rnnjit.kernels.cuda.lstm import lstm_forward, lstm_backward
    >>> hs, cs, gates = lstm_forward(to_device(x), to_device(h0), ..., reverse=False)
    >>> to_host(hs)

``CUDA_CELLS`` (in ``cells.py``) gives them the calling convention of ``rnnjit.kernels.cells.CELLS``.

Files, read in this order: ``activations.py`` (device sigmoid), ``ids.py`` (thread ids the
compiler knows are not negative, so that indexing skips Numba's wrap-around), ``gemm.py`` (the
big matrix products: a tiled shared-memory GEMM, a transpose, column sums), ``launch.py`` (how the
recurrent work is split over blocks and threads), ``tile.py`` (what the threads of a tile do:
the device functions the cells' kernels share), then ``rnn.py``, ``lstm.py``, ``gru.py``
(each: the input GEMM, one persistent kernel that runs the whole time loop, and its reverse
for backward-through-time), ``slabs.py`` and ``stepgemm.py`` (the large-batch variants of those
persistent kernels: each step a register-tiled product), and ``cells.py``.

Then what keeps a whole training step on the GPU (``device="cuda"`` on a layer or a model):
``elementwise.py`` (grid-stride kernels: fill, add, multiply, the column copies of a
bidirectional layer, batch_first transposes, dropout masks from a counter-based hash),
``reduce.py`` (deterministic two-pass sums: the loss, the global gradient norm), ``dense.py``
(the twin of ``kernels/dense.py``: embedding and its scatter-add, row gathers and scatters, the
linear head on the tiled GEMM, fused softmax cross-entropy, mean squared error, tanh and its
gradient, row-wise argmax), ``optim.py`` (SGD, Adagrad, RMSprop, Adam and clipping),
``arrays.py`` (the namespace through which the layers and the model call all of this,
twin of ``rnnjit.nn.arrays.NumpyArrays``), and ``memory.py`` (a caching device-memory pool, a
Numba EMM plugin that ``require_cuda()`` installs on a GPU, so that a step's temporaries reuse
freed blocks instead of calling cuMemAlloc and cuMemFree; RNNJIT_CUDA_POOL=0 switches it off),
and ``graphs.py`` (every launch and device copy above is queued through it: on the legacy
default stream, or into a CUDA graph being captured, which then replays a whole step with one
launch: ``rnnjit/models/graphed.py``, ``--cuda-graphs``).

Design: parameters, gradients, optimizer state, activations, caches, dropout masks and the
hidden state carried between chunks are device arrays for the whole run; they are made once
(parameters, gradients, optimizer state) or per step on the device, never copied across. Per
step the host sends the (T, B) ids of the chunk and its targets, and receives the loss, the
gradient norm with a count for clipping by value, and the per-step norms of dL/dh_t for the
dashboard: a few hundred bytes, against the megabytes a step of copies would move, and no
round trip inside a step except the loss and the norm, which the engine needs to decide what
to do next (stop on divergence, report). Checkpoints and tests read NumPy copies on demand
(``state_dict()``, ``params``, ``grads``: a ``HostView``). The float32 arithmetic follows the
CPU kernels expression for expression, so a run on the GPU follows the CPU's within float32
rounding (tests/test_cuda.py trains both side by side); dropout masks are the exception (drawn
on the device, same distribution, different numbers).

A step's fixed costs are kept down three ways: the persistent kernels' threads keep their W_hh
values for the whole loop (``launch.py``); a model's parameters and gradients each live in one
buffer (``rnnjit/nn/flat.py``), so the norm, the clipping and the optimizer update are one launch
each (``optim.py``); and ``memory.py`` reuses freed device memory. ``benchmarks/gpu_session.sh``
measures what each is worth on a GPU (the pool and the kept weights against their absence).

This package imports nothing from ``numba.cuda`` when it is imported, so ``import rnnjit`` and
``import rnnjit.kernels`` work without numba-cuda and without a GPU. The submodules import it;
``require_cuda()`` checks first and says what is missing. Without a GPU, Numba's simulator runs
the kernels (slowly, in Python threads): set ``NUMBA_ENABLE_CUDASIM=1`` in the environment
*before* Python starts.
"""

import importlib
import os
from collections.abc import Mapping

__all__ = [
    "require_cuda", "is_available", "simulator_enabled", "to_device", "to_host", "on_device", "assign",
    "HostView",
    "CUDA_CELLS", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]

_HOW_TO_SIMULATE = ("to run the CUDA kernels without a GPU, in Numba's (slow) simulator, "
                    "set NUMBA_ENABLE_CUDASIM=1 in the environment before starting Python")


def simulator_enabled() -> bool:
    """True when Numba's CUDA simulator is switched on (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        from numba import config
        return bool(getattr(config, "ENABLE_CUDASIM", 0))
    except ImportError:
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _has_numba_cuda() -> bool:
    """numba-cuda, the NVIDIA-maintained CUDA target behind ``numba.cuda`` (Numba's own built-in
    target is deprecated and not what these kernels are written for)."""
    try:
        import numba_cuda  # noqa: F401  (a version string only: cheap)
    except ImportError:
        return False
    return True


def _why_unavailable():
    """None if CUDA kernels can run here, else a one-line reason."""
    if not _has_numba_cuda():
        how = "" if simulator_enabled() else f' (or use the CPU: --device cpu, device="cpu" in Python; {_HOW_TO_SIMULATE})'
        return f'CUDA kernels need numba-cuda, which is not installed: pip install "rnnjit[cuda]"{how}'
    try:
        from numba import cuda
    except ImportError as e:
        return f"numba.cuda could not be imported ({e}); reinstall with pip install \"rnnjit[cuda]\""
    if simulator_enabled():
        return None
    try:
        ok = cuda.is_available()
    except Exception:  # a broken driver install raises instead of answering False
        ok = False
    if not ok:
        return f'no CUDA GPU found (numba.cuda.is_available() is False): use the CPU (--device cpu, device="cpu" in Python), or {_HOW_TO_SIMULATE}'
    return None


def is_available() -> bool:
    """True when the CUDA kernels can run: a GPU with numba-cuda, or the simulator."""
    return _why_unavailable() is None


def require_cuda() -> None:
    """Raise a one-line ``RuntimeError`` saying what is missing, unless the CUDA kernels can run."""
    why = _why_unavailable()
    if why is not None:
        raise RuntimeError(why)
    if not simulator_enabled():
        # The caching device-memory pool (memory.py), set before the first CUDA context exists:
        # cuda.is_available() above initialises the driver but makes no context.
        from . import memory
        memory.install()


def to_device(a):
    """Copy a NumPy array to the GPU (C-contiguous).

    A device array is returned as it is, and any other object with ``__cuda_array_interface__``
    (a CuPy array, a CUDA torch tensor) as a ``DeviceNDArray`` view of the same memory.
    """
    require_cuda()
    import numpy as np
    from numba import cuda
    if hasattr(a, "copy_to_host"):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """Copy a device array back to a NumPy array; ``None`` and NumPy arrays pass through."""
    if a is None or not hasattr(a, "copy_to_host"):
        return a
    return a.copy_to_host()


def on_device(a) -> bool:
    """True for a numba device array (``DeviceNDArray``, or the simulator's stand-in)."""
    return hasattr(a, "copy_to_host")


def assign(dst, src):
    """``dst[...] = src`` for a device array dst, in place: src a device array (copied on the
    device) or anything NumPy takes (copied from the host)."""
    if on_device(src):
        from .graphs import copy
        copy(dst, src)
    else:
        import numpy as np
        dst.copy_to_device(np.ascontiguousarray(src, dtype=dst.dtype))


class HostView(Mapping):
    """A dict of device arrays seen from the host: ``view[k]`` is a NumPy *copy* of array k,
    ``view[k] = a`` copies ``a`` into it. A layer or model on the GPU shows its ``params`` and
    ``grads`` this way, so tests and checkpoints read NumPy arrays while training keeps the
    device arrays (``parameters()`` hands those to the optimizers). Writing into a copy
    (``view[k][...] = 0``) changes nothing: assign the whole array instead."""

    def __init__(self, arrays):
        self._arrays = arrays

    def __getitem__(self, key):
        return self._arrays[key].copy_to_host()

    def __setitem__(self, key, value):
        assign(self._arrays[key], value)

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)


# The kernels themselves, imported on first use (PEP 562), so that importing this package stays free.
_LAZY = {
    "CUDA_CELLS": "cells",
    "rnn_forward": "rnn", "rnn_backward": "rnn",
    "lstm_forward": "lstm", "lstm_backward": "lstm",
    "gru_forward": "gru", "gru_backward": "gru",
}


def __getattr__(name):
    if name in _LAZY:
        require_cuda()
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
