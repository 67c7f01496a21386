"""The bookkeeping every composed model shares: its own dense parameters beside recurrent layers.

A model keeps its dense weights in ``params`` (with ``grads`` of the same keys) and its recurrent
layers as attributes named in ``layer_names``. Parameter names follow a torch module with those
submodules, so a layer's ``weight_hh_l0`` reads ``encoder.weight_hh_l0`` in ``state_dict()``.

Also here, shared by the generator and the encoder-decoder: the linear head, the word-by-word
decoder (teacher-forced pass, its backward, greedy decoding) and the cross-entropy that skips
<pad> targets (``k.masked_softmax_cross_entropy``: on the GPU the rows that count are counted
there, so a step's device work has one shape per batch shape and a CUDA graph can hold it).

Devices: a model is written once for both, as ``CharLM`` is. ``device_kernels(device)`` gives
the pair it calls through: ``k``, the dense kernels (``CpuKernels`` here, which is
``kernels/dense.py`` plus a line of NumPy for each of the few pieces that have no CPU kernel, or
its CUDA twin ``kernels/cuda/dense.py``), and ``xp``, the array operations between kernel calls
(``NumpyArrays`` or ``kernels/cuda/arrays``). The helpers below take both, as keywords that
default to the CPU's. On the GPU the parameters, gradients and activations are device arrays;
``params`` and ``grads`` read as NumPy (a ``HostView``) and ``state_dict()`` makes NumPy copies,
so checkpoints are the same files on both devices.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..kernels import dense
from ..nn.arrays import NumpyArrays, host_view
from ..nn.flat import ParameterList, flatten
from ..nn.recurrent import LAYERS
from ..nn.shapes import loadable


class CpuKernels:
    """The dense kernels a model calls on the CPU: ``kernels/dense.py``, and NumPy twins of the
    few CUDA kernels (``kernels/cuda/dense.py``) that are one line of NumPy here."""

    embedding_forward = staticmethod(dense.embedding_forward)
    embedding_backward = staticmethod(dense.embedding_backward)
    linear_forward = staticmethod(dense.linear_forward)
    linear_backward = staticmethod(dense.linear_backward)
    softmax_cross_entropy = staticmethod(dense.softmax_cross_entropy)
    cross_entropy = staticmethod(dense.cross_entropy)
    tanh = staticmethod(np.tanh)

    @staticmethod
    def tanh_backward(s, ds):
        """dL/da = ds * (1 - s^2) for s = tanh(a)."""
        return ds * (1 - s * s)

    @staticmethod
    def mse_grad(z, y):
        """L = mean (z - y)^2 and dL/dz = (2/n)(z - y)."""
        diff = z - y
        return float(np.mean(diff * diff)), (2.0 / diff.size) * diff

    @staticmethod
    def mse(z, y):
        diff = z - y
        return float(np.mean(diff * diff))

    @staticmethod
    def argmax_rows(z):
        return np.argmax(z, axis=1)

    @staticmethod
    def masked_softmax_cross_entropy(z, y, pad):
        """``softmax_cross_entropy`` over the rows whose target is not ``pad``, and dz (N, V)
        with zeros in the other rows: the kept rows gathered, the kernel, a scatter back. No row
        kept: a loss of 0 (as on the GPU), nothing to learn."""
        keep = np.flatnonzero(y != pad)
        if not keep.size:
            return 0.0, np.zeros_like(z)
        loss, dzk = dense.softmax_cross_entropy(np.ascontiguousarray(z[keep]), np.ascontiguousarray(y[keep]))
        dz = np.zeros_like(z)
        dz[keep] = dzk
        return loss, dz

    @staticmethod
    def masked_cross_entropy(z, y, pad):
        keep = np.flatnonzero(y != pad)
        if not keep.size:
            return 0.0
        return dense.cross_entropy(np.ascontiguousarray(z[keep]), np.ascontiguousarray(y[keep]))


def device_kernels(device: str):
    """(k, xp) for ``device``: the dense kernels and the array operations (see the docstring).
    Asking for cuda without CUDA is ``require_cuda``'s one-line error."""
    if device == "cpu":
        return CpuKernels, NumpyArrays
    if device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    from ..kernels import cuda as kcuda
    kcuda.require_cuda()
    from ..kernels.cuda import arrays
    from ..kernels.cuda import dense as cuda_dense
    return cuda_dense, arrays


