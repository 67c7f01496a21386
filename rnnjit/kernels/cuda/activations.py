"""Pointwise nonlinearities as CUDA device functions (twin of ``rnnjit/kernels/activations.py``).

    sigmoid(x) = 1 / (1 + exp(-x))          sigmoid'(x) = s (1 - s)
    tanh(x)    = math.tanh                  tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                  relu'(x)    = 1 if x > 0 else 0

Written as the CPU's exact versions (``activations.sigmoid``, ``np.tanh``), so the arithmetic
types match too: ``exp`` and ``tanh`` run in the input's precision, and ``1 + float32`` is
promoted to float64 (by Numba, on the CPU and on the GPU alike). The gate math is a tiny part of
the work (the matrix products dominate), so this costs nothing measurable. (The CPU sequence
kernels use a vectorisable rational tanh in float32, ``activations.fast_tanh``, error < 4e-7;
both paths agree far inside the 1e-4 parity tolerance.)
"""

import math

from numba import cuda


@cuda.jit(device=True, inline="always")
def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@cuda.jit(device=True, inline="always")
def relu(x):
    return max(x, 0)
