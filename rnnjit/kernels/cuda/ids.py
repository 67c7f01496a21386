"""Thread and block indices as the compiler should see them: never negative.

Numba indexes arrays the Python way, so ``a[i]`` with a signed ``i`` first computes
``i + len(a) if i < 0 else i``. Inside a kernel's innermost loop those few instructions per
load cost as much as the loads: the GEMM's inner loop (128 x 128 tiles) ran 64 FMAs in 192
instructions of sm_90 machine code, and in 104 without them, on 122 registers instead of 155
(counted as ``benchmarks/sass_mix.py`` counts). ``cuda.threadIdx.x`` and the
other special registers reach Python as signed integers, so the compiler cannot prove that an
index built from them is not negative. ``nonneg`` zero-extends a 32-bit id to 64 bits: the same
value, a type that still mixes with Python's ints, and a sign bit the compiler knows is 0, so
every index built from it by additions and multiplications skips the wrap-around.
"""

from numba import cuda, int64, uint32


@cuda.jit(device=True, inline="always")
def nonneg(v):
    """``v`` (a thread or block id, a count) as an int64 the compiler knows is >= 0."""
    return int64(uint32(v))
