"""The recurrent products of the sequence kernels: a small-M GEMM with a right-hand side packed once.

Every timestep of a sequence multiplies the same W_hh by a thin matrix (B rows). BLAS repacks
W_hh on every call (4 MB at H = 512) and reaches about half the machine's FMA rate at B = 32.
Here ``op(W_hh)`` is packed once per sequence call into panels of NR = 32 columns stored K-major,

    Bp[p, k, j] = op(W)[k, p * NR + j]        (zero past the last column; the number of
                                               panels rounded up to an even number),

and ``smallgemm`` streams each panel through a register-blocked micro-kernel (the tiles, in
``_tiles.py``): 8 rows of A times 32 columns, 16 AVX-512 accumulators (float32) held in a stack
buffer that LLVM promotes to registers, one broadcast of A and one FMA per accumulator and k
(float64: 4 rows, also 16 accumulators). Rows left over go to 4-row tiles; the one to three
rows left after those are multiplied two panels at a time beside the tiles, while those panels
are in cache (``_three_rows_tile2``, ``_two_rows_tile2``, ``_row_tile2``). A batch below four has
tiles of its own that read the weights once a step: three rows by two panels, two rows by four
(``_two_rows_tile4``), or one row by eight panels at a time in float32 (``_row_tile8``), then
four (``_row_tile4``: eight independent accumulators, so a batch of one is not bound by the FMA
latency) and two for the last pair (``_row_tile2``, even and odd k apart: eight again). On
Zen 5 (1 thread) this runs at about 240 GFLOP/s in float32 and 120 in float64 for
B = 32, H = 128 .. 512, against 100 and 50 for OpenBLAS; at B = 1 a step's vector-matrix
product takes 0.35 us where OpenBLAS's GEMV takes 0.71 (H = 128, RNN), 1.45 against 2.25 us
(the LSTM's dh = da W_hh), and a batch of 2 or 3 is 3-4x faster than OpenBLAS's GEMM. On an
Intel Xeon (Sapphire Rapids class, 1 thread) B = 32 runs at 150-205 GFLOP/s against OpenBLAS's
80-86: with 512-bit vectors, which LLVM does not choose on its own for Intel CPUs
(``_vector_width.py``; with its choice, 85-93). A time loop passes its step number, and every
other pass goes through the panels in the opposite order, so that a W_hh larger than L2 is
partly still there when the next step starts (``smallgemm``).

    use_packed(B, T, nbytes)                whether a sequence should use it (T >= 2, and B >= 2
                                            or the weights are at most 4 MB)
    Wp = pack_weights(W, trans, use)        op(W) packed (an empty array when not use)
    recurrent_gemm(A, W, trans, Wp, use, C, beta, step, one_thread)
                                            C = A op(W) + beta C, packed or BLAS
    weight_grad_gemm(dG, X, dW, use)        dW = dG^T X after the time loop, packed or BLAS
    dense_gemm(A, W, trans, C, beta)        C = A op(W) + beta C over many rows (a dense layer,
                                            the decoder): op(W) packed for this one call

``weight_grad_gemm`` forms a weight gradient (G x I) from the T*B rows of gate gradients dG and
inputs X with the same micro-kernel: K = T*B is cut into a few chunks of about 1200 rows; per
chunk dG^T is copied contiguous, X packed, and the products accumulated into dW. On Zen 5 (1
thread, T*B = 3200) it takes 38 ms where OpenBLAS takes 56 at H = 512 (dW_hh of an LSTM), 2.5
against 3.8 at H = 128.
"""

import numpy as np
from numba import njit, prange

from ._blas import gemm
from ._pool import num_threads
from ._tiles import (_row_tile2, _row_tile4, _row_tile8, _three_rows_tile2, _tile4, _tile8, _two_rows_tile2,
                     _two_rows_tile4)

NR = 32          # columns per packed panel (two zmm of float32)
MAX_PACKED_ROW_BYTES = 4 << 20   # a batch of one packs weights up to this size (use_packed)
MIN_DENSE_ROWS = 16   # a dense product packs W for one call: worth it from a few rows on
PARALLEL_MIN_FLOPS = 2_000_000   # a product splits over threads from this size (2 M N K)
PARALLEL_MIN_COPY = 1 << 16      # weight_grad_gemm copies dG^T on all threads from this many elements


