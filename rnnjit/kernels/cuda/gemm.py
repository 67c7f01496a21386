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
  Thread (tx, ty) owns runs of 4 consecutive rows (``ty*4 + i``, and the same again GM rows
  further down when TM = 8) and runs of 4 columns (``tx*4 + j``, ...): it reads each run from
  shared memory as ONE 16-byte load (LDS.128), so that a k step of an 8 x 8 patch is 4 loads
  and 64 FMAs, not 16 and 64; eight neighbouring threads read 128 consecutive bytes, which the
  banks serve without conflicts.
* The indices are built from ids the compiler knows are not negative (``ids.nonneg``), and
  the transposes are constants of each compiled kernel, so that a thread's loops hold the
  loads and the products and little else; the k loop over a slab is a while loop, whose loop
  code is lighter than a Numba range loop's and which NVVM unrolls where it fits (the 64 x 64
  tile's fully, the 128 x 128 tile's dA^T X four times). ``benchmarks/sass_mix.py`` counts it in the machine
  code for sm_90: a k-slab of the 128 x 128 tile runs 512 FMAs in 718-784 instructions, where
  the kernel before these three changes ran them in 2089 (a warp issues one instruction a
  cycle, so the share of FMAs bounds the speed).
* When C has few tiles and K is long (dW_hh for a small H and a large batch: a (4H, H)
  result summed over T*B rows) a third grid axis splits K (``blockIdx.z``): each split writes
  its partial C to a workspace and ``sum_first_axis`` adds them up (deterministic, no atomics).

