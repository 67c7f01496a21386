"""The micro-kernels of the packed products (``_smallgemm.py``): register-blocked tiles.

Each tile multiplies a few rows of A by one or more packed panels of B (``Bp[p, k, j]``, NR = 32
columns each, K-major) and stores the result into C, ``C = acc`` when beta is 0 or ``C += acc``
when it is 1 (beta is only ever 0 or 1). Its accumulators live in a stack buffer
(``_stack_buf``) that LLVM promotes to registers: 16 zmm of float32 in the 8-row tile, so one
broadcast of A and one FMA per accumulator and k. Which tile runs where, and in what order over
the panels, is ``_smallgemm.py``'s business; the tiles only know their rows and panels.

    _tile8, _tile4              8 or 4 rows x 1 panel (float64 uses the 4-row one: 16 zmm too)
    _row_tile8, _row_tile4      1 row x 8 or 4 panels (a batch of one; enough independent
                                accumulators that it is not bound by the FMA latency)
    _row_tile2                  1 row x 2 panels, even and odd k apart (eight accumulators)
    _two_rows_tile4             2 rows x 4 panels (a batch of two reads W once a step)
    _three_rows_tile2           3 rows x 2 panels (a batch of three)
    _two_rows_tile2             2 rows x 2 panels, even and odd k apart (the two rows a larger
                                batch leaves over)

Each tile spells out its accumulators so that LLVM keeps them in registers; one generic tile
would need compile-time shapes that Numba gives only by generating code.
"""

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import carray