def scalar(a) -> float:
    """A loss as a Python float: the CPU kernels return one; the CUDA twins a (1,) device array,
    whose copy to the host is the one transfer back of a training step."""
    return float(np.asarray(a.copy_to_host() if hasattr(a, "copy_to_host") else a).reshape(-1)[0])


def host_ids(ids):
    """Integer ids as a NumPy array (copied back from the device when they are there)."""
    return ids.copy_to_host() if hasattr(ids, "copy_to_host") else np.asarray(ids)


def check_sizes(**sizes) -> None:
    """Each named size must be a positive integer (a bool, a float or a string is not one);
    otherwise a one-line ValueError naming it. ``None`` passes (an optional size left out)."""
    for name, value in sizes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def layer_cell(cell, nonlinearity=None) -> tuple[str, str]:
    """A model's cell name as (the layer's cell, its nonlinearity): rnn-relu is rnn with relu.
    ``nonlinearity`` (tanh or relu) shapes only the plain rnn; for lstm and gru only tanh (or
    None) is accepted, since their gates fix it."""
    if cell == "rnn-relu":
        if nonlinearity not in (None, "relu"):
            raise ValueError(f"cell='rnn-relu' is the relu RNN, got nonlinearity={nonlinearity!r}: "
                             "leave nonlinearity out, or pass cell='rnn'")
        return "rnn", "relu"
    if not isinstance(cell, str) or cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}: choose rnn, rnn-relu, lstm or gru")
    if nonlinearity not in (None, "tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if nonlinearity == "relu" and cell != "rnn":
        raise ValueError(f"nonlinearity='relu' applies to cell='rnn' only, not {cell!r}: leave it out")
    return cell, nonlinearity or "tanh"


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dtype, seed,
               bidirectional: bool = False, dropout: float = 0.0, device: str = "cpu", nonlinearity=None):
    """A recurrent layer by name: rnn (tanh), rnn-relu, lstm or gru, on ``device``."""
    cell, nl = layer_cell(cell, nonlinearity)
    extra = {"nonlinearity": nl} if cell == "rnn" else {}
    return LAYERS[cell](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                        dropout=dropout, dtype=dtype, seed=seed, device=device, **extra)


def uniform(rng, shape, fan_in, dtype):
    """torch.nn.Linear's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def seeds(seed, n):
    """n independent integer seeds from one."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def linear(params, name, x, k=CpuKernels, xp=NumpyArrays):
    """z = x W^T + b with the dense kernel; x is (N, in)."""
    return k.linear_forward(xp.contiguous(x), params[name + ".weight"], params[name + ".bias"])


def linear_grad(params, grads, name, x, dz, k=CpuKernels, xp=NumpyArrays):
    """Writes the gradients of ``name``; returns dL/dx."""
    return k.linear_backward(xp.contiguous(x), params[name + ".weight"], xp.contiguous(dz),
                             grads[name + ".weight"], grads[name + ".bias"])


def _few(keys, shown=4) -> str:
    """'nothing', or up to ``shown`` keys and how many more."""
    if not keys:
        return "nothing"
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(map(str, keys[:shown])) + more