Also here: ``transpose`` (W_hh^T for the forward recurrence, read coalesced) and
``column_sums`` (the bias gradients: the sum of the gate gradients over all T*B rows).
"""

import functools
import os

from numba import cuda

from .graphs import queue
from .ids import nonneg
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
def gemm_kernel(BM, BN, BK, TM, TN, PREFETCH=False, TA=False, TB=False):
    """The tiled GEMM for one tile configuration and one pair of transposes (``TA``: A is
    stored (K, M), ``TB``: B is stored (N, K)); all are constants baked into the kernel, so
    that a thread's loop holds only the loads and products of its own case. With ``PREFETCH``
    the threads load the next slab from global memory into registers before they multiply
    the current one, so that the loads' latency hides behind the products."""
    TX = BN // TN          # threads along n
    TY = BM // TM          # threads along m
    NT = TX * TY           # threads per block
    LA = BM * BK // NT     # elements of the A slab each thread copies
    LB = BN * BK // NT     # elements of the B slab each thread copies
    assert LA * NT == BM * BK and LB * NT == BN * BK
    VM = min(4, TM)        # a thread's rows come in runs of VM (columns: VN), read from the
    VN = min(4, TN)        # shared slabs as one 16-byte load per run (LDS.128)
    GM = BM // (TM // VM)  # the runs are GM rows (GN columns) apart
    GN = BN // (TN // VN)
    SA = (BK, BM + 4)      # shared slab shapes; +4 keeps the runs 16-byte aligned and spreads
    SB = (BK, BN + 4)      # the slab stores over the banks

    @cuda.jit(device=True, inline="always")
    def row(i, ty):
        """The tile row of thread row ty's i-th output row: runs of VM consecutive rows."""
        return (i // VM) * GM + ty * VM + i % VM

    @cuda.jit(device=True, inline="always")
    def column(j, tx):
        """The tile column of thread column tx's j-th output column: runs of VN."""
        return (j // VN) * GN + tx * VN + j % VN

    @cuda.jit(device=True, inline="always")
    def slab_a(e):
        """(kk, mm) of element e of the A slab: A is (K, M) when transposed (neighbouring
        threads take neighbouring m), else (M, K) (neighbouring k)."""
        return (e // BM, e % BM) if TA else (e % BK, e // BK)

    @cuda.jit(device=True, inline="always")
    def slab_b(e):
        """(kk, nn) of element e of the B slab: B is (N, K) when transposed, else (K, N)."""
        return (e % BK, e // BK) if TB else (e // BN, e % BN)

    @cuda.jit(device=True, inline="always")
    def fetch(A, B, pa, pb, k0, k_hi, m0, n0, M, N, tid):
        """This thread's elements of the BM x BK slab of op(A) and the BK x BN slab of op(B)
        at k0 into registers (0 outside the matrices); neighbouring threads read neighbouring
        addresses whichever way the matrices are stored."""
        k0 = nonneg(k0)
        for r in range(LA):
            kk, mm = slab_a(tid + r * NT)
            gm = m0 + mm
            gk = k0 + kk
            pa[r] = 0
            if gm < M and gk < k_hi:
                pa[r] = A[gk, gm] if TA else A[gm, gk]
        for r in range(LB):
            kk, nn = slab_b(tid + r * NT)
            gn = n0 + nn
            gk = k0 + kk
            pb[r] = 0
            if gn < N and gk < k_hi:
                pb[r] = B[gn, gk] if TB else B[gk, gn]

    @cuda.jit(cache=True)
    def gemm_tiled(A, B, C, k_chunk):
        """C[z] = sum over k in [z*k_chunk, (z+1)*k_chunk) of op(A)[m, k] op(B)[k, n]."""
        M = C.shape[1]
        N = C.shape[2]
        K = A.shape[0] if TA else A.shape[1]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * TX + tx
        m0 = nonneg(cuda.blockIdx.y) * BM
        n0 = nonneg(cuda.blockIdx.x) * BN
        z = nonneg(cuda.blockIdx.z)
        k_lo = z * nonneg(k_chunk)
        k_hi = min(K, k_lo + k_chunk)

        As = cuda.shared.array(SA, dtype=C.dtype, alignment=16)
        Bs = cuda.shared.array(SB, dtype=C.dtype, alignment=16)
        pa = cuda.local.array(LA, dtype=C.dtype)   # the next slabs, on their way to shared memory
        pb = cuda.local.array(LB, dtype=C.dtype)
        acc = cuda.local.array((TM, TN), dtype=C.dtype)
        a = cuda.local.array(TM, dtype=C.dtype)
        b = cuda.local.array(TN, dtype=C.dtype)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = 0

        fetch(A, B, pa, pb, k_lo, k_hi, m0, n0, M, N, tid)
        for k0 in range(k_lo, k_hi, BK):
            for r in range(LA):
                kk, mm = slab_a(tid + r * NT)
                As[kk, mm] = pa[r]
            for r in range(LB):
                kk, nn = slab_b(tid + r * NT)
                Bs[kk, nn] = pb[r]
            cuda.syncthreads()
            if PREFETCH and k0 + BK < k_hi:
                fetch(A, B, pa, pb, k0 + BK, k_hi, m0, n0, M, N, tid)
            kk = 0
            while kk < BK:       # not range(BK): lighter loop code, which NVVM unrolls where it fits
                for i in range(TM):
                    a[i] = As[kk, row(i, ty)]
                for j in range(TN):
                    b[j] = Bs[kk, column(j, tx)]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += a[i] * b[j]
                kk += 1
            cuda.syncthreads()
            if not PREFETCH and k0 + BK < k_hi:
                fetch(A, B, pa, pb, k0 + BK, k_hi, m0, n0, M, N, tid)

        for i in range(TM):
            gm = m0 + row(i, ty)
            if gm < M:
                for j in range(TN):
                    gn = n0 + column(j, tx)
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
    kernel = gemm_kernel(*tile, bool(SETTINGS["prefetch"]), bool(trans_a), bool(trans_b))
    grid = (_blocks(N, BN), _blocks(M, BM), splits)
    threads = (BN // TN, BM // TM)
    if splits == 1:
        queue(kernel, grid, threads, A, B, out.reshape(1, M, N), k_chunk)
    else:
        ws = cuda.device_array((splits, M, N), A.dtype)
        queue(kernel, grid, threads, A, B, ws, k_chunk)
        _sum_first_axis(ws.reshape(splits, M * N), out.reshape(M * N))
    return out


def _sum_first_axis(W, out, out2=None):
    n = out.shape[0]
    per = 32 if simulating() else 256
    queue(sum_first_axis, _blocks(n, per), per, W, out, out if out2 is None else out2)


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
    queue(column_sums_partial, (col_blocks, chunks), per, A, rows_per, ws)
    _sum_first_axis(ws, out, also if pair else None)
    return (out, also) if pair else out


def transpose(A, out=None):
    """A.T of a 2-D device array, as a new C-contiguous device array."""
    R, C = A.shape
    if out is None:
        out = cuda.device_array((C, R), A.dtype)
    queue(transpose_kernel, (_blocks(C, TT), _blocks(R, TT)), (TT, TT_ROWS), A, out)
    return out
