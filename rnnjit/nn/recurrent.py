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
optional extra). The whole time loop of a layer runs on the GPU in one persistent kernel; the
layer's inputs, weights and results cross to and from the host once per layer and direction
per call (parameters, gradients and optimizer state stay NumPy arrays on the host, so
``state_dict`` and the optimizers are the same for both devices).

``backward`` is explicit, as in CS231n-style code: call it after ``forward`` with the gradient
of the loss with respect to the outputs (and, optionally, the final state). It returns the
gradients with respect to the inputs and the initial state, sets ``grads`` (same keys as
``state_dict()``), and records ``hidden_grad_norms``: for every layer and direction the norm of
dL/dh_t at every timestep t, the quantity that shows gradients vanishing or exploding.
"""

from __future__ import annotations

import numpy as np

from ..kernels.cells import CELLS

_DTYPES = (np.float32, np.float64)


def _identity(a):
    return a


def _shape(a) -> str:
    return "(" + ", ".join(str(n) for n in a.shape) + ")"


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
            self.cell = kcuda.CUDA_CELLS[self.cell_name]
            self._to_device, self._to_host = kcuda.to_device, kcuda.to_host
        else:
            self.cell = CELLS[self.cell_name]
            self._to_device = self._to_host = _identity
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
        self.params = self._init_params(np.random.default_rng(init_seq))
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.hidden_grad_norms = None
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

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the parameters, keyed and shaped as ``torch.nn`` keys and shapes them."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Load parameters (NumPy arrays, or anything ``np.asarray`` takes, torch tensors included)."""
        missing = sorted(set(self.params) - set(state))
        extra = sorted(set(state) - set(self.params))
        if missing:
            raise ValueError(f"load_state_dict: missing key(s) {', '.join(missing)}")
        if extra:
            raise ValueError(f"load_state_dict: unexpected key(s) {', '.join(extra)}")
        new = {}
        for k, v in self.params.items():
            a = np.asarray(state[k].detach().cpu().numpy() if hasattr(state[k], "detach") else state[k])
            if a.shape != v.shape:
                raise ValueError(f"load_state_dict: {k} has shape {_shape(a)}, expected {_shape(v)}")
            new[k] = np.ascontiguousarray(a, dtype=self.dtype)
        for k in self.params:
            self.params[k][...] = new[k]

    def parameters(self):
        """(name, array, grad) triples, for an optimizer that updates the arrays in place."""
        return [(k, self.params[k], self.grads[k]) for k in self.params]

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---- forward ----------------------------------------------------------------------------

    def _check_state(self, name, s, B):
        expected = (self.num_layers * self.num_directions, B, self.hidden_size)
        s = np.asarray(s)
        if s.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {s.dtype.name}, but the layer is {np.dtype(self.dtype).name}")
        if s.shape != expected:
            raise ValueError(f"{name} must have shape {expected} (layers*directions, batch, hidden), got {_shape(s)}")
        return s

    def _check_input(self, x):
        x = np.asarray(x)
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype.name}, but the layer is {np.dtype(self.dtype).name}: "
                            f"pass x.astype(np.{np.dtype(self.dtype).name}) or build the layer with dtype={x.dtype.name}")
        if x.ndim not in (2, 3):
            layout = "(batch, seq, input)" if self.batch_first else "(seq, batch, input)"
            raise ValueError(f"x must be 3-D {layout} or 2-D (seq, input), got shape {_shape(x)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x has {x.shape[-1]} features in its last axis, expected input_size={self.input_size} "
                             f"(shape {_shape(x)})")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one timestep and one batch item, got shape {_shape(x)}")
        return x

    def forward(self, x, hx=None):
        """out, h_n = rnn(x, h0)   |   out, (h_n, c_n) = lstm(x, (h0, c0)).

        x is (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched. out is (T, B, D*H)
        (forward direction first, then reverse); states are (num_layers * D, B, H).
        """
        x = self._check_input(x)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        x = np.ascontiguousarray(x)
        T, B, _ = x.shape
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        lstm = self.cell.has_cell_state

        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not (isinstance(hx, tuple) and len(hx) == 2):
                    raise ValueError("hx for an LSTM must be a tuple (h0, c0)")
                h0, c0 = hx
            else:
                h0 = hx
            if unbatched:
                h0 = None if h0 is None else np.asarray(h0)[:, None, :]
                c0 = None if c0 is None else np.asarray(c0)[:, None, :]
        h0 = np.zeros((L * D, B, H), self.dtype) if h0 is None else self._check_state("h0", h0, B)
        if lstm:
            c0 = np.zeros((L * D, B, H), self.dtype) if c0 is None else self._check_state("c0", c0, B)

        h_n = np.empty((L * D, B, H), self.dtype)
        c_n = np.empty((L * D, B, H), self.dtype) if lstm else None
        caches, masks = [], []
        layer_in = x
        for k in range(L):
            out = np.empty((T, B, D * H), self.dtype) if D == 2 else None
            for d in range(D):
                idx = k * D + d
                sfx = f"_l{k}" + ("_reverse" if d else "")
                dev, host = self._to_device, self._to_host
                W_ih, W_hh, b_ih, b_hh = (dev(w) for w in self._weights(sfx))
                o, hn, cn, cache = self.cell.forward(
                    dev(layer_in), dev(np.ascontiguousarray(h0[idx])),
                    None if c0 is None else dev(np.ascontiguousarray(c0[idx])),
                    W_ih, W_hh, b_ih, b_hh, d == 1, self.nonlinearity)
                o, hn = host(o), host(hn)
                cn = None if cn is None else host(cn)
                h_n[idx] = hn
                if lstm:
                    c_n[idx] = cn
                if D == 2:
                    out[:, :, d * H:(d + 1) * H] = o
                else:
                    out = o
                caches.append(cache)
            mask = None
            if self.training and self.dropout > 0 and k < L - 1:
                keep = 1.0 - self.dropout
                mask = (self.dropout_rng.random(out.shape) < keep).astype(self.dtype) / self.dtype(keep)
                out = out * mask
            masks.append(mask)
            layer_in = np.ascontiguousarray(out)

        self._cache = (caches, masks, T, B, unbatched)
        y = layer_in
        if unbatched:
            y, h_n = y[:, 0, :], h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        elif self.batch_first:
            y = y.transpose(1, 0, 2)
        return (y, (h_n, c_n)) if lstm else (y, h_n)

    __call__ = forward

    def _weights(self, sfx):
        W_ih, W_hh = self.params["weight_ih" + sfx], self.params["weight_hh" + sfx]
        if self.bias:
            return W_ih, W_hh, self.params["bias_ih" + sfx], self.params["bias_hh" + sfx]
        zeros = np.zeros(W_ih.shape[0], self.dtype)
        return W_ih, W_hh, zeros, zeros

    # ---- backward ---------------------------------------------------------------------------

    def backward(self, dout, dhx=None):
        """dx, dh0 = rnn.backward(dout, dh_n)   |   dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n)).

        dout has the shape of ``out``; dh_n / dc_n the shape of the final states (None means
        zero). Sets ``grads`` and ``hidden_grad_norms`` (num_layers * D, T).
        """
        if self._cache is None:
            raise ValueError("backward() called before forward(): run forward on a batch first")
        caches, masks, T, B, unbatched = self._cache
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        lstm = self.cell.has_cell_state
        out_shape = (T, H * D) if unbatched else ((B, T, H * D) if self.batch_first else (T, B, H * D))
        dout = np.asarray(dout)
        if dout.shape != out_shape:
            raise ValueError(f"dout must have the shape of the output {out_shape}, got {_shape(dout)}")
        if dout.dtype != self.dtype:
            raise TypeError(f"dout has dtype {dout.dtype.name}, but the layer is {np.dtype(self.dtype).name}")
        if unbatched:
            dout = dout[:, None, :]
        elif self.batch_first:
            dout = dout.transpose(1, 0, 2)

        dh_n = dc_n = None
        if dhx is not None:
            if lstm:
                if not (isinstance(dhx, tuple) and len(dhx) == 2):
                    raise ValueError("dhx for an LSTM must be a tuple (dh_n, dc_n)")
                dh_n, dc_n = dhx
            else:
                dh_n = dhx
            if unbatched:
                dh_n = None if dh_n is None else np.asarray(dh_n)[:, None, :]
                dc_n = None if dc_n is None else np.asarray(dc_n)[:, None, :]
        dh_n = np.zeros((L * D, B, H), self.dtype) if dh_n is None else self._check_state("dh_n", dh_n, B)
        if lstm:
            dc_n = np.zeros((L * D, B, H), self.dtype) if dc_n is None else self._check_state("dc_n", dc_n, B)

        dh0 = np.empty((L * D, B, H), self.dtype)
        dc0 = np.empty((L * D, B, H), self.dtype) if lstm else None
        norms = np.empty((L * D, T), np.float64)
        d_layer_out = dout
        for k in reversed(range(L)):
            if masks[k] is not None:
                d_layer_out = d_layer_out * masks[k]
            d_layer_in = None
            for d in range(D):
                idx = k * D + d
                sfx = f"_l{k}" + ("_reverse" if d else "")
                g = np.ascontiguousarray(d_layer_out[:, :, d * H:(d + 1) * H])
                dev, host = self._to_device, self._to_host
                results = self.cell.backward(
                    caches[idx], dev(g), dev(np.ascontiguousarray(dh_n[idx])),
                    None if dc_n is None else dev(np.ascontiguousarray(dc_n[idx])))
                dx, dh, dc, dW_ih, dW_hh, db_ih, db_hh, nrm = (None if r is None else host(r) for r in results)
                dh0[idx] = dh
                if lstm:
                    dc0[idx] = dc
                norms[idx] = nrm
                self.grads["weight_ih" + sfx][...] = dW_ih  # in place: optimizers hold these arrays
                self.grads["weight_hh" + sfx][...] = dW_hh
                if self.bias:
                    self.grads["bias_ih" + sfx][...] = db_ih
                    self.grads["bias_hh" + sfx][...] = db_hh
                d_layer_in = dx if d_layer_in is None else d_layer_in + dx
            d_layer_out = d_layer_in

        self.hidden_grad_norms = norms
        dx = d_layer_out
        if unbatched:
            dx, dh0 = dx[:, 0, :], dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        elif self.batch_first:
            dx = dx.transpose(1, 0, 2)
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
