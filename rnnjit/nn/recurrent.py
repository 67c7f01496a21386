"""Recurrent layers with PyTorch's interface: ``RNN``, ``LSTM`` and ``GRU``.

Stacked (``num_layers``) and bidirectional, ``batch_first`` or time-major, float32 or float64.
Parameters have ``torch.nn``'s names, shapes and gate order, so ``state_dict()`` moves both ways:

    weight_ih_l{k}[_reverse]   (gates * H, I_k)     I_0 = input_size, I_k = H * num_directions
    weight_hh_l{k}[_reverse]   (gates * H, H)
    bias_ih_l{k}[_reverse]     (gates * H,)         only with bias=True
    bias_hh_l{k}[_reverse]     (gates * H,)

The layer holds no math of its own: each layer and direction is one call of the cell's
sequence kernel (``rnnjit.kernels``). What it adds is bookkeeping: shapes, the order of the
stack, dropout between layers, and the gradients.

``device="cuda"`` runs the same calls through the CUDA twins (``rnnjit.kernels.cuda``, an
optional extra), and keeps everything on the GPU: the parameters and gradients are device
arrays, made once (``parameters()`` hands them to the optimizers, which update them there);
the activations between layers, the caches for backward and the dropout masks are device
arrays too. Forward and backward take and return device arrays when given device arrays (a
model calls them so: nothing crosses to the host inside a training step), and NumPy arrays
when given NumPy arrays (copied across at the edges, for tests and one-off calls).
``state_dict()``, ``load_state_dict()``, ``params`` and ``grads`` speak NumPy on both devices
(on the GPU ``params`` and ``grads`` are ``HostView``s: reading a key copies that array), and
``hidden_grad_norms`` comes back to the host when it is read: it is the one metric of a step.
Dropout masks on the GPU are drawn there (one seed per mask from ``dropout_rng``, a
counter-based hash per element): the same distribution as the CPU's masks, other numbers.

The layer is written once for both devices: every array operation between kernel calls goes
through ``self.xp``, ``NumpyArrays`` (``nn/arrays.py``) on the CPU or ``rnnjit.kernels.cuda.arrays`` on the
GPU (same names: zeros, multiply, put_columns, ...).

``backward`` is explicit, as in CS231n-style code: call it after ``forward`` with the gradient
of the loss with respect to the outputs (and, optionally, the final state). It returns the
gradients with respect to the inputs and the initial state, sets ``grads`` (same keys as
``state_dict()``), and records ``hidden_grad_norms``: for every layer and direction the norm of
dL/dh_t at every timestep t, the quantity that shows gradients vanishing or exploding.
Inside ``rnnjit.no_grad()`` forward keeps nothing for it (the cells' inference kernels,
``grad_mode.py``), and backward says so.

Two savings on the input side, both leaving the results unchanged:

* ``forward_onehot(ids, hx)`` is ``forward`` of the one-hot vectors ``eye(input_size)[ids]``
  without building them: W_ih e_c is column c of W_ih, so on the CPU the first layer gathers
  columns of W_ih instead of multiplying a one-hot matrix, and its dW_ih is a scatter-add
  (``rnnjit.kernels.dense.gather_inputs``). ``CharLM(input="onehot")`` reads characters so.
* ``backward(dout, dhx, input_grad=False)`` returns None for dx and skips the first layer's
  dx = dG W_ih, as PyTorch does for an input that does not require a gradient. The default
  (``input_grad=True``) returns dx, as before.
"""

from __future__ import annotations

import numpy as np

from ..grad_mode import is_grad_enabled
from ..kernels.cells import CELLS
from ..machine import require_fits
from .arrays import NumpyArrays, host_view
from .flat import ParameterList, flatten
from .shapes import add_batch_axis, as_array, check_input, loadable, results, shape_text, split_state

NOTHING_KEPT = "forward ran inside rnnjit.no_grad()"   # what _cache holds then

_DTYPES = (np.float32, np.float64)


