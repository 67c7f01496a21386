"""The big matrix products of the sequence kernels, as plain tiled CUDA kernels (no cuBLAS).

Every cell uses the same four products, each over all timesteps at once (T*B rows):

    forward   X W_ih^T       (T*B, I) x (I, G*H)     the input projections of every step
    backward  dA W_ih        (T*B, G*H) x (G*H, I)   dx
              dA^T X         (G*H, T*B) x (T*B, I)   dW_ih
              dA^T H_prev    (G*H, T*B) x (T*B, H)   dW_hh

so one kernel computes ``C = op(A) @ op(B)`` with ``op`` the identity or the transpose.

How the work is split (the classic shared-memory SGEMM):

* C is cut into BM x BN tiles, one block per tile (``blockIdx.y`` rows, ``blockIdx.x`` columns).
* The block walks the k axis BK at a time: its threads copy a BM x BK slab of op(A) and a
  BK x BN slab of op(B) into shared memory (each thread a few elements, neighbouring threads
  reading neighbouring addresses whichever way the matrix is stored), ``syncthreads``, then
  every thread accumulates a TM x TN patch of C in registers from the slabs, ``syncthreads``.
  Thread (tx, ty) owns rows ``ty + i*TY`` and columns ``tx + j*TX`` of the tile, so the
  threads of a warp read shared memory without bank conflicts and write C coalesced.
* When C has few tiles and K is long (dW_hh for a small H and a large batch: a (4H, H)
  result summed over T*B rows) a third grid axis splits K (``blockIdx.z``): each split writes
  its partial C to a workspace and ``sum_first_axis`` adds them up (deterministic, no atomics).

Also here: ``transpose`` (W_hh^T for the forward recurrence, read coalesced) and
``column_sums`` (the bias gradients: the sum of the gate gradients over all T*B rows).
"""

import functools
import os

from numba import cuda

from .launch import simulating, sm_count

# Tile configurations (BM, BN, BK, TM, TN); threads per block = (BN // TN) * (BM // TM).
TILE_64 = (64, 64, 16, 4, 4)      # 256 threads, 4x4 outputs each
TILE_128 = (128, 128, 8, 8, 8)    # 256 threads, 8x8 outputs each: fewer shared loads per FMA
TILE_SIM = (8, 8, 4, 2, 2)        # 16 threads: the simulator runs each thread as a Python thread

SETTINGS = {
    "tile": None,       # force a tile configuration; None: choose per product
    "splits": None,     # force a split-K factor; None: choose per product
    # gemm_kernel's PREFETCH: on an H200, 2-25% faster on an LSTM layer's products, the same sums
    # (cuda_check.py --gemm); RNNJIT_GEMM_PREFETCH=0 for the slab loads after the products
    "prefetch": os.environ.get("RNNJIT_GEMM_PREFETCH", "1") == "1",
}