@njit(cache=True, nogil=True)
def pack_b(W, Bp):
    """Bp[p, k, j] = W[k, p*NR + j] (zero padding), W (K, N)."""
    K, N = W.shape
    P = Bp.shape[0]
    for p in range(P):
        for k in range(K):
            for j in range(NR):
                n = p * NR + j
                Bp[p, k, j] = W[k, n] if n < N else 0


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _three_rows_pass(A, i, Bp, C, beta, N, p0, p1, backwards):
    """Rows i .. i + 2 of A times panels p0 .. p1 - 1 (float32), two panels at a time (p1 - p0 is
    even); the opposite order when backwards."""
    pairs = (p1 - p0) // 2
    for q in range(pairs):
        g = pairs - 1 - q if backwards else q
        _three_rows_tile2(A, i, Bp, p0 + 2 * g, C, beta, N)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _two_rows_pass(A, i, Bp, C, beta, N, p0, p1, backwards):
    """Rows i and i + 1 of A times panels p0 .. p1 - 1 (float32), four panels at a time, the last
    two (p1 - p0 is even) a row at a time; the opposite order when backwards."""
    PB = p1 - p0
    groups = PB // 4 + PB % 4 // 2
    for q in range(groups):
        g = groups - 1 - q if backwards else q
        if g < PB // 4:
            _two_rows_tile4(A, i, Bp, p0 + g * 4, C, beta, N)
        else:
            _row_tile2(A, i, Bp, p1 - 2, C, beta, N)
            _row_tile2(A, i + 1, Bp, p1 - 2, C, beta, N)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _row_pass(A, i, Bp, C, beta, N, p0, p1, backwards):
    """One row of A times panels p0 .. p1 - 1: eight at a time (float32), then four, then the last
    two (p1 - p0 is even: the packing pads the panels to an even number with zeros, whose
    columns are not stored); the same groups in the opposite order when backwards."""
    PB = p1 - p0
    P8 = PB - PB % 8 if C.itemsize == 4 else 0
    P4 = PB - PB % 4
    groups = P8 // 8 + (P4 - P8) // 4 + (1 if P4 < PB else 0)
    for q in range(groups):
        g = groups - 1 - q if backwards else q
        if g < P8 // 8:
            _row_tile8(A, i, Bp, p0 + g * 8, C, beta, N)
        elif g < P8 // 8 + (P4 - P8) // 4:
            _row_tile4(A, i, Bp, p0 + P8 + (g - P8 // 8) * 4, C, beta, N)
        else:
            _row_tile2(A, i, Bp, p0 + P4, C, beta, N)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _panel_pairs(A, Bp, C, beta, lo, hi, backwards):
    """Every row of A (four or more) times the pairs of panels lo .. hi - 1 (in the opposite
    order when backwards): per pair, the 8- and 4-row tiles on each panel, then the rows left
    over on the two panels while they are still in cache."""
    M, N = C.shape
    P = (N + NR - 1) // NR   # panels with columns of C in them
    # float32: 8 x 32 tiles (16 zmm accumulators); float64: 4 x 32 (16 zmm, 8 would spill)
    M8 = M - M % 8 if C.itemsize == 4 else 0
    M4 = M - M % 4
    for q in range(lo, hi):
        g = hi - 1 - (q - lo) if backwards else q
        for p in range(2 * g, min(2 * g + 2, P)):
            for i0 in range(0, M8, 8):
                _tile8(A, i0, Bp, p, C, beta, N)
            for i0 in range(M8, M4, 4):
                _tile4(A, i0, Bp, p, C, beta, N)
        if M - M4 == 3 and C.itemsize == 4:
            _three_rows_tile2(A, M4, Bp, 2 * g, C, beta, N)
        elif M - M4 == 2 and C.itemsize == 4:
            _two_rows_tile2(A, M4, Bp, 2 * g, C, beta, N)
        else:
            for i in range(M4, M):
                _row_tile2(A, i, Bp, 2 * g, C, beta, N)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _share(A, Bp, C, beta, step, lo, hi):
    """Every row of A times the pairs of panels lo .. hi - 1: a batch of four or more in one pass
    (``_panel_pairs``); a smaller one with tiles that read the weights once a step: three rows
    together, or two (float32), or row by row."""
    M, N = C.shape
    M4 = M - M % 4
    backwards = step % 2 == 1
    if M4 > 0:
        _panel_pairs(A, Bp, C, beta, lo, hi, backwards)
    elif M == 3 and C.itemsize == 4:
        # (row 0 is passed as M4, which is 0 here: a literal 0 would be a type of its own to Numba
        # and compile the tiles again)
        _three_rows_pass(A, M4, Bp, C, beta, N, 2 * lo, 2 * hi, backwards)
    elif M == 2 and C.itemsize == 4:
        _two_rows_pass(A, M4, Bp, C, beta, N, 2 * lo, 2 * hi, backwards)
    else:
        for i in range(M):
            _row_pass(A, i, Bp, C, beta, N, 2 * lo, 2 * hi, (step * M + i) % 2 == 1)


@njit(cache=True, nogil=True)
def share_rows(n, shares, M):
    """Rows r0 .. r1 - 1 of share n of ``shares``: multiples of eight, the last share to M. (The
    products' row shares here, and a batch's shares of a time loop, ``shares.py``.)"""
    U = M // 8
    r0 = 8 * (n * U // shares)
    r1 = M if n == shares - 1 else 8 * ((n + 1) * U // shares)
    return r0, r1


@njit(cache=True, nogil=True, parallel=True)
def _shares_on_threads(A, Bp, C, beta, step, threads, by_rows):
    """``_share`` on ``threads`` threads, each with a contiguous share of the pairs of panels, the
    same share on every call: each core's cache keeps its part of W from one step to the next
    (at H = 512 with two cores, half of a 4 MB W_hh is one core's 2 MB of L2). The shares start
    at multiples of four panels, and the last one takes the rest: a row's last two panels, when
    the panels are not a multiple of four, go to the tile that sums even and odd k apart on one
    thread, and must on several too.

    ``by_rows``: each thread has a contiguous share of the rows of A and C instead, and all the
    panels, for products with too few panels to split (N <= 128: dh_{t-1} = da W_hh at H = 128,
    the weight gradients dW = dG^T X of 128 inputs, a decoder over 65 characters). Every thread
    reads all of W, small here. These shares start at multiples of eight rows and the last one
    takes the rest, so each has the 8- and 4-row tiles and rows left over that the whole product
    has on one thread.

    Either way every tile is computed as on one thread, so the results are the same to the bit.
    (One parallel function for both: each costs a second or more of compiling.)"""
    G = Bp.shape[0] // 2
    U = G // 2                        # units of four panels
    for t in prange(threads):
        n = np.int64(t)
        if by_rows:
            r0, r1 = share_rows(n, threads, A.shape[0])
            _share(A[r0:r1], Bp, C[r0:r1], beta, step, np.int64(0), G)
        else:
            hi = G if n == threads - 1 else 2 * ((n + 1) * U // threads)
            _share(A, Bp, C, beta, step, 2 * (n * U // threads), hi)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def smallgemm(A, Bp, C, beta, step, threads):
    """C = A @ B + beta C, beta 0 or 1, B given packed as Bp (from pack_b). A (M, K), C (M, N),
    on at most ``threads`` threads (``num_threads()``: as many as Numba has).

    A time loop calls this once per step with the same Bp, ``step`` its step number. Each call
    makes one or more passes over the panels, and every other pass goes through them in the
    opposite order: when Bp is larger than L2, the panels a pass read last are still there when
    the next pass starts with them (always the same order would find none, as a stream through a
    cache evicts what it needs next). Measured on an Intel Xeon (2 MB L2, float32, 100 steps):
    B = 1 with a 3-4 MB W_hh, 100 -> 58 and 145 -> 87-100 us a step; B = 32, 152 -> 162-170
    GFLOP/s. Each tile's sums are the same either way, so the results are too.

    A batch of four or more makes one pass, two panels at a time: the 8- and 4-row tiles, then
    the rows left over while those two panels are still in cache (a second pass for them would
    read all of W again: B = 5-7 at H = 512 took 1.6-1.8x as long as B = 8). Where W fits in L2
    a second pass costs little, and its two-row tile has twice the accumulators; timed against
    it in one process (25 alternations, N = 4K), the pass beside the tiles took 0.92-1.05x its
    time for B = 6, 7, 10, 14 at K = 128-320, and 0.70-0.89x from K = 384 on.

    With more than one thread (``numba.set_num_threads``, ``--threads``), a product of at least
    PARALLEL_MIN_FLOPS is split over the threads (``_shares_on_threads``): its panels, four at a
    time, or where there are fewer fours of panels than eights of rows, its rows, eight at a
    time. The results are the same to the bit at any thread count."""
    M, N = C.shape
    G = Bp.shape[0] // 2               # pairs of panels (their number is even)
    if threads > 1 and 2 * M * N * A.shape[1] >= PARALLEL_MIN_FLOPS:
        by_panels = min(threads, G // 2)
        by_rows = min(threads, M // 8)
        rows = by_rows > by_panels
        split = by_rows if rows else by_panels
        if split > 1:
            _shares_on_threads(A, Bp, C, beta, step, split, rows)
            return
    # (np.int64(0): a literal 0 would be a type of its own and compile the tiles again)
    _share(A, Bp, C, beta, step, np.int64(0), G)


@njit(cache=True, nogil=True)
def use_packed(B, T, nbytes=0):
    """Whether a sequence of T steps with batch B should pack its weights (nbytes of them) once and
    use ``smallgemm``: when T >= 2 (to pay the packing back), for any batch of two or more, and for
    a batch of one while the weights are at most 4 MB (MAX_PACKED_ROW_BYTES).

    Measured per step on an Intel Xeon (2 MB L2, float32, 1 thread) against OpenBLAS: B = 1 with
    3-4 MB of weights 50-104 us against 94-142 (the panels' alternating order keeps part of them
    in L2, see ``smallgemm``), with 12-16 MB from 10% faster to 1% slower (both stream from L3:
    BLAS keeps those); B = 2 and 3, 1.15-3.2x faster at every size up to 16 MB, before the
    two-row tile (``_two_rows_tile4``) halved a pair's reads of the weights."""
    return T >= 2 and (B >= 2 or nbytes <= MAX_PACKED_ROW_BYTES)


@njit(cache=True, nogil=True)
def _panels(N):
    """Panels of NR columns for N columns, rounded up to an even number (``_row_tile2``)."""
    return ((N + NR - 1) // NR + 1) // 2 * 2


@njit(cache=True, nogil=True)
def pack_weights(W, trans, use):
    """op(W) packed for ``smallgemm`` (op(W) = W.T if trans), or an empty array when not use."""
    if not use:
        return np.empty((0, 0, NR), W.dtype)
    N = W.shape[0] if trans else W.shape[1]
    K = W.shape[1] if trans else W.shape[0]
    Bp = np.empty((_panels(N), K, NR), W.dtype)
    pack_b(W.T if trans else W, Bp)
    return Bp


@njit(cache=True, nogil=True)
def recurrent_gemm(A, W, trans, Wp, use, C, beta, step, one_thread):
    """C = A op(W) + beta C, through the packed Wp when use, else through BLAS. ``step``: the
    step of the time loop calling (``smallgemm`` alternates its order over the weights by it);
    ``one_thread``: on the calling thread only (a thread running its share of a batch), else on
    all of Numba's.

    Callers pass ``step`` as a run-time integer, never a literal or the default: Numba compiles a
    function again for each literal value an argument takes (and for an omitted one), and
    ``smallgemm`` with its tiles is seconds of compiling."""
    if use:
        smallgemm(A, Wp, C, beta, step, 1 if one_thread else num_threads())
    else:
        gemm(A, False, W, trans, C, 1.0, beta)


@njit(cache=True, nogil=True)
def dense_gemm(A, W, trans, C, beta):
    """C = A op(W) + beta C for the products of a dense layer over all T*B rows at once (the input
    part of a layer, the decoder and their gradients): op(W) is packed for this call (a small cost
    next to M = T*B rows of products) when A has at least MIN_DENSE_ROWS rows, else BLAS."""
    use = A.shape[0] >= MIN_DENSE_ROWS
    # (np.bool_(False): a literal False would be a type of its own and compile recurrent_gemm again)
    recurrent_gemm(A, W, trans, pack_weights(W, trans, use), use, C, beta, np.int64(0), np.bool_(False))


K_CHUNK = 1200   # rows of dG per chunk of weight_grad_gemm (fewer passes over dW against cache reuse)


@njit(cache=True, nogil=True)
def _odd_lines(n, itemsize):
    """n rounded up to an odd number of 64-byte cache lines' worth of elements.

    A row length for a matrix written a column at a time: with rows 4 KB apart (1024 float32,
    as a chunk of 2048 rows split in two has) every element of a column falls in the same set of
    L1 and the writes evict each other; on an Intel Xeon, writing dG^T for T*B = 2048 took 2.6 ms
    a chunk against 0.32 with 1040 elements a row. With an odd number of lines, a column's
    elements go round all the sets."""
    per_line = 64 // itemsize
    lines = (n + per_line - 1) // per_line
    return (lines + 1 - lines % 2) * per_line


@njit(cache=True, nogil=True)
def _transpose(dG, k0, kc, At, i0, i1):
    """At[i0:i1, :kc] = dG[k0:k0 + kc, i0:i1].T"""
    for k in range(kc):
        row = dG[k0 + k]
        for i in range(i0, i1):
            At[i, k] = row[i]


@njit(cache=True, nogil=True, parallel=True)
def _transpose_on_threads(dG, k0, kc, At, threads):
    """``_transpose`` of all of At's rows, each thread writing a contiguous share of them."""
    G = dG.shape[1]
    for t in prange(threads):
        _transpose(dG, k0, kc, At, t * G // threads, (t + 1) * G // threads)


@njit(cache=True, nogil=True)
def weight_grad_gemm(dG, X, dW, use):
    """dW = dG^T X, dG (N, G), X (N, I) with contiguous rows, dW (G, I): through ``smallgemm`` in
    chunks of about K_CHUNK rows when use, else one BLAS GEMM.

    Per chunk of kc rows, dG^T is copied (on all threads) into At, whose rows have
    ``_odd_lines(kc)`` elements, and X is packed with as many rows; the rows past kc are zeros
    on both sides, and adding 0 * 0 leaves every sum as it was. The chunks reuse one At and one
    packed X (a fresh 8 MB At per chunk cost its page faults: 5 ms of 25 at H = 512, 2 threads).
    """
    N, G = dG.shape
    I = X.shape[1]
    if not use or N == 0:
        gemm(dG, True, X, False, dW, 1.0, 0.0)
        return
    chunks = (N + K_CHUNK - 1) // K_CHUNK
    Kc = (N + chunks - 1) // chunks
    kp = _odd_lines(Kc, dG.itemsize)
    At = np.empty((G, kp), dG.dtype)          # a chunk of dG^T, rows contiguous
    Xp = np.empty((_panels(I), kp, NR), X.dtype)
    threads = max(1, min(num_threads(), G // 8))
    for k0 in range(0, N, Kc):
        kc = min(Kc, N - k0)
        if _odd_lines(kc, dG.itemsize) != kp:   # a last chunk shorter by a line or more
            kp = _odd_lines(kc, dG.itemsize)
            At = np.empty((G, kp), dG.dtype)
            Xp = np.empty((_panels(I), kp, NR), X.dtype)
        pack_b(X[k0:k0 + kc], Xp)
        Xp[:, kc:, :] = 0
        if threads > 1 and G * kc >= PARALLEL_MIN_COPY:
            _transpose_on_threads(dG, k0, kc, At, threads)
        else:
            _transpose(dG, k0, kc, At, np.int64(0), G)
        At[:, kc:] = 0
        smallgemm(At, Xp, dW, 0.0 if k0 == 0 else 1.0, k0 // Kc, num_threads())   # chunks alternate as steps do
