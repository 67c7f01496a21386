"""Optimizers and gradient clipping. Each update works in place on the parameter arrays.

    SGD       v = μ v + g;                         θ -= lr v          (μ = momentum; 0 is plain SGD)
    Adagrad   s += g²;                             θ -= lr g / (√s + ε)
    RMSprop   s = α s + (1-α) g²;                  θ -= lr g / (√s + ε)
    Adam      m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
              θ -= lr m̂ / (√v̂ + ε),  m̂ = m / (1-β1^t),  v̂ = v / (1-β2^t)

Clipping: by global norm, g *= c / ‖g‖ when ‖g‖ > c (‖g‖ over all parameters together), or by
value, g = clip(g, -c, c). Both report the norm before clipping.

An optimizer's state is a flat dict of arrays (``state_dict()``), so a checkpoint can store it.

Given a model's ``parameters()`` (a ``ParameterList`` whose ``flat`` holds every parameter and
gradient in one buffer, ``rnnjit/nn/flat.py``), an optimizer keeps its state in buffers of the
same layout and updates everything in one call (one kernel launch on the GPU); the per-parameter
state arrays are views of those buffers, so ``state_dict()`` does not change. Any other list of
(name, array, grad) is updated one array at a time, with the same arithmetic.

Both work on NumPy arrays (the Numba kernels below) and on CUDA device arrays (a model built
with ``device="cuda"``): they look at the arrays they are given and dispatch. On the device the
same updates run as small CUDA kernels (``rnnjit.kernels.cuda.optim``), the optimizer's state
lives on the device beside the parameters, and only the gradient norm (a float) comes back;
``state_dict()`` still gives NumPy arrays (copies) and ``load_state_dict()`` takes them, so a
checkpoint does not care where training ran. Nothing here imports numba.cuda unless it is
handed device arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import kernels  # noqa: F401  (first: it installs the cache locators, kernels/_cache.py)
from ..nn.flat import holds


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


def on_device(a) -> bool:
    """True for a CUDA device array (numba's ``DeviceNDArray``, or the simulator's stand-in)."""
    return hasattr(a, "copy_to_host")


def _device_ops():
    from ..kernels.cuda import optim
    return optim


def _zeros_like(p):
    return _device_ops().zeros_like(p) if on_device(p) else np.zeros_like(p)


HOST_UPDATES = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam}


class Optimizer:
    """Base: holds (name, param, grad) triples and per-parameter state arrays called slots.

    A subclass names its update (``kernel``, a key of ``HOST_UPDATES`` and of the CUDA twin's
    ``UPDATES``), its state arrays (``slots``) and the scalars the update takes (``_scalars``)."""

    slots: tuple[str, ...] = ()
    kernel = ""

    def __init__(self, parameters, lr: float):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.flat = getattr(parameters, "flat", None)
        self.parameters = list(parameters)
        if self.flat is not None and not holds(self.flat, self.parameters):
            self.flat = None          # a copied model: its arrays are no longer views of one buffer
        self.lr = float(lr)
        self.t = 0
        if self.flat is not None:
            # the state laid out like the parameters: one buffer per slot, a view per parameter
            bufs = {s: _zeros_like(self.flat.params) for s in self.slots}
            self._flat_state = [bufs[s] for s in self.slots]
            self.state = {name: {s: self.flat.view(bufs[s], i) for s in self.slots}
                          for i, (name, _, _) in enumerate(self.parameters)}
        else:
            self.state = {name: {s: _zeros_like(p) for s in self.slots} for name, p, _ in self.parameters}

    def step(self):
        """One update of every parameter: a single call over the flat buffers when the
        parameters came as a ``ParameterList`` with ``flat`` (``nn/flat.py``), else one per array."""
        self.t += 1
        with np.errstate(over="ignore"):      # an lr past float32's range becomes inf: the engine's
            self._step(self._scalars())      # divergence guard then says so in one line

    def _step(self, scalars):
        if self.flat is not None:
            f = self.flat
            self._update(f.params, f.grads, self._flat_state, tuple(f.params.dtype.type(v) for v in scalars))
            return
        typed = {}   # the scalars in each parameter dtype, converted once per step
        for name, p, g in self.parameters:
            dt = p.dtype.type
            if dt not in typed:
                typed[dt] = tuple(dt(v) for v in scalars)
            self._update(p, g, [self.state[name][s] for s in self.slots], typed[dt])

    def _scalars(self) -> tuple[float, ...]:
        raise NotImplementedError

    def _update(self, p, g, slots, scalars):
        if on_device(p):
            _device_ops().update(self.kernel, p, g, slots, scalars)
        else:
            HOST_UPDATES[self.kernel](p, g, *slots, *scalars)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as NumPy arrays (device state is copied to the host)."""
        d = {f"{name}/{s}": (a.copy_to_host() if on_device(a) else a)
             for name, st in self.state.items() for s, a in st.items()}
        d["t"] = np.array(self.t)
        return d

    def load_state_dict(self, d):
        self.t = int(d["t"])
        for name, st in self.state.items():
            for s, a in st.items():
                if on_device(a):
                    a.copy_to_device(np.ascontiguousarray(d[f"{name}/{s}"], dtype=a.dtype))
                else:
                    a[...] = d[f"{name}/{s}"]


