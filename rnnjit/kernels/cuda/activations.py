"""Pointwise nonlinearities as CUDA device functions (twin of ``rnnjit/kernels/activations.py``).

    sigmoid(x) = 1 / (1 + exp(-x))          sigmoid'(x) = s (1 - s)
    tanh(x)    = math.tanh                  tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                  relu'(x)    = 1 if x > 0 else 0

Written exactly as the CPU versions, so the arithmetic types match too: ``exp`` runs in the
input's precision and the rest in float64 (Numba promotes ``1 + float32`` to float64, on the CPU
and on the GPU alike). The gate math is a tiny part of the work (the matrix products dominate),
so the float64 here costs nothing measurable and keeps the two paths within rounding.
"""

import math

from numba import cuda


@cuda.jit(device=True, inline="always")
def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@cuda.jit(device=True, inline="always")
def relu(x):
    return max(x, 0)
