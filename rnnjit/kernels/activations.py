"""Pointwise nonlinearities shared by the cells, as Numba functions.

They work on scalars and on arrays alike, so a step kernel can write ``sigmoid(a)`` over a
whole gate block and a sequence kernel can call ``sigmoid(v)`` on one element inside its
fused loop.

    sigmoid(x) = 1 / (1 + exp(-x))          sigmoid'(x) = s (1 - s)
    tanh(x)                                 tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                  relu'(x)    = 1 if x > 0 else 0
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def relu(x):
    return np.maximum(x, 0)
