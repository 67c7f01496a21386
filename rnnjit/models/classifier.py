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
"""

from __future__ import annotations

import numpy as np

from ..kernels.dense import cross_entropy, softmax_cross_entropy
from .module import Module, linear, linear_grad, make_layer, seeds, uniform


class SequenceClassifier(Module):
    layer_names = ("rnn",)

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = False, loss: str = "mse", dtype=np.float32,
                 seed: int | None = None):
        if loss not in ("mse", "ce"):
            raise ValueError(f"loss must be 'mse' (regression) or 'ce' (classification), got {loss!r}")
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_size, self.num_layers, self.loss_kind = int(hidden_size), int(num_layers), loss
        self.cell = cell
        self.dtype = np.dtype(dtype).type
        rnn_seed, own_seed = seeds(seed, 2)
        self.rnn = make_layer(cell, input_size, hidden_size, num_layers, dtype, rnn_seed, bidirectional)
        D = self.rnn.num_directions
        rng = np.random.default_rng(own_seed)
        self.params = {"head.weight": uniform(rng, (output_size, D * hidden_size), D * hidden_size, dtype),
                       "head.bias": np.zeros(output_size, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.input_grad = None   # dL/dx after forward_backward

    @property
    def hidden_grad_norms(self):
        return self.rnn.hidden_grad_norms

    def _final(self, x):
        """r (B, D*H): the last layer's final state, both directions side by side."""
        _, state = self.rnn(np.ascontiguousarray(x, dtype=self.dtype))
        h_n = state[0] if isinstance(state, tuple) else state
        D = self.rnn.num_directions
        return np.concatenate(list(h_n[-D:]), axis=1)          # forward dir first, then reverse

    def predict(self, x):
        """x (T, B, I) -> z (B, output_size): the regression value(s) or the class scores."""
        return linear(self.params, "head", self._final(x))

    def _loss(self, z, y, grad):
        if self.loss_kind == "ce":
            y = np.ascontiguousarray(y, dtype=np.int64)
            return softmax_cross_entropy(z, y) if grad else (cross_entropy(z, y), None)
        diff = z - np.asarray(y, self.dtype).reshape(z.shape)
        return float(np.mean(diff * diff)), (2.0 / diff.size) * diff

    def loss(self, x, y) -> float:
        """The loss without gradients (evaluation)."""
        return float(self._loss(self.predict(x), y, grad=False)[0])

    def forward_backward(self, x, y) -> float:
        """One step's loss; gradients land in ``grads`` (and the layer's), dL/dx in ``input_grad``."""
        r = self._final(x)
        z = linear(self.params, "head", r)
        loss, dz = self._loss(z, y, grad=True)
        dr = linear_grad(self.params, self.grads, "head", r, dz.astype(self.dtype))
        T, B = np.shape(x)[:2]
        L, D, H = self.num_layers, self.rnn.num_directions, self.hidden_size
        dh_n = np.zeros((L * D, B, H), self.dtype)
        dh_n[-D:] = dr.reshape(B, D, H).transpose(1, 0, 2)      # the only gradient that enters
        dout = np.zeros((T, B, D * H), self.dtype)
        dstate = (dh_n, np.zeros_like(dh_n)) if self.rnn.cell.has_cell_state else dh_n
        self.input_grad, _ = self.rnn.backward(dout, dstate)
        return float(loss)
