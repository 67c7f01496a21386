"""Optimizers and gradient clipping. Each update works in place on the parameter arrays.

    SGD       v = μ v + g;                         θ -= lr v          (μ = momentum; 0 is plain SGD)
    Adagrad   s += g²;                             θ -= lr g / (√s + ε)
    RMSprop   s = α s + (1-α) g²;                  θ -= lr g / (√s + ε)
    Adam      m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
              θ -= lr m̂ / (√v̂ + ε),  m̂ = m / (1-β1^t),  v̂ = v / (1-β2^t)

Clipping: by global norm, g *= c / ‖g‖ when ‖g‖ > c (‖g‖ over all parameters together), or by
value, g = clip(g, -c, c). Both report the norm before clipping.

An optimizer's state is a flat dict of arrays (``state_dict()``), so a checkpoint can store it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _sgd(p, g, v, lr, momentum):
    p, g, v = p.reshape(-1), g.reshape(-1), v.reshape(-1)
    for i in range(p.size):
        v[i] = momentum * v[i] + g[i]
        p[i] -= lr * v[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _adagrad(p, g, s, lr, eps):
    p, g, s = p.reshape(-1), g.reshape(-1), s.reshape(-1)
    for i in range(p.size):
        s[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(s[i]) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _rmsprop(p, g, s, lr, alpha, eps):
    p, g, s = p.reshape(-1), g.reshape(-1), s.reshape(-1)
    for i in range(p.size):
        s[i] = alpha * s[i] + (1 - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(s[i]) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _adam(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    p, g, m, v = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
    for i in range(p.size):
        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
        p[i] -= lr * (m[i] / c1) / (np.sqrt(v[i] / c2) + eps)


class Optimizer:
    """Base: holds (name, param, grad) triples and per-parameter state arrays called slots."""

    slots: tuple[str, ...] = ()

    def __init__(self, parameters, lr: float):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.parameters = list(parameters)
        self.lr = float(lr)
        self.t = 0
        self.state = {name: {s: np.zeros_like(p) for s in self.slots} for name, p, _ in self.parameters}

    def step(self):
        self.t += 1
        for name, p, g in self.parameters:
            self._update(p, g, self.state[name])

    def _update(self, p, g, st):
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        d = {f"{name}/{s}": a for name, st in self.state.items() for s, a in st.items()}
        d["t"] = np.array(self.t)
        return d

    def load_state_dict(self, d):
        self.t = int(d["t"])
        for name, st in self.state.items():
            for s, a in st.items():
                a[...] = d[f"{name}/{s}"]


class SGD(Optimizer):
    slots = ("velocity",)

    def __init__(self, parameters, lr=0.1, momentum=0.0):
        super().__init__(parameters, lr)
        self.momentum = float(momentum)

    def _update(self, p, g, st):
        _sgd(p, g, st["velocity"], p.dtype.type(self.lr), p.dtype.type(self.momentum))


class Adagrad(Optimizer):
    slots = ("sum_sq",)

    def __init__(self, parameters, lr=0.1, eps=1e-8):
        super().__init__(parameters, lr)
        self.eps = eps

    def _update(self, p, g, st):
        _adagrad(p, g, st["sum_sq"], p.dtype.type(self.lr), p.dtype.type(self.eps))


class RMSprop(Optimizer):
    slots = ("mean_sq",)

    def __init__(self, parameters, lr=2e-3, alpha=0.95, eps=1e-8):
        super().__init__(parameters, lr)
        self.alpha, self.eps = alpha, eps

    def _update(self, p, g, st):
        T = p.dtype.type
        _rmsprop(p, g, st["mean_sq"], T(self.lr), T(self.alpha), T(self.eps))


class Adam(Optimizer):
    slots = ("m", "v")

    def __init__(self, parameters, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(parameters, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, p, g, st):
        T = p.dtype.type
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        _adam(p, g, st["m"], st["v"], T(self.lr), T(self.beta1), T(self.beta2), T(self.eps), T(c1), T(c2))


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def global_norm(grads) -> float:
    return math.sqrt(sum(float(np.dot(g.reshape(-1), g.reshape(-1))) for g in grads))


def clip_gradients(grads, clip: float, mode: str = "norm") -> tuple[float, bool]:
    """Clip in place; returns (global norm before clipping, whether clipping changed anything)."""
    grads = list(grads)
    norm = global_norm(grads)
    if not clip or clip <= 0:
        return norm, False
    if mode == "norm":
        if norm > clip:
            scale = clip / (norm + 1e-12)
            for g in grads:
                g *= g.dtype.type(scale)
            return norm, True
        return norm, False
    if mode == "value":
        fired = False
        for g in grads:
            if np.abs(g).max() > clip:
                fired = True
                np.clip(g, -clip, clip, out=g)
        return norm, fired
    raise ValueError(f"clip mode must be 'norm' or 'value', got {mode!r}")