class Module:
    """Subclasses call ``_setup(device)`` first, then build their layers with ``device=self.device``
    and hand their own parameters (NumPy, drawn on the host) to ``_own(params)``, which also
    moves every parameter, the layers' included, into one buffer (``nn/flat.py``)."""

    layer_names: tuple[str, ...] = ()
    device, k, xp = "cpu", CpuKernels, NumpyArrays
    _flat = None
    _graphed = None

    def _setup(self, device, cuda_graphs=False):
        if cuda_graphs and device != "cuda":
            raise ValueError("cuda_graphs=True needs device='cuda' (CUDA graphs replay GPU work)")
        self.k, self.xp = device_kernels(device)
        self.device, self._cuda_graphs = device, bool(cuda_graphs)

    def _graph_step(self, layers, keep=()):
        """With ``cuda_graphs=True``: ``forward_backward`` replays ``self._step_on_device`` as a
        CUDA graph (``graphed.py``), which restores the layers' norms and the ``keep`` attributes
        after each replay."""
        if self._cuda_graphs:
            from .graphed import GraphedStep
            self._graphed = GraphedStep(self._step_on_device, layers, self.xp, keep=keep)

    def _own(self, params):
        """The model's own parameters, sent to its device once, and zero gradients beside them."""
        self._params = {k: self.xp.to_device(v) for k, v in params.items()}
        self._grads = {k: self.xp.zeros(v.shape, v.dtype) for k, v in params.items()}
        self._flat = flatten([self] + [layer for _, layer in self._layers()], self.xp)

    @property
    def params(self):
        """The model's own parameters (not its layers'): NumPy arrays (on the GPU, a ``HostView``
        that copies on read)."""
        return host_view(self._params, self.device)

    @property
    def grads(self):
        return host_view(self._grads, self.device)

    def _layers(self):
        return [(n, getattr(self, n)) for n in self.layer_names]

    def _floats(self, a):
        """Float input ``a`` as a C-contiguous array of the model's dtype on its device (a device
        array passes as it is)."""
        xp = self.xp
        return a if xp.on_device(a) else xp.to_device(np.ascontiguousarray(a, dtype=self.dtype))

    def parameters(self):
        """(name, array, grad) for every parameter; optimizers update the arrays in place
        (device arrays on the GPU)."""
        own = [(k, self._params[k], self._grads[k]) for k in self._params]
        layers = [(f"{n}.{k}", p, g) for n, layer in self._layers() for k, p, g in layer.parameters()]
        return ParameterList(own + layers, self._flat)

    def state_dict(self):
        """Every parameter as a NumPy copy, torch's names."""
        return {k: self.xp.host_copy(p) for k, p, _ in self.parameters()}

    def load_state_dict(self, state):
        """Every parameter from ``state`` (name -> NumPy array, torch tensor, or anything
        ``np.asarray`` takes), all or nothing: every entry is checked and converted before the
        first is written, so a refused state leaves the model as it was."""
        if not isinstance(state, Mapping):
            raise ValueError(f"load_state_dict takes a dict of arrays by name (as state_dict() gives), "
                             f"got {type(state).__name__}")
        params = self.parameters()
        names = [k for k, _, _ in params]
        missing, extra = [k for k in names if k not in state], sorted(set(state) - set(names), key=str)
        if missing or extra:
            raise ValueError(f"load_state_dict: missing {_few(missing)}, unexpected {_few(extra)}: "
                             f"load the state of a model built with the same arguments")
        new = [(p, loadable(k, state[k], tuple(p.shape), p.dtype)) for k, p, _ in params]
        for p, a in new:
            self.xp.assign(p, a)

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def train(self, mode=True):
        for _, layer in self._layers():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)


# ---- a word-by-word decoder, shared by the generator and the encoder-decoder -------------------
#
#   e_t = E[w_{t-1}]   (w_0 = <bos>)        h_t = cell(e_t, h_{t-1})        z_t = W h_t + b
#
# Training reads the whole target at once (teacher forcing: the previous *true* word is the input),
# so the layer runs over all T steps in one call. Inference feeds back its own argmax, one step at
# a time: greedy decoding.

def shift_right(y, bos):
    """Decoder inputs for targets y (T, B): <bos>, y_1, ..., y_{T-1}."""
    return np.concatenate([np.full((1, y.shape[1]), bos, np.int64), y[:-1]]).astype(np.int64)


def decode(params, layer, emb, head, ids, state, k=CpuKernels, xp=NumpyArrays):
    """Teacher-forced decoder pass: ids (T, B) from ``state`` -> logits (T*B, V), final state, cache."""
    T, B = ids.shape
    return decode_ids(params, layer, emb, head, xp.to_device(flat_ids(ids)), T, B, state, k, xp)


def decode_ids(params, layer, emb, head, ids, T, B, state, k=CpuKernels, xp=NumpyArrays):
    """:func:`decode` of ids already flat (T*B,) on the model's device."""
    e = k.embedding_forward(params[emb + ".weight"], ids)
    out, new_state = layer(e.reshape(T, B, e.shape[1]), state)
    h = out.reshape(T * B, out.shape[2])
    return linear(params, head, h, k, xp), new_state, (ids, h, T, B)


def decode_backward(params, grads, layer, emb, head, cache, dz, k=CpuKernels, xp=NumpyArrays):
    """Backward of :func:`decode`: writes the gradients, returns dL/d(initial state)."""
    flat, h, T, B = cache
    dh = linear_grad(params, grads, head, h, dz, k, xp)
    de, dstate = layer.backward(dh.reshape(T, B, dh.shape[1]))
    k.embedding_backward(grads[emb + ".weight"], flat, xp.contiguous(de.reshape(T * B, de.shape[2])))
    return dstate


