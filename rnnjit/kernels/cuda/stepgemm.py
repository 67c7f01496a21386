"""One step of a recurrent layer as a register-tiled matrix product: the large-batch kernels.

At a large batch a step is a real matrix product, B x H times H x G*H forward (G gates) and
B x G*H times G*H x H backward, and the split-K tiles of ``launch.py`` (each thread a few k's of
every product, then a reduction through shared memory) waste most of it. The ``*_gemm`` kernels
of ``lstm.py`` and ``gru.py`` compute a step the way ``gemm.py`` computes a product instead:

* a tile is TB = TY * RB batch rows x NC columns of TU threads; thread (tx, ty) owns rows
  ty, ty + TY, ... (RB of them) and columns c * TU + tx (c < NC): an RB x NC patch in registers;
* the k axis is walked a BK-wide slab at a time: the block copies the slab of the left operand
  (rows of h_{t-1} or dA_{t+1}) and of W_hh into shared memory, then every thread multiplies its
  patch from there, while its share of the NEXT slab is already on its way into registers;
* forward, the NC = G columns of a thread are the G gates of ONE unit (rows g*H + j of W_hh):
  the thread ends the product holding all the gate sums of its unit and does the gate math in
  registers, with no exchange between threads. Backward, the columns are NC units (dh_t needs
  no gate grouping; k runs over all G*H gate rows of W_hh).

``slab_product`` builds the product as a device function the cell kernels call; each cell's
kernel then reads: load what the gate math needs, the product, the gate math. ``launch.py``
decides when these kernels run (``use_step_gemm``) and launches them (``launch_step_gemm``).
"""

import functools

from numba import cuda


@functools.cache
def slab_product(TU, TY, RB, NC, BK, gate_columns):
    """``product(acc, X, W, Xs, Ws, px, pw, xv, wv, b0, j0, B, K, H, tid, tx, ty)``, a device
    function: acc[i, c] = sum over k < K of X[b0 + ty + i*TY, k] * w_c[k], where w_c is

    * ``gate_columns`` (forward): row c*H + j of W (W_hh, (G*H, H)), j = j0 + tx: gate c of unit j;
    * else (backward): column j0 + c*TU + tx of W (W_hh read as (K = G*H, H)): unit c*TU + tx.

    Also returns the shapes the caller allocates: shared (BK, TB + 1) and (BK, NC*TU + 1), local
    LX and LW (the slab elements each thread copies), RB and NC."""
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
        """The fetched slabs into shared memory: Xs[kk, row], Ws[kk, column]."""
        for r in range(LX):
            e = tid + r * NT
            Xs[e % BK, e // BK] = px[r]
        for r in range(LW):
            e = tid + r * NT
            if gate_columns:
                Ws[e % BK, e // BK] = pw[r]
            else:
                Ws[e // WC, e % WC] = pw[r]

    @cuda.jit(device=True, inline="always")
    def product(acc, X, W, Xs, Ws, px, pw, xv, wv, b0, j0, B, K, H, tid, tx, ty):
        for i in range(RB):
            for c in range(NC):
                acc[i, c] = 0
        fetch(X, W, px, pw, 0, b0, j0, B, K, H, tid)
        for k0 in range(0, K, BK):
            stage(Xs, Ws, px, pw, tid)
            cuda.syncthreads()
            if k0 + BK < K:                  # the next slab is on its way during the products
                fetch(X, W, px, pw, k0 + BK, b0, j0, B, K, H, tid)
            for kk in range(BK):
                for i in range(RB):
                    xv[i] = Xs[kk, ty + i * TY]
                for c in range(NC):
                    wv[c] = Ws[kk, c * TU + tx]
                for i in range(RB):
                    for c in range(NC):
                        acc[i, c] += xv[i] * wv[c]
            cuda.syncthreads()               # the slabs are overwritten next

    return product, ((BK, TB + 1), (BK, WC + 1), LX, LW)