@functools.cache
def gemm_kernel(BM, BN, BK, TM, TN, PREFETCH=False):
    """The tiled GEMM for one tile configuration (constants are baked into the kernel). With
    ``PREFETCH`` the threads load the next slab from global memory into registers before they
    multiply the current one, so that the loads' latency hides behind the products."""
    TX = BN // TN          # threads along n
    TY = BM // TM          # threads along m
    NT = TX * TY           # threads per block
    LA = BM * BK // NT     # elements of the A slab each thread copies
    LB = BN * BK // NT     # elements of the B slab each thread copies
    assert LA * NT == BM * BK and LB * NT == BN * BK
    SA = (BK, BM + 1)      # shared slab shapes, +1 column: no bank conflicts on the stores
    SB = (BK, BN + 1)

    @cuda.jit(device=True, inline="always")
    def fetch(A, B, pa, pb, trans_a, trans_b, k0, k_hi, m0, n0, M, N, tid):
        """This thread's elements of the BM x BK slab of op(A) and the BK x BN slab of op(B)
        at k0 into registers (0 outside the matrices); neighbouring threads read neighbouring
        addresses whichever way the matrices are stored."""
        for r in range(LA):
            kk, mm = slab_a(tid + r * NT, trans_a)
            gm = m0 + mm
            gk = k0 + kk
            pa[r] = 0
            if gm < M and gk < k_hi:
                pa[r] = A[gk, gm] if trans_a else A[gm, gk]
        for r in range(LB):
            kk, nn = slab_b(tid + r * NT, trans_b)
            gn = n0 + nn
            gk = k0 + kk
            pb[r] = 0
            if gn < N and gk < k_hi:
                pb[r] = B[gn, gk] if trans_b else B[gk, gn]

    @cuda.jit(device=True, inline="always")
    def slab_a(e, trans_a):
        """(kk, mm) of element e of the A slab: A is (K, M) when transposed (neighbouring
        threads take neighbouring m), else (M, K) (neighbouring k)."""
        return (e // BM, e % BM) if trans_a else (e % BK, e // BK)

    @cuda.jit(device=True, inline="always")
    def slab_b(e, trans_b):
        """(kk, nn) of element e of the B slab: B is (N, K) when transposed, else (K, N)."""
        return (e % BK, e // BK) if trans_b else (e // BN, e % BN)

    @cuda.jit(cache=True)
    def gemm_tiled(A, B, C, trans_a, trans_b, k_chunk):
        """C[z] = sum over k in [z*k_chunk, (z+1)*k_chunk) of op(A)[m, k] op(B)[k, n]."""
        M = C.shape[1]
        N = C.shape[2]
        K = A.shape[0] if trans_a else A.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        m0 = cuda.blockIdx.y * BM
        n0 = cuda.blockIdx.x * BN
        z = cuda.blockIdx.z
        k_lo = z * k_chunk
        k_hi = min(K, k_lo + k_chunk)

        As = cuda.shared.array(SA, dtype=C.dtype)
        Bs = cuda.shared.array(SB, dtype=C.dtype)
        pa = cuda.local.array(LA, dtype=C.dtype)   # the next slabs, on their way to shared memory
        pb = cuda.local.array(LB, dtype=C.dtype)
        acc = cuda.local.array((TM, TN), dtype=C.dtype)
        a = cuda.local.array(TM, dtype=C.dtype)
        b = cuda.local.array(TN, dtype=C.dtype)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = 0

        fetch(A, B, pa, pb, trans_a, trans_b, k_lo, k_hi, m0, n0, M, N, tid)
        for k0 in range(k_lo, k_hi, BK):
            for r in range(LA):
                kk, mm = slab_a(tid + r * NT, trans_a)
                As[kk, mm] = pa[r]
            for r in range(LB):
                kk, nn = slab_b(tid + r * NT, trans_b)
                Bs[kk, nn] = pb[r]
            cuda.syncthreads()
            if PREFETCH and k0 + BK < k_hi:
                fetch(A, B, pa, pb, trans_a, trans_b, k0 + BK, k_hi, m0, n0, M, N, tid)
            for kk in range(BK):
                for i in range(TM):
                    a[i] = As[kk, ty + i * TY]
                for j in range(TN):
                    b[j] = Bs[kk, tx + j * TX]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += a[i] * b[j]
            cuda.syncthreads()
            if not PREFETCH and k0 + BK < k_hi:
                fetch(A, B, pa, pb, trans_a, trans_b, k0 + BK, k_hi, m0, n0, M, N, tid)

        for i in range(TM):
            gm = m0 + ty + i * TY
            if gm < M:
                for j in range(TN):
                    gn = n0 + tx + j * TX
                    if gn < N:
                        C[z, gm, gn] = acc[i, j]

    return gemm_tiled


@cuda.jit(cache=True)
def sum_first_axis(W, out, out2):
    """out[i] = out2[i] = sum_z W[z, i]   (W is (Z, n), out and out2 (n,), often the same array):
    adds up split-K partials or per-chunk column sums."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        s = W[0, i]
        for z in range(1, W.shape[0]):
            s += W[z, i]
        out[i] = s
        out2[i] = s


@cuda.jit(cache=True)
def column_sums_partial(A, rows_per, W):
    """W[c, n] = sum of A[r, n] over the rows r of chunk c (one thread per column and chunk)."""
    n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if n < A.shape[1]:
        r0 = c * rows_per
        r1 = min(A.shape[0], r0 + rows_per)
        s = A[r0, n]
        for r in range(r0 + 1, r1):
            s += A[r, n]
        W[c, n] = s


TT = 4 if simulating() else 32  # transpose tile
TT_ROWS = 2 if simulating() else 8
TT_SHAPE = (TT, TT + 1)


@cuda.jit(cache=True)
def transpose_kernel(A, AT):
    """AT = A.T through a shared tile, so that both the reads and the writes are coalesced."""
    tile = cuda.shared.array(TT_SHAPE, dtype=A.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    x = cuda.blockIdx.x * TT + tx
    for r in range(ty, TT, TT_ROWS):
        y = cuda.blockIdx.y * TT + r
        if y < A.shape[0] and x < A.shape[1]:
            tile[r, tx] = A[y, x]
    cuda.syncthreads()
    x = cuda.blockIdx.y * TT + tx
    for r in range(ty, TT, TT_ROWS):
        y = cuda.blockIdx.x * TT + r
        if y < AT.shape[0] and x < AT.shape[1]:
            AT[y, x] = tile[tx, r]


# ---- host side ---------------------------------------------------------------------------------


def _blocks(n, per):
    return (n + per - 1) // per


def _choose_tile(M, N):
    if SETTINGS["tile"] is not None:
        return SETTINGS["tile"]
    if simulating():
        return TILE_SIM
    if _blocks(M, 128) * _blocks(N, 128) >= 2 * sm_count():
        return TILE_128
    return TILE_64


def gemm(A, B, trans_a=False, trans_b=False, out=None):
    """``op(A) @ op(B)`` for 2-D device arrays; returns ``out`` (allocated when None)."""
    M, K = (A.shape[1], A.shape[0]) if trans_a else A.shape
    Kb, N = (B.shape[1], B.shape[0]) if trans_b else B.shape
    if K != Kb:
        raise ValueError(f"gemm: inner dimensions differ ({K} and {Kb})")
    if out is None:
        out = cuda.device_array((M, N), A.dtype)
    if M == 0 or N == 0:
        return out
    BM, BN, BK, TM, TN = tile = _choose_tile(M, N)
    tiles = _blocks(M, BM) * _blocks(N, BN)
    splits = SETTINGS["splits"]
    if splits is None:
        splits = 1
        target = 2 * sm_count()
        if tiles < target:
            splits = max(1, min(_blocks(target, tiles), K // (512 if not simulating() else 4)))
    splits = max(1, min(splits, max(K, 1)))
    k_chunk = _blocks(_blocks(K, splits), BK) * BK if K else BK
    splits = max(1, _blocks(K, k_chunk))
    kernel = gemm_kernel(*tile, bool(SETTINGS["prefetch"]))
    grid = (_blocks(N, BN), _blocks(M, BM), splits)
    threads = (BN // TN, BM // TM)
    if splits == 1:
        kernel[grid, threads](A, B, out.reshape(1, M, N), int(trans_a), int(trans_b), k_chunk)
    else:
        ws = cuda.device_array((splits, M, N), A.dtype)
        kernel[grid, threads](A, B, ws, int(trans_a), int(trans_b), k_chunk)
        _sum_first_axis(ws.reshape(splits, M * N), out.reshape(M * N))
    return out


def _sum_first_axis(W, out, out2=None):
    n = out.shape[0]
    per = 32 if simulating() else 256
    sum_first_axis[_blocks(n, per), per](W, out, out if out2 is None else out2)


def column_sums(A, out=None, also=None, pair=False):
    """Sums over the rows of a 2-D device array (R, N) -> (N,), into ``out`` when given. With
    ``pair``, the same sums go to a second array too (``also``, or a new one; the two bias
    gradients of a cell, which are equal): returns both."""
    R, N = A.shape
    if out is None:
        out = cuda.device_array(N, A.dtype)
    if pair and also is None:
        also = cuda.device_array(N, A.dtype)
    per = 8 if simulating() else 128
    col_blocks = _blocks(N, per)
    chunks = max(1, min(_blocks(R, 64 if not simulating() else 2), _blocks(8 * sm_count(), col_blocks)))
    rows_per = _blocks(R, chunks)
    chunks = _blocks(R, rows_per)
    ws = cuda.device_array((chunks, N), A.dtype)
    column_sums_partial[(col_blocks, chunks), per](A, rows_per, ws)
    _sum_first_axis(ws, out, also if pair else None)
    return (out, also) if pair else out


def transpose(A, out=None):
    """A.T of a 2-D device array, as a new C-contiguous device array."""
    R, C = A.shape
    if out is None:
        out = cuda.device_array((C, R), A.dtype)
    transpose_kernel[(_blocks(C, TT), _blocks(R, TT)), (TT, TT_ROWS)](A, out)
    return out
