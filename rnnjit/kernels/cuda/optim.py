"""Optimizer updates and gradient clipping on device arrays: the GPU side of ``rnnjit/train/optim.py``.

The same updates, expression for expression (so float32 results match the CPU's):

    SGD       v = μ v + g;                         θ -= lr v
    Adagrad   s += g²;                             θ -= lr g / (√s + ε)
    RMSprop   s = α s + (1-α) g²;                  θ -= lr g / (√s + ε)
    Adam      m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
              θ -= lr (m / c1) / (√(v / c2) + ε),  c1 = 1-β1^t,  c2 = 1-β2^t

    clip by norm    g *= c / ‖g‖  when ‖g‖ > c      (‖g‖ over all parameters together)
    clip by value   g = min(max(g, -c), c)

How the work is split: every update is elementwise, so each is one grid-stride kernel over the
flat parameter (``elementwise.grid1d``: thread i updates elements i, i + n, ...). A model keeps
all its parameters in one buffer and all its gradients in another (``rnnjit/nn/flat.py``), so a
step's update is ONE launch over every parameter, and so are the clipping and each pass of the
norm; a plain list of arrays gets one launch per array. The scalars (lr, the betas, the bias corrections c1 and c2, which depend on
the step count) are computed on the host and passed as kernel arguments in the parameter's
dtype. The global norm is a two-pass device reduction (``reduce.sums``); its two numbers (the
sum of squares, and how many values exceed the clip value) are the only thing that comes back;
the clipping rule itself (when to scale, when to clip) is written once, in ``train/optim.py``.

``rnnjit.train.optim`` dispatches here when the parameters are device arrays; the optimizers'
state (velocity, m, v, ...) then lives on the device too.
"""

import math

from numba import cuda

from . import to_host
from .elementwise import flat, launch1d, zeros
from .reduce import sums


@cuda.jit(cache=True)
def _sgd(p, g, v, lr, momentum):
    """SGD with momentum. Grid-stride over the flat parameter."""
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        v[i] = momentum * v[i] + g[i]
        p[i] -= lr * v[i]


@cuda.jit(cache=True)
def _adagrad(p, g, s, lr, eps):
    """Adagrad. Grid-stride over the flat parameter."""
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        s[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(s[i]) + eps)


@cuda.jit(cache=True)
def _rmsprop(p, g, s, lr, alpha, eps):
    """RMSprop. Grid-stride over the flat parameter."""
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        s[i] = alpha * s[i] + (1 - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(s[i]) + eps)


@cuda.jit(cache=True)
def _adam(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """Adam with bias correction (c1, c2 from the host). Grid-stride over the flat parameter."""
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
        p[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


@cuda.jit(cache=True)
def _scale(g, s):
    """g[i] *= s. Grid-stride over the flat gradient."""
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] *= s


@cuda.jit(cache=True)
def _clip_values(g, c):
    """g[i] = min(max(g[i], -c), c). Grid-stride over the flat gradient."""
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] = min(max(g[i], -c), c)


UPDATES = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam}


def update(name, p, g, slots, scalars):
    """One optimizer update of the device array p in place: ``UPDATES[name]`` over the flat
    arrays p, g and the state arrays ``slots``; ``scalars`` already in p's dtype."""
    launch1d(UPDATES[name], p.size, flat(p), flat(g), *(flat(s) for s in slots), *scalars)


def zeros_like(a):
    """Zeros of a's shape and dtype, on the device (an optimizer's fresh state)."""
    return zeros(a.shape, a.dtype)


def norm_and_count(grads, threshold=math.inf):
    """(‖g‖ over all the device arrays together, how many values have |g| > threshold): the two
    numbers that come back to the host for clipping."""
    if threshold != math.inf and grads:   # compare as the CPU does: in the gradients' dtype
        threshold = float(grads[0].dtype.type(threshold))
    sumsq, over = to_host(sums(grads, square=True, threshold=threshold))
    return math.sqrt(sumsq), int(over)


def scale(g, s):
    """g *= s in place (s in g's dtype)."""
    launch1d(_scale, g.size, flat(g), g.dtype.type(s))


def clip_values(g, c):
    """g = clip(g, -c, c) in place."""
    launch1d(_clip_values, g.size, flat(g), g.dtype.type(c))
