"""Pointwise nonlinearities shared by the cells, as Numba functions.

They work on scalars and on arrays alike, so a step kernel can write ``sigmoid(a)`` over a
whole gate block and a sequence kernel can call ``sigmoid(v)`` on one element inside its
fused loop.

    sigmoid(x) = 1 / (1 + exp(-x))          sigmoid'(x) = s (1 - s)
    tanh(x)                                 tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                  relu'(x)    = 1 if x > 0 else 0
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def relu(x):
    return np.maximum(x, 0)


# ---- the sequence kernels' versions: full precision in float64, a rational approximation in float32 ----
#
# np.tanh and np.exp compile to calls into libm, which LLVM cannot vectorise (without Intel's
# SVML): a fused loop that calls them runs one element at a time. The float32 versions below are pure arithmetic (clamp, two polynomials, one
# division), so a fused loop over a row of gates becomes SIMD code. The rational function is
# Eigen's fast float32 tanh (a [13/6] minimax fit on [-7.9, 7.9]); its error is below 4e-7, a few
# float32 ulps, far inside the 1e-4 parity tolerance. sigmoid(x) = (1 + tanh(x / 2)) / 2.
# The step kernels (the teaching path) keep the exact functions above.
#
# float64 keeps full precision but gets the same treatment: exp_f64 and tanh_f64 are Cephes'
# double-precision exp and tanh written as arithmetic (range reduction, a rational function, and
# 2^n built from its bits), within 2 ulp of libm's (see tests/test_kernels.py), and vectorise.

_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1, _A3, _A5, _A7 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05), _F(5.12229709037114e-08)
_A9, _A11, _A13 = _F(-8.60467152213735e-11), _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _F(4.89352518554385e-03), _F(2.26843463243900e-03), _F(1.18534705686654e-04), _F(1.19825839466702e-06)
_HALF, _ONE = _F(0.5), _F(1)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tanh_f32_pq(x):
    """The numerator and denominator of ``tanh_f32``: tanh(x) ~ p / q, q in [0.0049, 0.91]."""
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p, q


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def tanh_f32(x):
    """tanh of a float32 scalar as a rational function (max error < 4e-7)."""
    p, q = _tanh_f32_pq(x)
    return p / q


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tanh4_f32(x1, x2, x3, x4):
    """Four ``tanh_f32`` with one division: 1/(q1 q2 q3 q4) once, then p1/q1 = p1 q2 q3 q4 / (q1 q2 q3 q4)
    and so on. Divisions are the slowest step of the fused gate loops (a SIMD division takes
    several times an FMA's slot); the products of four q's stay in [5e-10, 0.7], far from
    float32's limits, and cost a few ulp: the error stays below 7e-7."""
    p1, q1 = _tanh_f32_pq(x1)
    p2, q2 = _tanh_f32_pq(x2)
    p3, q3 = _tanh_f32_pq(x3)
    p4, q4 = _tanh_f32_pq(x4)
    q12 = q1 * q2
    q34 = q3 * q4
    inv = _ONE / (q12 * q34)   # a literal 1 would make this float64
    return p1 * q2 * q34 * inv, p2 * q1 * q34 * inv, p3 * q4 * q12 * inv, p4 * q3 * q12 * inv


def fast_tanh(x):
    """tanh(x) for one scalar: ``tanh_f64`` in float64, ``tanh_f32`` in float32 (chosen at compile time)."""
    return np.tanh(x)


def fast_sigmoid(x):
    """sigmoid(x) for one scalar: 1 / (1 + exp_f64(-x)) in float64, (1 + tanh_f32(x/2)) / 2 in float32."""
    return 1 / (1 + np.exp(-x))


def lstm_gate_activations(ai, af, ag, ao):
    """An LSTM's four gate activations at once: sigmoid(ai), sigmoid(af), tanh(ag), sigmoid(ao).
    float64: ``fast_sigmoid`` and ``fast_tanh``; float32: the four rational functions share one
    division (``_tanh4_f32``, with sigmoid(x) = (1 + tanh(x/2)) / 2)."""
    return fast_sigmoid(ai), fast_sigmoid(af), fast_tanh(ag), fast_sigmoid(ao)


def fast_exp(x):
    """exp(x) for one scalar, full precision and vectorising: ``exp_f64`` (float32 goes through float64)."""
    return np.exp(x)


@overload(fast_exp, inline="always", jit_options={"error_model": "numpy"})
def _ol_fast_exp(x):
    if x == types.float32:
        return lambda x: np.float32(exp_f64(np.float64(x)))
    return lambda x: exp_f64(x)


@overload(fast_tanh, inline="always", jit_options={"error_model": "numpy"})
def _ol_fast_tanh(x):
    if x == types.float32:
        return lambda x: tanh_f32(x)
    return lambda x: tanh_f64(x)


@overload(fast_sigmoid, inline="always", jit_options={"error_model": "numpy"})
def _ol_fast_sigmoid(x):
    if x == types.float32:
        return lambda x: _HALF * tanh_f32(_HALF * x) + _HALF
    return lambda x: 1 / (1 + exp_f64(-x))


@overload(lstm_gate_activations, inline="always", jit_options={"error_model": "numpy"})
def _ol_lstm_gate_activations(ai, af, ag, ao):
    if ai == types.float32:
        def f32(ai, af, ag, ao):
            ti, tf, g, to = _tanh4_f32(_HALF * ai, _HALF * af, ag, _HALF * ao)
            return _HALF * ti + _HALF, _HALF * tf + _HALF, g, _HALF * to + _HALF
        return f32
    return lambda ai, af, ag, ao: (1 / (1 + exp_f64(-ai)), 1 / (1 + exp_f64(-af)), tanh_f64(ag),
                                   1 / (1 + exp_f64(-ao)))


# ---- float64: Cephes' exp and tanh as straight-line arithmetic ---------------------------------

@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a reinterpretation, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634073599
_LN2_HI, _LN2_LO = 6.93145751953125e-1, 1.42860682030941723212e-6   # ln 2 = _LN2_HI + _LN2_LO
_EP0, _EP1, _EP2 = 1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1
_EQ0, _EQ1, _EQ2, _EQ3 = 3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1, 2.0
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


@njit(cache=True, nogil=True, error_model="numpy")
def exp_f64(x):
    """exp(x) in float64 (Cephes): x = n ln2 + r with |r| <= ln2 / 2, exp(r) = 1 + 2 r P / (Q - r P)
    with P, Q polynomials in r^2, times 2^n. x is clamped to [-708, 708] (no overflow, no
    subnormals: exp(-708) ~ 3e-308 stands for 0)."""
    x = min(max(x, -708.0), 708.0)
    n = np.floor(_LOG2E * x + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    r2 = r * r
    p = r * ((_EP0 * r2 + _EP1) * r2 + _EP2)
    q = ((_EQ0 * r2 + _EQ1) * r2 + _EQ2) * r2 + _EQ3
    e = 1.0 + 2.0 * (p / (q - p))
    return e * _f64_from_bits((np.int64(n) + 1023) << 52)


@njit(cache=True, nogil=True, error_model="numpy")
def tanh_f64(x):
    """tanh(x) in float64 (Cephes): for |x| < 0.625 x + x^3 P(x^2) / Q(x^2); beyond it
    1 - 2 / (exp(2|x|) + 1) with the sign of x. Both are computed and one is picked, so a loop of
    it has no branch."""
    ax = min(abs(x), 20.0)   # tanh(20) is 1 to double precision
    z = x * x
    small = x + x * z * (((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2))
    big = 1.0 - 2.0 / (exp_f64(2.0 * ax) + 1.0)
    big = big if x >= 0 else -big
    return small if ax < 0.625 else big
