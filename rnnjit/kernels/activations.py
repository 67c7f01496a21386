"""Pointwise nonlinearities shared by the cells, as Numba functions.

They work on scalars and on arrays alike, so a step kernel can write ``sigmoid(a)`` over a
whole gate block and a sequence kernel can call ``sigmoid(v)`` on one element inside its
fused loop.

    sigmoid(x) = 1 / (1 + exp(-x))          sigmoid'(x) = s (1 - s)
    tanh(x)                                 tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                  relu'(x)    = 1 if x > 0 else 0
"""

import numpy as np
from numba import njit, types
from numba.extending import overload


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def relu(x):
    return np.maximum(x, 0)


# ---- the sequence kernels' versions: exact in float64, a rational approximation in float32 ----
#
# np.tanh and np.exp compile to calls into libm, which LLVM cannot vectorise in float32 (without
# Intel's SVML). The float32 versions below are pure arithmetic (clamp, two polynomials, one
# division), so a fused loop over a row of gates becomes SIMD code. The rational function is
# Eigen's fast float32 tanh (a [13/6] minimax fit on [-7.9, 7.9]); its error is below 4e-7, a few
# float32 ulps, far inside the 1e-4 parity tolerance. sigmoid(x) = (1 + tanh(x / 2)) / 2.
# The step kernels (the teaching path) keep the exact functions above.

_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1, _A3, _A5, _A7 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05), _F(5.12229709037114e-08)
_A9, _A11, _A13 = _F(-8.60467152213735e-11), _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _F(4.89352518554385e-03), _F(2.26843463243900e-03), _F(1.18534705686654e-04), _F(1.19825839466702e-06)
_HALF = _F(0.5)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def tanh_f32(x):
    """tanh of a float32 scalar as a rational function (max error < 4e-7)."""
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


def fast_tanh(x):
    """tanh(x) for one scalar: np.tanh in float64, ``tanh_f32`` in float32 (chosen at compile time)."""
    return np.tanh(x)


def fast_sigmoid(x):
    """sigmoid(x) for one scalar: exact in float64, (1 + tanh_f32(x/2)) / 2 in float32."""
    return 1 / (1 + np.exp(-x))


@overload(fast_tanh, inline="always", jit_options={"error_model": "numpy"})
def _ol_fast_tanh(x):
    if x == types.float32:
        return lambda x: tanh_f32(x)
    return lambda x: np.tanh(x)


@overload(fast_sigmoid, inline="always", jit_options={"error_model": "numpy"})
def _ol_fast_sigmoid(x):
    if x == types.float32:
        return lambda x: _HALF * tanh_f32(_HALF * x) + _HALF
    return lambda x: 1 / (1 + np.exp(-x))