def greedy(params, layer, emb, head, state, bos, eos, max_len, k=CpuKernels, xp=NumpyArrays):
    """Greedy decoding from ``state``: (B, n) ids, n <= max_len; stops when every row wrote <eos>.
    On the GPU the argmax runs there and each step's B ids come back (to know when to stop).
    max_len=0 gives (B, 0)."""
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 0:
        raise ValueError(f"max_len must be a non-negative integer, got {max_len!r}")
    B = (state[0] if isinstance(state, tuple) else state).shape[1]
    w = np.full((1, B), bos, np.int64)
    out, done = [], np.zeros(B, bool)
    for _ in range(max_len):
        z, state, _ = decode(params, layer, emb, head, w, state, k, xp)
        w = host_ids(k.argmax_rows(z)).astype(np.int64).reshape(1, B)
        out.append(w[0])
        done |= w[0] == eos
        if done.all():
            break
    return np.stack(out, axis=1) if out else np.zeros((B, 0), np.int64)


def strip(ids, eos):
    """Rows of ids cut at the first <eos> (exclusive) -> list of lists."""
    rows = []
    for r in np.asarray(ids):
        r = [int(v) for v in r]
        rows.append(r[:r.index(eos)] if eos in r else r)
    return rows


def checked_ids(ids, what: str, size_name: str, size: int) -> np.ndarray:
    """``ids`` as a C-contiguous int64 NumPy array of the same shape, once every id is known to be
    a whole number in [0, size); otherwise a one-line ValueError naming ``what`` and ``size_name``.

    The kernels index tables (embeddings, logits) with ids unchecked, so an id out of range would
    read outside the table: garbage, or a crash. Integer arrays pass; float arrays pass only when
    every value is whole (3.0, not 1.7); bool, str and other dtypes do not. Cheap: a min and a max
    (and, for floats, one comparison with the rounded values), no Python loop over the ids.
    """
    a = np.asarray(ids)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be integer ids, got dtype {a.dtype.name}")
    whole = a.dtype.kind != "f" or np.array_equal(a, np.floor(a))   # NaN is never equal: caught here
    if not whole:
        bad = a[a != np.floor(a)].flat[0]
        raise ValueError(f"{what} must be whole numbers (integer ids), got {bad}: pass an integer array")
    if a.size and (a.min() < 0 or a.max() >= size):
        lo, hi = (f"{v:.0f}" if a.dtype.kind == "f" else str(v) for v in (a.min(), a.max()))
        raise ValueError(f"{what} must be in [0, {size_name}={size}), got values in [{lo}, {hi}]")
    return np.ascontiguousarray(a, dtype=np.int64)


def check_batch(a_name: str, a_shape: tuple, b_name: str, b_shape: tuple, axis_a: int, axis_b: int, hint: str):
    """One-line ValueError when ``a`` and ``b`` (the user's arrays, by name and shape) do not have
    the same batch size (on the given axes)."""
    if a_shape[axis_a] != b_shape[axis_b]:
        raise ValueError(f"{a_name} has batch {a_shape[axis_a]} but {b_name} has batch {b_shape[axis_b]} "
                         f"({a_name} is {a_shape}, {b_name} is {b_shape}): {hint}")


def id_matrix(ids, what: str, layout: str, size_name: str, size: int) -> np.ndarray:
    """``checked_ids`` of a (time, batch) matrix of ids: a one-line ValueError for another number
    of dimensions, naming ``what`` and its ``layout`` (e.g. "(T, B)")."""
    if np.ndim(ids) != 2 or 0 in np.shape(ids):
        raise ValueError(f"{what} must be a {layout} array of ids (time-major, one column per sequence, "
                         f"at least one of each), got shape {np.shape(ids)}")
    return checked_ids(ids, what, size_name, size)


def flat_ids(ids):
    """Integer ids of any shape as a flat, contiguous int64 NumPy array (what the kernels read)."""
    return np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int64)


def masked_cross_entropy(z, y, pad, k=CpuKernels, xp=NumpyArrays) -> float:
    """Mean cross-entropy over the rows whose target (y, host ids) is not ``pad``, without
    gradients (evaluation). Training calls ``k.masked_softmax_cross_entropy`` itself."""
    return scalar(k.masked_cross_entropy(z, xp.to_device(flat_ids(y)), pad))