@intrinsic
def _stack_buf(typingctx, n, dtype):
    """A stack buffer of n (compile-time literal) elements of dtype -> pointer."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = n.literal_value
    dt = dtype.dtype

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(dt)
        return cgutils.alloca_once(builder, ty, size=count)
    return types.CPointer(dt)(n, dtype), codegen


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, inline="always")
def _store_row(acc, r, C, i, j0, N, beta):
    """C[i, j0:j0+32] = acc[r] (beta = 0) or += acc[r] (beta = 1); columns past N are padding and
    are dropped. (The row is a slice starting at column j0, so that the index j is non-negative
    and the loop vectorises; beta is only ever 0 or 1.)"""
    nj = min(32, N - j0)
    crow = C[i, j0:j0 + max(nj, 0)]
    if beta == 0:
        for j in range(nj):
            crow[j] = acc[r, j]
    else:
        for j in range(nj):
            crow[j] += acc[r, j]


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, inline="always")
def _zero(acc):
    """Clear a tile's accumulators (rows, 32)."""
    for r in range(acc.shape[0]):
        for j in range(32):
            acc[r, j] = 0


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, inline="always")
def _store(acc, rows, C, i0, j0, N, beta):
    """C[i0:i0+rows, j0:j0+32] = acc (or += acc)."""
    for r in range(rows):
        _store_row(acc, r, C, i0 + r, j0, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _tile8(A, i0, Bp, p, C, beta, N):
    K = A.shape[1]
    acc = carray(_stack_buf(256, C.dtype), (8, 32))
    _zero(acc)
    for k in range(K):
        a0 = A[i0, k]
        a1 = A[i0 + 1, k]
        a2 = A[i0 + 2, k]
        a3 = A[i0 + 3, k]
        a4 = A[i0 + 4, k]
        a5 = A[i0 + 5, k]
        a6 = A[i0 + 6, k]
        a7 = A[i0 + 7, k]
        for j in range(32):
            b = Bp[p, k, j]
            acc[0, j] += a0 * b
            acc[1, j] += a1 * b
            acc[2, j] += a2 * b
            acc[3, j] += a3 * b
            acc[4, j] += a4 * b
            acc[5, j] += a5 * b
            acc[6, j] += a6 * b
            acc[7, j] += a7 * b
    _store(acc, 8, C, i0, p * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _tile4(A, i0, Bp, p, C, beta, N):
    K = A.shape[1]
    acc = carray(_stack_buf(128, C.dtype), (4, 32))
    _zero(acc)
    for k in range(K):
        a0 = A[i0, k]
        a1 = A[i0 + 1, k]
        a2 = A[i0 + 2, k]
        a3 = A[i0 + 3, k]
        for j in range(32):
            b = Bp[p, k, j]
            acc[0, j] += a0 * b
            acc[1, j] += a1 * b
            acc[2, j] += a2 * b
            acc[3, j] += a3 * b
    _store(acc, 4, C, i0, p * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _row_tile8(A, i, Bp, p0, C, beta, N):
    """One row of A times eight panels (256 columns, float32: 16 zmm accumulators). Half as many
    passes over the row as ``_row_tile4``, each streaming eight panels: at H = 128 the LSTM's
    h W_hh^T takes 1.45 us instead of 2.2 (the weights come from L2 at 180 GB/s, not 120)."""
    K = A.shape[1]
    acc = carray(_stack_buf(256, C.dtype), (8, 32))
    _zero(acc)
    for k in range(K):
        a = A[i, k]
        for j in range(32):
            acc[0, j] += a * Bp[p0, k, j]
            acc[1, j] += a * Bp[p0 + 1, k, j]
            acc[2, j] += a * Bp[p0 + 2, k, j]
            acc[3, j] += a * Bp[p0 + 3, k, j]
            acc[4, j] += a * Bp[p0 + 4, k, j]
            acc[5, j] += a * Bp[p0 + 5, k, j]
            acc[6, j] += a * Bp[p0 + 6, k, j]
            acc[7, j] += a * Bp[p0 + 7, k, j]
    for q in range(8):
        _store_row(acc, q, C, i, (p0 + q) * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _row_tile4(A, i, Bp, p0, C, beta, N):
    """One row of A times four panels (128 columns): the vector-matrix product of a batch of one.
    One row times one panel has two accumulators, and each FMA waits for the one before it;
    four panels give eight independent chains, enough to keep both FMA units busy."""
    K = A.shape[1]
    acc = carray(_stack_buf(128, C.dtype), (4, 32))
    _zero(acc)
    for k in range(K):
        a = A[i, k]
        for j in range(32):
            acc[0, j] += a * Bp[p0, k, j]
            acc[1, j] += a * Bp[p0 + 1, k, j]
            acc[2, j] += a * Bp[p0 + 2, k, j]
            acc[3, j] += a * Bp[p0 + 3, k, j]
    for q in range(4):
        _store_row(acc, q, C, i, (p0 + q) * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _row_tile2(A, i, Bp, p0, C, beta, N):
    """One row of A times two panels (64 columns: the last two of a narrow product such as the
    dh = da W_hh of H = 64). Two panels give four chains; even and odd k in separate
    accumulators make eight, as ``_row_tile4`` has, without multiplying padding."""
    K = A.shape[1]
    acc = carray(_stack_buf(128, C.dtype), (4, 32))
    _zero(acc)
    for k in range(0, K - 1, 2):
        a = A[i, k]
        a1 = A[i, k + 1]
        for j in range(32):
            acc[0, j] += a * Bp[p0, k, j]
            acc[1, j] += a * Bp[p0 + 1, k, j]
            acc[2, j] += a1 * Bp[p0, k + 1, j]
            acc[3, j] += a1 * Bp[p0 + 1, k + 1, j]
    if K % 2:
        a = A[i, K - 1]
        for j in range(32):
            acc[0, j] += a * Bp[p0, K - 1, j]
            acc[1, j] += a * Bp[p0 + 1, K - 1, j]
    for j in range(32):
        acc[0, j] += acc[2, j]
        acc[1, j] += acc[3, j]
    for q in range(2):
        _store_row(acc, q, C, i, (p0 + q) * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _two_rows_tile4(A, i, Bp, p0, C, beta, N):
    """Rows i and i + 1 of A times four panels (float32: 16 zmm accumulators, as ``_row_tile8``).
    Two rows share every load of the weights: a batch of two reads W once a step, not twice."""
    K = A.shape[1]
    acc = carray(_stack_buf(256, C.dtype), (8, 32))
    _zero(acc)
    for k in range(K):
        a = A[i, k]
        b = A[i + 1, k]
        for j in range(32):
            w0 = Bp[p0, k, j]
            w1 = Bp[p0 + 1, k, j]
            w2 = Bp[p0 + 2, k, j]
            w3 = Bp[p0 + 3, k, j]
            acc[0, j] += a * w0
            acc[1, j] += a * w1
            acc[2, j] += a * w2
            acc[3, j] += a * w3
            acc[4, j] += b * w0
            acc[5, j] += b * w1
            acc[6, j] += b * w2
            acc[7, j] += b * w3
    for q in range(4):
        _store_row(acc, q, C, i, (p0 + q) * 32, N, beta)
        _store_row(acc, 4 + q, C, i + 1, (p0 + q) * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _three_rows_tile2(A, i, Bp, p0, C, beta, N):
    """Rows i .. i + 2 of A times two panels (float32: 12 zmm accumulators and four registers of
    weights). A batch of three reads W once a step, where a pair and a single row read it twice."""
    K = A.shape[1]
    acc = carray(_stack_buf(192, C.dtype), (6, 32))
    _zero(acc)
    for k in range(K):
        a = A[i, k]
        b = A[i + 1, k]
        c = A[i + 2, k]
        for j in range(32):
            w0 = Bp[p0, k, j]
            w1 = Bp[p0 + 1, k, j]
            acc[0, j] += a * w0
            acc[1, j] += a * w1
            acc[2, j] += b * w0
            acc[3, j] += b * w1
            acc[4, j] += c * w0
            acc[5, j] += c * w1
    for q in range(2):
        for r in range(3):
            _store_row(acc, 2 * r + q, C, i + r, (p0 + q) * 32, N, beta)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _two_rows_tile2(A, i, Bp, p0, C, beta, N):
    """Rows i and i + 1 of A times two panels, even and odd k apart (float32: 16 zmm
    accumulators): the two rows a larger batch leaves over, while its tiles' panels are in cache."""
    K = A.shape[1]
    acc = carray(_stack_buf(256, C.dtype), (8, 32))
    _zero(acc)
    for k in range(0, K - 1, 2):
        a = A[i, k]
        b = A[i + 1, k]
        a1 = A[i, k + 1]
        b1 = A[i + 1, k + 1]
        for j in range(32):
            w0 = Bp[p0, k, j]
            w1 = Bp[p0 + 1, k, j]
            v0 = Bp[p0, k + 1, j]
            v1 = Bp[p0 + 1, k + 1, j]
            acc[0, j] += a * w0
            acc[1, j] += a * w1
            acc[2, j] += b * w0
            acc[3, j] += b * w1
            acc[4, j] += a1 * v0
            acc[5, j] += a1 * v1
            acc[6, j] += b1 * v0
            acc[7, j] += b1 * v1
    if K % 2:
        a = A[i, K - 1]
        b = A[i + 1, K - 1]
        for j in range(32):
            acc[0, j] += a * Bp[p0, K - 1, j]
            acc[1, j] += a * Bp[p0 + 1, K - 1, j]
            acc[2, j] += b * Bp[p0, K - 1, j]
            acc[3, j] += b * Bp[p0 + 1, K - 1, j]
    for r in range(4):
        for j in range(32):
            acc[r, j] += acc[4 + r, j]
    for q in range(2):
        for r in range(2):
            _store_row(acc, 2 * r + q, C, i + r, (p0 + q) * 32, N, beta)
