"""The bookkeeping every composed model shares: its own dense parameters beside recurrent layers.

A model keeps its dense weights in ``params`` (with ``grads`` of the same keys) and its recurrent
layers as attributes named in ``layer_names``. Parameter names follow a torch module with those
submodules, so a layer's ``weight_hh_l0`` reads ``encoder.weight_hh_l0`` in ``state_dict()``.
"""

from __future__ import annotations

import numpy as np

from ..kernels.dense import linear_backward, linear_forward
from ..nn.recurrent import LAYERS


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dtype, seed,
               bidirectional: bool = False, dropout: float = 0.0):
    """A recurrent layer by name: rnn (tanh), rnn-relu, lstm or gru."""
    cell, nl = ("rnn", "relu") if cell == "rnn-relu" else (cell, "tanh")
    if cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}: choose rnn, rnn-relu, lstm or gru")
    extra = {"nonlinearity": nl} if cell == "rnn" else {}
    return LAYERS[cell](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                        dropout=dropout, dtype=dtype, seed=seed, **extra)


def uniform(rng, shape, fan_in, dtype):
    """torch.nn.Linear's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def seeds(seed, n):
    """n independent integer seeds from one."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def linear(params, name, x):
    """z = x W^T + b with the dense kernel; x is (N, in)."""
    return linear_forward(np.ascontiguousarray(x), params[name + ".weight"], params[name + ".bias"])


def linear_grad(params, grads, name, x, dz):
    """Writes the gradients of ``name``; returns dL/dx."""
    return linear_backward(np.ascontiguousarray(x), params[name + ".weight"], np.ascontiguousarray(dz),
                           grads[name + ".weight"], grads[name + ".bias"])


class Module:
    layer_names: tuple[str, ...] = ()

    params: dict
    grads: dict

    def _layers(self):
        return [(n, getattr(self, n)) for n in self.layer_names]

    def parameters(self):
        """(name, array, grad) for every parameter; optimizers update the arrays in place."""
        own = [(k, self.params[k], self.grads[k]) for k in self.params]
        return own + [(f"{n}.{k}", p, g) for n, layer in self._layers() for k, p, g in layer.parameters()]

    def state_dict(self):
        return {k: p.copy() for k, p, _ in self.parameters()}

    def load_state_dict(self, state):
        names = {k for k, _, _ in self.parameters()}
        missing, extra = sorted(names - set(state)), sorted(set(state) - names)
        if missing or extra:
            raise ValueError(f"load_state_dict: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
        for k, p, _ in self.parameters():
            if np.shape(state[k]) != p.shape:
                raise ValueError(f"load_state_dict: {k} has shape {np.shape(state[k])}, expected {p.shape}")
        for k, p, _ in self.parameters():
            p[...] = np.asarray(state[k], dtype=p.dtype)

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def train(self, mode=True):
        for _, layer in self._layers():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)
