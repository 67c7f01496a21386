"""Matrix products for the sequence kernels: numpy's own OpenBLAS, called from inside ``@njit``.

``np.dot`` inside a Numba kernel goes through SciPy's BLAS. NumPy ships its own OpenBLAS
(``numpy.libs/libscipy_openblas64_*.so`` in the Linux wheels), which is often a newer build that
picks faster kernels for the CPU (AVX-512 where SciPy's falls back to AVX2) and costs less per
call. This module finds that library, registers its ``cblas_{s,d}gemm`` and ``cblas_{s,d}gemv``
with LLVM under fixed names (``rnnjit_cblas_sgemm`` ...), and declares them as Numba external
functions, so compiled kernels call them by name: the on-disk cache stays valid across processes
(an address baked into the code would not be).

    gemm(A, ta, B, tb, C, alpha, beta)     C = alpha op(A) op(B) + beta C

``A``, ``B`` and ``C`` are 2-D arrays; when their rows are contiguous (row views of bigger buffers
are fine: the leading dimension is read from the strides) the call goes straight to BLAS, otherwise
A and B are copied first (C's rows must be contiguous). A product with one row in ``C`` is a
matrix-vector product and goes to GEMV, which is several times faster than a GEMM of one row.

When the library is not there (another NumPy build, another platform), ``HAVE_OPENBLAS`` is
False and the same functions fall back to ``np.dot``: slower, same results. Import this module
before any kernel that uses it is loaded from the cache (the kernel modules do). HAVE_OPENBLAS is
frozen into cached code: after swapping NumPy for a build without this library, delete
``rnnjit/kernels/__pycache__/*.nbi *.nbc``.
"""

import ctypes
import glob
import os

import numpy as np
from llvmlite import binding as _llvm
from numba import njit, types
from numba.extending import overload

# (library glob relative to numpy's package directory, symbol prefix, symbol suffix). Only ILP64
# builds (64-bit integers) are used, so there is one calling convention to declare.
_CANDIDATES = (
    (os.path.join("..", "numpy.libs", "libscipy_openblas64_*"), "scipy_", "64_"),
    (os.path.join(".dylibs", "libscipy_openblas64_*"), "scipy_", "64_"),
    (os.path.join("..", "numpy.libs", "libopenblas64_*"), "", "64_"),
    (os.path.join(".dylibs", "libopenblas64_*"), "", "64_"),
)
_NAMES = ("cblas_sgemm", "cblas_dgemm", "cblas_sgemv", "cblas_dgemv")


def _find_openblas():
    """-> (ctypes library, symbol prefix, suffix) of numpy's ILP64 OpenBLAS, or None."""
    base = os.path.dirname(np.__file__)
    for pattern, prefix, suffix in _CANDIDATES:
        for path in sorted(glob.glob(os.path.join(base, pattern))):
            try:
                lib = ctypes.CDLL(path)
                for name in _NAMES:
                    getattr(lib, prefix + name + suffix)
            except (OSError, AttributeError):
                continue
            return lib, prefix, suffix
    return None


_found = _find_openblas()
HAVE_OPENBLAS = _found is not None
OPENBLAS_PATH = _found[0]._name if _found else None
if _found:
    _lib, _prefix, _suffix = _found
    for _name in _NAMES:
        _addr = ctypes.cast(getattr(_lib, _prefix + _name + _suffix), ctypes.c_void_p).value
        _llvm.add_symbol("rnnjit_" + _name, _addr)

_i32, _i64, _p = types.int32, types.int64, types.voidptr
_gemm_sig = lambda f: types.void(_i32, _i32, _i32, _i64, _i64, _i64, f, _p, _i64, _p, _i64, f, _p, _i64)
_gemv_sig = lambda f: types.void(_i32, _i32, _i64, _i64, f, _p, _i64, _p, _i64, f, _p, _i64)
_sgemm = types.ExternalFunction("rnnjit_cblas_sgemm", _gemm_sig(types.float32))
_dgemm = types.ExternalFunction("rnnjit_cblas_dgemm", _gemm_sig(types.float64))
_sgemv = types.ExternalFunction("rnnjit_cblas_sgemv", _gemv_sig(types.float32))
_dgemv = types.ExternalFunction("rnnjit_cblas_dgemv", _gemv_sig(types.float64))

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _xgemm(C, t_a, t_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc):
    """cblas_?gemm for the dtype of C (chosen when the caller is compiled)."""


def _xgemv(C, trans, rows, cols, alpha, A, lda, x, incx, beta, incy):
    """cblas_?gemv for the dtype of C, y = C[0]."""


