"""Many-to-one: read a whole sequence, then answer once from the final state.

    h_t = cell(x_t, h_{t-1}),  h_0 = 0          a stacked RNN/LSTM/GRU over the T inputs
    r   = h_T                                   the last layer's final state, or, bidirectional,
    r   = [h_T(forward) ; h_1(reverse)]         both directions' final states side by side
    z   = W r + b                               a linear head (``head.weight``, ``head.bias``)

    loss="mse":  L = mean_{b,k} (z_bk - y_bk)^2                  regression (the adding problem)
    loss="ce":   L = -(1/B) Σ_b log softmax(z_b)[y_b]           classification

Backward runs the other way: dL/dr = W^T dL/dz is the gradient of the layer's final state, and
every output h_t gets zero gradient. So the whole learning signal enters at t = T and must travel
back through the recurrence: ``hidden_grad_norms`` after a step is exactly ||dL/dh_t|| for the
loss at the last step, the vanishing-gradient picture (``rnnjit vanish``).

Inputs are float features, time-major (T, B, input_size); a task with symbols passes one-hot rows.

``device="cuda"`` runs it all on the GPU with the same equations: the layer, the side-by-side
copy of the final states, the head (``kernels/cuda/dense.py``'s tiled GEMM) and the loss (its
``mse_grad`` / ``softmax_cross_entropy``); parameters, gradients and ``input_grad`` are device
arrays. A step sends x and y and brings back the loss. ``predict`` gives NumPy for NumPy x (a
device array for a device x), and ``params``, ``grads`` and ``state_dict()`` read as NumPy.
``cuda_graphs=True``: on the GPU, ``forward_backward`` of NumPy x and y replays its device work
as one CUDA graph from the third step of a shape on (``graphed.py``), the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..grad_mode import no_grad
from .module import Module, check_sizes, checked_ids, linear, linear_grad, make_layer, scalar, seeds, uniform


class SequenceClassifier(Module):
    layer_names = ("rnn",)

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = False, loss: str = "mse", dtype=np.float32,
                 seed: int | None = None, device: str = "cpu", cuda_graphs: bool = False):
        if loss not in ("mse", "ce"):
            raise ValueError(f"loss must be 'mse' (regression) or 'ce' (classification), got {loss!r}")
        check_sizes(input_size=input_size, output_size=output_size, hidden_size=hidden_size, num_layers=num_layers)
        self._setup(device, cuda_graphs)
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_size, self.num_layers, self.loss_kind = int(hidden_size), int(num_layers), loss
        self.cell = cell
        self.dtype = np.dtype(dtype).type
        rnn_seed, own_seed = seeds(seed, 2)
        self.rnn = make_layer(cell, input_size, hidden_size, num_layers, dtype, rnn_seed, bidirectional,
                              device=device)
        D = self.rnn.num_directions
        rng = np.random.default_rng(own_seed)
        self._own({"head.weight": uniform(rng, (output_size, D * hidden_size), D * hidden_size, dtype),
                   "head.bias": np.zeros(output_size, dtype)})
        self.input_grad = None   # dL/dx after forward_backward (on the model's device)
        self._graph_step([self.rnn], keep=[(self, "input_grad")])

    @property
    def hidden_grad_norms(self):
        return self.rnn.hidden_grad_norms

    def _inputs(self, x):
        """x as given, once it is known to be (T, B, input_size) numbers; otherwise a one-line
        ValueError (a (T, I) x has no batch axis: pass x[:, None] for one sequence)."""
        shape = np.shape(x)
        if len(shape) != 3 or shape[2] != self.input_size:
            raise ValueError(f"x must be (T, B, I) = (T, B, {self.input_size}): time-major sequences of "
                             f"input_size features; got {shape}")
        dtype = None if self.xp.on_device(x) else np.asarray(x).dtype
        if dtype is not None and dtype.kind not in "fiub":
            raise ValueError(f"x must hold numbers, got dtype {dtype}")
        return x

    def _final(self, x):
        """r (B, D*H): the last layer's final state, both directions side by side."""
        _, state = self.rnn(self._floats(self._inputs(x)))
        h_n = state[0] if isinstance(state, tuple) else state
        S, B, H = h_n.shape
        D = self.rnn.num_directions
        r = self.xp.empty((B, D * H), self.dtype)
        for d in range(D):                                      # forward dir first, then reverse
            self.xp.put_columns(r, h_n[S - D + d], d * H)
        return r

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def predict(self, x):
        """x (T, B, I) -> z (B, output_size): the regression value(s) or the class scores
        (NumPy for a NumPy x; on the GPU, a device x gives a device z)."""
        z = linear(self._params, "head", self._final(x), self.k, self.xp)
        return z if self.xp.on_device(x) else self.xp.to_host(z)

    def _targets(self, y, B):
        """y as the loss reads it, on the host: class ids (B,), checked to be in [0, output_size)
        (``checked_ids``), or values (B, output_size) ((B,) too when output_size is 1)."""
        if self.loss_kind == "ce":
            labels = checked_ids(y, "labels", "output_size", self.output_size)
            if labels.size != B:
                raise ValueError(f"labels must hold one class id per sequence, B={B}, got shape {labels.shape}")
            return labels.reshape(B)
        O, shape = self.output_size, np.shape(y)
        if shape != (B, O) and not (O == 1 and shape == (B,)):
            if len(shape) in (1, 2) and shape[0] != B:
                raise ValueError(f"x has batch {B} but y has batch {shape[0]} (y is {shape}): "
                                 f"y must be (B, output_size) = ({B}, {O}), one row of targets per sequence")
            raise ValueError(f"y must be (B, output_size) = ({B}, {O}): one row of targets per sequence; got {shape}")
        try:
            return np.ascontiguousarray(np.asarray(y, self.dtype).reshape(B, O))
        except (TypeError, ValueError):
            raise ValueError(f"y must hold numbers, got dtype {np.asarray(y).dtype}") from None

    def _loss(self, z, y, grad):
        """(loss, dL/dz or None) against y on the model's device (``_targets``); the loss a float
        on the CPU, a (1,) device array on the GPU."""
        k = self.k
        if self.loss_kind == "ce":
            return k.softmax_cross_entropy(z, y) if grad else (k.cross_entropy(z, y), None)
        return k.mse_grad(z, y) if grad else (k.mse(z, y), None)

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def loss(self, x, y) -> float:
        """The loss without gradients (evaluation)."""
        z = linear(self._params, "head", self._final(x), self.k, self.xp)
        y = self.xp.to_device(self._targets(y, int(z.shape[0])))
        return scalar(self._loss(z, y, grad=False)[0])

    def forward_backward(self, x, y) -> float:
        """One step's loss; gradients land in ``grads`` (and the layer's), dL/dx in ``input_grad``."""
        xp = self.xp
        y = self._targets(y, np.shape(self._inputs(x))[1])
        if self._graphed is not None and self._graphed.graphable() and not xp.on_device(x):
            return self._graphed([np.ascontiguousarray(x, dtype=self.dtype), y], None)[0]
        return scalar(self._step_on_device([x, xp.to_device(y)], None)[0])

    def _step_on_device(self, xy, state):
        """forward_backward's work on the model's device: x (T, B, I) and the targets there
        (``_targets``); ``state`` is unused (the layer starts from zeros). Returns (loss, None),
        the loss as the kernels give it (on the GPU a (1,) device array)."""
        x, y = xy
        xp = self.xp
        r = self._final(x)
        z = linear(self._params, "head", r, self.k, xp)
        loss, dz = self._loss(z, y, grad=True)
        dr = linear_grad(self._params, self._grads, "head", r, dz, self.k, xp)
        T, B = np.shape(x)[:2]
        L, D, H = self.num_layers, self.rnn.num_directions, self.hidden_size
        dh_n = xp.zeros((L * D, B, H), self.dtype)
        for d in range(D):                                      # the only gradient that enters
            xp.assign(dh_n[(L - 1) * D + d], xp.take_columns(dr, d * H, H))
        dout = xp.zeros((T, B, D * H), self.dtype)
        dstate = (dh_n, xp.zeros(dh_n.shape, self.dtype)) if self.rnn.cell.has_cell_state else dh_n
        self.input_grad, _ = self.rnn.backward(dout, dstate)
        return loss, None