class Recurrent:
    """Base of RNN, LSTM and GRU; use those."""

    cell_name = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype=np.float32, seed: int | None = None, nonlinearity: str = "tanh", device: str = "cpu"):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        D, G = 2 if bidirectional else 1, CELLS[self.cell_name].gates
        weights = num_layers * D * G * hidden_size * (max(input_size, D * hidden_size) + hidden_size + 2)
        require_fits(2 * weights * np.dtype(dtype if dtype in _DTYPES else np.float64).itemsize,
                     f"{type(self).__name__}({input_size}, {hidden_size}, num_layers={num_layers})")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        dtype = np.dtype(dtype).type
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be np.float32 or np.float64, got {np.dtype(dtype).name}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        if device == "cuda":
            from ..kernels import cuda as kcuda
            kcuda.require_cuda()  # one line that says what is missing, and how to simulate
            from ..kernels.cuda import arrays
            self.cell = kcuda.CUDA_CELLS[self.cell_name]
            self.xp = arrays
        else:
            self.cell = CELLS[self.cell_name]
            self.xp = NumpyArrays
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = dtype
        self.nonlinearity = nonlinearity
        self.training = True
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self.dropout_rng = np.random.default_rng(dropout_seq)
        params = self._init_params(np.random.default_rng(init_seq))   # drawn on the host, sent once
        self._params = {k: self.xp.to_device(v) for k, v in params.items()}
        self._grads = {k: self.xp.zeros(v.shape, self.dtype) for k, v in params.items()}
        self._flat = flatten([self], self.xp)   # one buffer: one optimizer update for all (nn/flat.py)
        self._norms = None
        self._cache = None

    # ---- parameters -------------------------------------------------------------------------

    def _suffixes(self):
        """(layer, direction, name suffix) for every layer and direction, in PyTorch's order."""
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                yield k, d, f"_l{k}" + ("_reverse" if d else "")

    def _init_params(self, rng):
        H, G = self.hidden_size, self.cell.gates
        bound = 1.0 / np.sqrt(H)
        params = {}
        for k, _, sfx in self._suffixes():
            I = self.input_size if k == 0 else H * self.num_directions
            shapes = {"weight_ih": (G * H, I), "weight_hh": (G * H, H)}
            if self.bias:
                shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
            for name, shape in shapes.items():
                params[name + sfx] = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
        return params

    @property
    def params(self):
        """The parameters by name: NumPy arrays (on the GPU, a ``HostView`` that copies on read)."""
        return host_view(self._params, self.device)

    @property
    def grads(self):
        """The gradients of the last ``backward``, keyed as ``params`` (same host/GPU rule)."""
        return host_view(self._grads, self.device)

    @property
    def hidden_grad_norms(self):
        """(num_layers * D, T) float64 NumPy array: ‖dL/dh_t‖ of the last backward (None before).
        On the GPU it is copied to the host when first read after each backward."""
        if self._norms is not None and self.xp.on_device(self._norms):
            self._norms = self.xp.to_host(self._norms)
        return self._norms

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the parameters, keyed and shaped as ``torch.nn`` keys and shapes them."""
        return {k: self.xp.host_copy(v) for k, v in self._params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Load parameters (NumPy arrays, or anything ``np.asarray`` takes, torch tensors included)."""
        missing = sorted(set(self._params) - set(state))
        extra = sorted(set(state) - set(self._params))
        if missing:
            raise ValueError(f"load_state_dict: missing key(s) {', '.join(missing)}")
        if extra:
            raise ValueError(f"load_state_dict: unexpected key(s) {', '.join(extra)}")
        new = {k: loadable(k, state[k], tuple(v.shape), self.dtype) for k, v in self._params.items()}
        for k in self._params:
            self.xp.assign(self._params[k], new[k])

    def parameters(self):
        """(name, array, grad) triples, for an optimizer that updates the arrays in place
        (device arrays on the GPU); a ``ParameterList`` whose ``flat`` holds them all in one
        buffer (``nn/flat.py``) unless a model has taken them into its own."""
        return ParameterList([(k, self._params[k], self._grads[k]) for k in self._params], self._flat)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---- forward ----------------------------------------------------------------------------

    def forward(self, x, hx=None):
        """out, h_n = rnn(x, h0)   |   out, (h_n, c_n) = lstm(x, (h0, c0)).

        x is (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched. out is (T, B, D*H)
        (forward direction first, then reverse); states are (num_layers * D, B, H).
        On a GPU layer, device arrays in give device arrays out; NumPy in gives NumPy out.
        """
        xp = self.xp
        x = check_input(self, x)
        from_host = not xp.on_device(x)
        unbatched = x.ndim == 2
        if unbatched:
            x = add_batch_axis(x, xp)
        elif self.batch_first:
            x = xp.swap01(xp.to_device(x))
        return self._run(xp.contiguous(xp.to_device(x)), False, hx, unbatched, from_host)

    __call__ = forward

    def forward_onehot(self, ids, hx=None):
        """``forward`` of one-hot input vectors given by their indices: the same as
        ``forward(np.eye(input_size)[ids], hx)``, without building the vectors.

        ids holds integers in [0, input_size): (T, B), or (B, T) with batch_first, or (T,)
        unbatched. On the CPU the first layer reads column ids[t, b] of W_ih instead of
        multiplying a one-hot matrix (W_ih e_c = W_ih[:, c]), and in backward its dW_ih is a
        scatter-add; pass ``input_grad=False`` to ``backward`` when nothing needs the gradient
        with respect to the one-hot vectors. On the GPU the one-hot vectors are built and
        multiplied. Returns what ``forward`` returns.
        """
        xp = self.xp
        a = xp.to_host(ids) if xp.on_device(ids) else np.asarray(ids)
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"ids must be integers (indices of one-hot inputs), got dtype {a.dtype.name}")
        if a.ndim not in (1, 2) or a.size == 0:
            layout = "(batch, seq)" if self.batch_first else "(seq, batch)"
            raise ValueError(f"ids must be 2-D {layout} or 1-D (seq,) and not empty, got shape {shape_text(a)}")
        if a.min() < 0 or a.max() >= self.input_size:
            raise ValueError(f"ids must be in [0, input_size={self.input_size}), got values in "
                             f"[{a.min()}, {a.max()}]")
        if self.cell.forward_onehot is None:  # the GPU
            x = np.eye(self.input_size, dtype=self.dtype)[a]
            return self.forward(xp.to_device(x) if xp.on_device(ids) else x, hx)
        unbatched = a.ndim == 1
        a = a.reshape(-1, 1) if unbatched else (a.T if self.batch_first else a)
        return self._run(np.require(a, np.int64, ["C", "W"]), True, hx, unbatched, True)  # W: see as_array

    def _run(self, x, onehot, hx, unbatched, from_host):
        """The stack over x (T, B, I) on the layer's device, or over indices x (T, B) when onehot."""
        xp = self.xp
        T, B = x.shape[:2]
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        lstm = self.cell.has_cell_state
        h0, c0 = split_state(self, "hx", hx, unbatched, B)

        h_n = xp.empty((L * D, B, H), self.dtype)
        c_n = xp.empty((L * D, B, H), self.dtype) if lstm else None
        keep = is_grad_enabled()   # inside rnnjit.no_grad(): nothing for backward (grad_mode.py)
        caches, masks = [], []
        layer_in = x
        for k in range(L):
            first = onehot and k == 0
            forward = self.cell.forward_onehot if first else self.cell.forward
            if not keep:
                forward = (self.cell.infer_onehot if first else self.cell.infer) or forward
            out = xp.empty((T, B, D * H), self.dtype) if D == 2 else None
            for d in range(D):
                idx = k * D + d
                sfx = f"_l{k}" + ("_reverse" if d else "")
                o, hn, cn, cache = forward(
                    layer_in, xp.contiguous(h0[idx]), None if c0 is None else xp.contiguous(c0[idx]),
                    *self._weights(sfx), d == 1, self.nonlinearity)
                xp.assign(h_n[idx], hn)
                if lstm:
                    xp.assign(c_n[idx], cn)
                if D == 2:
                    xp.put_columns(out, o, d * H)
                else:
                    out = o
                caches.append(cache)
            mask = None
            if self.training and self.dropout > 0 and k < L - 1:
                mask = xp.dropout_mask(out.shape, self.dtype, self.dropout_rng, 1.0 - self.dropout)
                out = xp.multiply(out, mask)
            masks.append(mask)
            layer_in = xp.contiguous(out)

        self._cache = (caches, masks, T, B, unbatched) if keep else NOTHING_KEPT
        y, (h_n, c_n) = results(self, layer_in, [h_n, c_n], unbatched, from_host)
        return (y, (h_n, c_n)) if lstm else (y, h_n)

    def _weights(self, sfx):
        p = self._params
        W_ih, W_hh = p["weight_ih" + sfx], p["weight_hh" + sfx]
        if self.bias:
            return W_ih, W_hh, p["bias_ih" + sfx], p["bias_hh" + sfx]
        zeros = self.xp.zeros(W_ih.shape[0], self.dtype)
        return W_ih, W_hh, zeros, zeros

    # ---- backward ---------------------------------------------------------------------------

    def backward(self, dout, dhx=None, input_grad=True):
        """dx, dh0 = rnn.backward(dout, dh_n)   |   dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n)).

        dout has the shape of ``out``; dh_n / dc_n the shape of the final states (None means
        zero). Sets ``grads`` and ``hidden_grad_norms`` (num_layers * D, T). On a GPU layer,
        a device dout gives device gradients back; a NumPy dout gives NumPy.
        ``input_grad=False``: the input's gradient is not wanted (an input that does not require
        a gradient, in torch's words); dx comes back None and the first layer skips its GEMM.
        """
        if self._cache is None:
            raise ValueError("backward() called before forward(): run forward on a batch first")
        if self._cache is NOTHING_KEPT:
            raise ValueError("backward() after a forward inside rnnjit.no_grad(), which keeps nothing for "
                             "backward: run that forward outside no_grad")
        xp = self.xp
        caches, masks, T, B, unbatched = self._cache
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        lstm = self.cell.has_cell_state
        out_shape = (T, H * D) if unbatched else ((B, T, H * D) if self.batch_first else (T, B, H * D))
        from_host = not xp.on_device(dout)
        dout = as_array(self, "dout", dout)
        if tuple(dout.shape) != out_shape:
            raise ValueError(f"dout must have the shape of the output {out_shape}, got {shape_text(dout)}")
        if dout.dtype != self.dtype:
            raise TypeError(f"dout has dtype {dout.dtype.name}, but the layer is {np.dtype(self.dtype).name}")
        if unbatched:
            dout = add_batch_axis(dout, xp)
        elif self.batch_first:
            dout = xp.swap01(xp.to_device(dout))
        dout = xp.to_device(dout)
        dh_n, dc_n = split_state(self, "dhx", dhx, unbatched, B)

        dh0 = xp.empty((L * D, B, H), self.dtype)
        dc0 = xp.empty((L * D, B, H), self.dtype) if lstm else None
        norms = xp.empty((L * D, T), np.float64)
        d_layer_out = dout
        for k in reversed(range(L)):
            if masks[k] is not None:
                d_layer_out = xp.multiply(d_layer_out, masks[k])
            d_layer_in = None
            for d in range(D):
                idx = k * D + d
                sfx = f"_l{k}" + ("_reverse" if d else "")
                g = xp.take_columns(d_layer_out, d * H, H) if D == 2 else xp.contiguous(d_layer_out)
                grads = self._grads  # written in place (optimizers hold these arrays), by the kernels on the GPU
                into = (dh0[idx], dc0[idx] if lstm else None,
                        *(grads.get(name + sfx) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")), norms[idx])
                dx, *_ = self.cell.backward(
                    caches[idx], g, xp.contiguous(dh_n[idx]), None if dc_n is None else xp.contiguous(dc_n[idx]),
                    need_dx=input_grad or k > 0, into=into)
                if dx is not None:
                    d_layer_in = dx if d_layer_in is None else xp.add(d_layer_in, dx)
            d_layer_out = d_layer_in

        self._norms = norms
        dx, (dh0, dc0) = results(self, d_layer_out, [dh0, dc0], unbatched, from_host)
        return (dx, (dh0, dc0)) if lstm else (dx, dh0)

    def __repr__(self):
        extra = f", nonlinearity={self.nonlinearity!r}" if self.cell_name == "rnn" else ""
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, dtype={np.dtype(self.dtype).name}{extra}"
                + (", device='cuda')" if self.device == "cuda" else ")"))


class RNN(Recurrent):
    """Elman network: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (or relu)."""

    cell_name = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, device="cpu"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed, nonlinearity, device)


class LSTM(Recurrent):
    """Long short-term memory, gate order i, f, g, o (see ``rnnjit.kernels.lstm``)."""

    cell_name = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, device="cpu"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed, device=device)


class GRU(Recurrent):
    """Gated recurrent unit, gate order r, z, n (see ``rnnjit.kernels.gru``)."""

    cell_name = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, device="cpu"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed, device=device)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