@overload(_xgemm)
def _ol_xgemm(C, t_a, t_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc):
    f, T = (_sgemm, np.float32) if C.dtype == types.float32 else (_dgemm, np.float64)

    def impl(C, t_a, t_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc):
        f(_ROW_MAJOR, t_a, t_b, M, N, K, T(alpha), A.ctypes, lda, B.ctypes, ldb, T(beta), C.ctypes, ldc)
    return impl


@overload(_xgemv)
def _ol_xgemv(C, trans, rows, cols, alpha, A, lda, x, incx, beta, incy):
    f, T = (_sgemv, np.float32) if C.dtype == types.float32 else (_dgemv, np.float64)

    def impl(C, trans, rows, cols, alpha, A, lda, x, incx, beta, incy):
        f(_ROW_MAJOR, trans, rows, cols, T(alpha), A.ctypes, lda, x.ctypes, incx, T(beta), C.ctypes, incy)
    return impl


def set_num_threads(n: int) -> bool:
    """Set the thread count of numpy's OpenBLAS (the one the kernels call); False if not found."""
    if not _found:
        return False
    f = getattr(_lib, _prefix + "openblas_set_num_threads" + _suffix, None)
    if f is None:
        return False
    f.argtypes = [ctypes.c_int]
    f(int(n))
    return True


def get_num_threads() -> int | None:
    if not _found:
        return None
    f = getattr(_lib, _prefix + "openblas_get_num_threads" + _suffix, None)
    return None if f is None else int(f())


@njit(cache=True, nogil=True)
def _ld(A):
    return A.strides[0] // A.itemsize if A.shape[0] > 1 else max(A.shape[1], 1)


@njit(cache=True, nogil=True)
def _rows_ok(A):
    return A.shape[1] <= 1 or A.strides[1] == A.itemsize


@njit(cache=True, nogil=True)
def gemm(A, ta, B, tb, C, alpha, beta):
    """C = alpha op(A) op(B) + beta C, op(X) = X.T if tX else X. Rows of C contiguous."""
    if C.shape[0] == 0 or C.shape[1] == 0:
        return
    if HAVE_OPENBLAS:   # frozen into the compiled code: only one of the two paths is compiled
        _gemm_openblas(A, ta, B, tb, C, alpha, beta)
    else:
        _gemm_numpy(A, ta, B, tb, C, alpha, beta)


@njit(cache=True, nogil=True)
def _gemm_openblas(A, ta, B, tb, C, alpha, beta):
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    if not _rows_ok(C):
        raise ValueError("gemm: the rows of C must be contiguous")
    if not _rows_ok(A):
        A = np.ascontiguousarray(A)
    if not _rows_ok(B):
        B = np.ascontiguousarray(B)
    if M == 1:
        # C[0] = alpha op(B)^T a + beta C[0], a = the single row (or column) of op(A)
        inca = _ld(A) if ta else 1
        if tb:  # B is (N, K): y = B a
            trans, rows, cols = _NO_TRANS, N, K
        else:   # B is (K, N): y = B^T a
            trans, rows, cols = _TRANS, K, N
        _xgemv(C, trans, rows, cols, alpha, B, _ld(B), A, inca, beta, 1)
        return
    t_a = _TRANS if ta else _NO_TRANS
    t_b = _TRANS if tb else _NO_TRANS
    _xgemm(C, t_a, t_b, M, N, K, alpha, A, _ld(A), B, _ld(B), beta, _ld(C))


@njit(cache=True, nogil=True)
def _gemm_numpy(A, ta, B, tb, C, alpha, beta):
    """Without numpy's OpenBLAS: np.dot (SciPy's BLAS) on contiguous copies."""
    R = np.dot(np.ascontiguousarray(A.T if ta else A), np.ascontiguousarray(B.T if tb else B))
    if beta == 0:
        C[:] = alpha * R
    else:
        C[:] = alpha * R + beta * C


@njit(cache=True, nogil=True, fastmath=True)
def sum_squares_of_sum(X, Y):
    """Σ (X + Y)², accumulated in float64 (a reduction LLVM may reorder, so it vectorises)."""
    X = X.reshape(-1)
    Y = Y.reshape(-1)
    s = 0.0
    for k in range(X.shape[0]):
        v = np.float64(X[k] + Y[k])
        s += v * v
    return s


@njit(cache=True, nogil=True)
def column_sums(X):
    """X (N, M) -> the sum of its rows (M,), one vectorised pass per row."""
    out = np.zeros(X.shape[1], X.dtype)
    for n in range(X.shape[0]):
        row = X[n]
        for m in range(X.shape[1]):
            out[m] += row[m]
    return out