class SGD(Optimizer):
    slots = ("velocity",)
    kernel = "sgd"

    def __init__(self, parameters, lr=0.1, momentum=0.0):
        super().__init__(parameters, lr)
        self.momentum = float(momentum)

    def _scalars(self):
        return self.lr, self.momentum


class Adagrad(Optimizer):
    slots = ("sum_sq",)
    kernel = "adagrad"

    def __init__(self, parameters, lr=0.1, eps=1e-8):
        super().__init__(parameters, lr)
        self.eps = eps

    def _scalars(self):
        return self.lr, self.eps


class RMSprop(Optimizer):
    slots = ("mean_sq",)
    kernel = "rmsprop"

    def __init__(self, parameters, lr=2e-3, alpha=0.95, eps=1e-8):
        super().__init__(parameters, lr)
        self.alpha, self.eps = alpha, eps

    def _scalars(self):
        return self.lr, self.alpha, self.eps


class Adam(Optimizer):
    slots = ("m", "v")
    kernel = "adam"

    def __init__(self, parameters, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(parameters, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _scalars(self):
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        return self.lr, self.beta1, self.beta2, self.eps, c1, c2


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


class _HostOps:
    """The three operations clipping needs, on NumPy arrays (the CUDA twin: kernels.cuda.optim)."""

    @staticmethod
    def norm_and_count(grads, threshold=math.inf):
        norm = math.sqrt(sum(float(np.dot(g.reshape(-1), g.reshape(-1))) for g in grads))
        over = 0 if threshold == math.inf else sum(int(np.count_nonzero(np.abs(g) > threshold)) for g in grads)
        return norm, over

    @staticmethod
    def scale(g, s):
        g *= g.dtype.type(s)

    @staticmethod
    def clip_values(g, c):
        np.clip(g, -c, c, out=g)


def _ops(grads):
    return _device_ops() if grads and on_device(grads[0]) else _HostOps


def gradients(parameters) -> list:
    """The gradients to clip or measure: the one flat buffer when ``parameters`` has one (one
    reduction, one scaling), else every gradient array."""
    flat = getattr(parameters, "flat", None)
    if flat is not None and holds(flat, parameters):
        return [flat.grads]
    return [g for _, _, g in parameters]


def global_norm(grads) -> float:
    grads = list(grads)
    return _ops(grads).norm_and_count(grads)[0]


def clip_gradients(grads, clip: float, mode: str = "norm") -> tuple[float, bool]:
    """Clip in place; returns (global norm before clipping, whether clipping changed anything).

    NumPy arrays or device arrays; for device arrays the norm (and, clipping by value, whether
    any value is beyond the clip) is all that comes back to the host."""
    grads = list(grads)
    ops = _ops(grads)
    by_value = mode == "value" and clip and clip > 0
    norm, over = ops.norm_and_count(grads, clip if by_value else math.inf)
    if not clip or clip <= 0:
        return norm, False
    if mode == "norm":
        if norm > clip:
            for g in grads:
                ops.scale(g, clip / (norm + 1e-12))
            return norm, True
        return norm, False
    if mode == "value":
        if over:
            for g in grads:
                ops.clip_values(g, clip)
        return norm, over > 0
    raise ValueError(f"clip mode must be 'norm' or 'value', got {mode!r}")
