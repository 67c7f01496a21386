"""The register-tiled product one step of a recurrent layer is at a large batch (``stepgemm.py``).

``slab_product(TU, TY, RB, NC, BK, gate_columns)`` builds a device function that a block of
(TU, TY) threads calls inside a persistent kernel, to compute one tile of a step's product the
way ``gemm.py`` computes a matrix product:

* a tile is TB = TY * RB rows of the left operand (h_{t-1}, or dA_{t+1} backward) x NC columns
  of TU threads; thread (tx, ty) owns rows ty, ty + TY, ... (RB of them) and columns c * TU + tx
  (c < NC): an RB x NC patch of sums in registers;
* the k axis is walked a BK-wide slab at a time: the block copies the slab of the left operand
  and of W_hh into shared memory, then every thread multiplies its patch from there, while its
  share of the NEXT slab is already on its way into registers;
* the slabs are laid out so that a thread's RB rows sit side by side, and so do its NC columns:
  a k step reads them with one 16-byte load each (LDS.128; LDS.64 for two columns), as
  ``gemm.py`` does (``benchmarks/sass_mix.py``: the LSTM forward's slab runs 256 FMAs in 417
  instructions, 1075 before);
* ``gate_columns`` (the LSTM's and GRU's forward): the NC columns of a thread are the NC gates
  of ONE unit (rows g*H + j of W_hh), so the thread ends the product holding all the gate sums of
  its unit; otherwise the columns are NC units (backward, and the RNN's forward, which reads a
  transposed W_hh).
"""

import functools

from numba import cuda

from .ids import nonneg


@functools.cache
def slab_product(TU, TY, RB, NC, BK, gate_columns):
    """``product(acc, X, W, b0, j0, B, K, H)``, a device function for the thread (tx, ty) of a
    block of (TU, TY): acc[i, c] = sum over k < K of X[b0 + ty + i*TY, k] * w_c[k], where w_c is

    * ``gate_columns`` (forward): row c*H + j of W (W_hh, (G*H, H)), j = j0 + tx: gate c of unit j;
    * else (backward): column j0 + c*TU + tx of W (W_hh read as (K = G*H, H)): unit c*TU + tx.

    It holds the slabs in shared memory and the next ones, on their way, in registers."""
    TB = TY * RB                 # rows of X per tile
    NT = TU * TY                 # threads per block
    WC = NC * TU                 # columns of the W slab
    LX = TB * BK // NT           # elements of the X slab each thread copies
    LW = WC * BK // NT           # elements of the W slab each thread copies
    assert LX * NT == TB * BK and LW * NT == WC * BK, "the slabs must split evenly over the threads"

    @cuda.jit(device=True, inline="always")
    def fetch(X, W, px, pw, k0, b0, j0, B, K, H, tid):
        """This thread's elements of the slabs at k0 into registers (0 outside the matrices).
        Rows of X: neighbouring threads on neighbouring k. W: forward, neighbouring threads on
        neighbouring k of one W_hh row; backward, on neighbouring units of one W_hh row."""
        k0 = nonneg(k0)
        for r in range(LX):
            e = tid + r * NT
            b = b0 + e // BK
            k = k0 + e % BK
            px[r] = 0
            if b < B and k < K:
                px[r] = X[b, k]
        for r in range(LW):
            e = tid + r * NT
            pw[r] = 0
            if gate_columns:
                col = e // BK
                j = j0 + col % TU
                k = k0 + e % BK
                if j < H and k < K:
                    pw[r] = W[(col // TU) * H + j, k]
            else:
                k = k0 + e // WC
                j = j0 + e % WC
                if k < K and j < H:
                    pw[r] = W[k, j]

    @cuda.jit(device=True, inline="always")
    def stage(Xs, Ws, px, pw, tid):
        """The fetched slabs into shared memory, each thread's rows (and columns) side by side:
        row ty + i*TY of the tile at Xs[kk, ty*RB + i], column c*TU + tx at Ws[kk, tx*NP + c]."""
        for r in range(LX):
            e = tid + r * NT
            row = e // BK
            Xs[e % BK, (row % TY) * RB + row // TY] = px[r]
        for r in range(LW):
            e = tid + r * NT
            col, kk = (e // BK, e % BK) if gate_columns else (e % WC, e // WC)
            Ws[kk, (col % TU) * NP + col // TU] = pw[r]

    NP = 4 if NC == 3 else NC    # a thread's columns, padded so that they are read as one or two
    SX = (BK, TB + 4)            # aligned loads (LDS.128, LDS.64); the slabs k-major, +4 keeps
    SW = (BK, TU * NP + 4)       # every k's row 16-byte aligned

    @cuda.jit(device=True, inline="always")
    def product(acc, X, W, b0, j0, B, K, H):
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * TU + tx
        Xs = cuda.shared.array(SX, dtype=acc.dtype, alignment=16)
        Ws = cuda.shared.array(SW, dtype=acc.dtype, alignment=16)
        px = cuda.local.array(LX, dtype=acc.dtype)
        pw = cuda.local.array(LW, dtype=acc.dtype)
        xv = cuda.local.array(RB, dtype=acc.dtype)
        wv = cuda.local.array(NC, dtype=acc.dtype)
        for i in range(RB):
            for c in range(NC):
                acc[i, c] = 0
        fetch(X, W, px, pw, 0, b0, j0, B, K, H, tid)
        for k0 in range(0, K, BK):
            stage(Xs, Ws, px, pw, tid)
            cuda.syncthreads()
            if k0 + BK < K:                  # the next slab is on its way during the products
                fetch(X, W, px, pw, k0 + BK, b0, j0, B, K, H, tid)
            kk = 0
            while kk < BK:                   # not range(BK): NVVM unrolls this one (gemm.py)
                for i in range(RB):
                    xv[i] = Xs[kk, ty * RB + i]
                for c in range(NC):
                    wv[c] = Ws[kk, tx * NP + c]
                for i in range(RB):
                    for c in range(NC):
                        acc[i, c] += xv[i] * wv[c]
                kk += 1
            cuda.syncthreads()               # the slabs are overwritten next

    return product
