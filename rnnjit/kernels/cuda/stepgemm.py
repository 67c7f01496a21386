"""One step of a recurrent layer as a register-tiled matrix product: the large-batch kernels.

At a large batch a step is a real matrix product, B x H times H x G*H forward (G gates) and
B x G*H times G*H x H backward, and the split-K tiles of ``launch.py`` (each thread a few k's of
every product, then a reduction through shared memory) waste most of it. The kernels here, the
large-batch twins of the persistent kernels of ``lstm.py``, ``gru.py`` and ``rnn.py`` (which
launch them), compute each step's product the way ``gemm.py`` computes a product instead, with
``slabs.slab_product`` (read its header first: tiles, k-slabs through shared memory, each thread
an RB x NC patch of sums in registers):

* forward, the NC = G columns of a thread are the G gates of ONE unit (rows g*H + j of W_hh):
  the thread ends the product holding all the gate sums of its unit and does the gate math in
  registers, with no exchange between threads;
* backward, the columns are NC = 2 units (``BACKWARD_UNITS``: dh_t needs no gate grouping; k runs
  over all G*H gate rows of W_hh);
* the RNN has one gate, so its forward's columns are units too, read from a transposed copy of
  W_hh (``rnn_forward_gemm``).

Each cell's kernel reads: load what the gate math needs, the product, the gate math (the
equations are in the cell's module docstring; the backward's are the cell's ``gate_gradients``,
which its split-K kernel calls too). ``launch.py`` decides when these kernels run
(``use_step_gemm``) and launches them (``launch_step_gemm``).
"""

import functools
import math

import numpy as np
from numba import cuda

from .activations import sigmoid
from .ids import nonneg
from .slabs import slab_product
from .tile import norms_from_parts, store_tile_part, tile_origin

BACKWARD_UNITS = 2   # units per thread of the backward kernels: tiles of TU * 2 units


# ---- the cells' kernels: load what the gate math needs, the product, the gate math ----------------

@functools.cache
def lstm_forward_gemm_kernel(TU, TY, RB, BK):
    """The persistent forward kernel for large batches (``stepgemm.py``): a tile is TY * RB batch
    rows x TU units, all four gates; thread (unit tx, rows ty, ty + TY, ...) computes the four
    gate sums of its unit for its rows as a register-tiled product over k, then does the gate
    math in registers. It reads W_hh itself (rows g*H + j): no transposed copy."""
    TB = TY * RB
    product = slab_product(TU, TY, RB, 4, BK, True)

    @cuda.jit(cache=True)
    def lstm_forward_gemm(gates, b_ih, b_hh, W_hh, hs, cs, h0, c0, reverse, tiles_j, tiles_b):
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)    # unit within the tile
        ty = nonneg(cuda.threadIdx.y)    # batch rows ty, ty + TY, ... within the tile
        grid = cuda.cg.this_grid()
        acc = cuda.local.array((RB, 4), dtype=hs.dtype)
        xin = cuda.local.array((RB, 4), dtype=hs.dtype)
        c_prev = cuda.local.array(RB, dtype=hs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            prev_c = c0 if s == 0 else cs[t + 1 - nxt]
            next_h = hs[t + nxt]
            next_c = cs[t + nxt]
            a = gates[t]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TU, TB)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                # 0. what the gate math needs besides the product: input projections + biases, c_{t-1}
                for i in range(RB):
                    bc = nonneg(min(b0 + ty + i * TY, B - 1))
                    for g in range(4):
                        xin[i, g] = a[bc, g * H + jc] + (b_ih[g * H + jc] + b_hh[g * H + jc])
                    c_prev[i] = prev_c[bc, jc]
                # 1. acc[i, g] = sum_k h_{t-1}[b_i, k] W_hh[g*H + j, k]
                product(acc, prev_h, W_hh, b0, j0, B, H, H)
                # 2. the gate math of unit j for the thread's rows
                for i in range(RB):
                    b = b0 + ty + i * TY
                    if b < B and j < H:
                        ig = sigmoid(xin[i, 0] + acc[i, 0])
                        fg = sigmoid(xin[i, 1] + acc[i, 1])
                        gg = math.tanh(xin[i, 2] + acc[i, 2])
                        og = sigmoid(xin[i, 3] + acc[i, 3])
                        c = fg * c_prev[i] + ig * gg
                        next_c[b, j] = c
                        next_h[b, j] = og * math.tanh(c)
                        a[b, j] = ig
                        a[b, H + j] = fg
                        a[b, 2 * H + j] = gg
                        a[b, 3 * H + j] = og
                        if s == 0:               # the state stacks start with h0 and c0
                            hs[t + 1 - nxt, b, j] = h0[b, j]
                            cs[t + 1 - nxt, b, j] = c_prev[i]
            grid.sync()                          # step t + 1 reads all of h_t

    return lstm_forward_gemm


@functools.cache
def lstm_backward_gemm_kernel(TU, TY, RB, BK, UB=BACKWARD_UNITS):
    """The persistent backward kernel for large batches (``stepgemm.py``): per step,
    dh_t = dA_{t+1} W_hh for a tile of TY * RB batch rows x TU * UB units as a register-tiled
    product over the 4H gate rows, each thread RB x UB of it (rows ty, ty + TY, ...; units tx,
    tx + TU, ...), then the gate math of ``lstm._backward_kernel`` for those (b, j) in registers."""
    from .lstm import gate_gradients   # the backward equations, shared with lstm.py's split-K kernel
    TB = TY * RB             # batch rows per tile
    TJ = TU * UB             # units per tile
    NT = TU * TY             # threads per block
    product = slab_product(TU, TY, RB, UB, BK, False)

    @cuda.jit(cache=True)
    def lstm_backward_gemm(gates, cs, W_hh, dout, dh_n, dc, dG, dh0, part, norms, reverse, tiles_j, tiles_b):
        T, B, G = gates.shape
        H = cs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * TU + tx
        grid = cuda.cg.this_grid()
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array((RB, UB), dtype=cs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T + 1):                   # pass T only finishes dh0
            t = s if reverse else T - 1 - s      # the step whose gate gradients this pass makes
            tp = t - 1 if reverse else t + 1     # the step the previous pass made
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TJ, TB)
                # 1. acc[i, u] = sum_k dA_{t+1}[b_i, k] W_hh[k, j_u]   (pass 0 starts from dh_n)
                if s > 0:
                    product(acc, dG[tp], W_hh, b0, j0, B, G, H)
                # 2. the gate math of step t for the thread's (b, j)
                sq = 0.0
                for i in range(RB):
                    b = b0 + ty + i * TY
                    for u in range(UB):
                        j = j0 + tx + u * TU
                        if b < B and j < H:
                            dh = dh_n[b, j] if s == 0 else acc[i, u]
                            if s == T:
                                dh0[b, j] = dh
                            else:
                                dhv = gate_gradients(gates, cs, dout, dc, dG, t, nxt, b, j, H, dh)
                                sq += dhv * dhv
                # 3. this tile's share of norms[t]: a tree sum over the block
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()                      # the next pass reads all of dA_t
        if cuda.blockIdx.x == 0:                 # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return lstm_backward_gemm


@functools.cache
def gru_forward_gemm_kernel(TU, TY, RB, BK):
    """The persistent forward kernel for large batches (``stepgemm.py``): a tile is TY * RB batch
    rows x TU units, all three gates; thread (unit tx, rows ty, ty + TY, ...) computes the three
    sums of W_hh h_{t-1} for its unit and rows as a register-tiled product over k, then does the
    gate math above in registers. It reads W_hh itself: no transposed copy."""
    TB = TY * RB
    product = slab_product(TU, TY, RB, 3, BK, True)

    @cuda.jit(cache=True)
    def gru_forward_gemm(gates, hns, b_ih, b_hh, W_hh, hs, h0, reverse, tiles_j, tiles_b):
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)    # unit within the tile
        ty = nonneg(cuda.threadIdx.y)    # batch rows ty, ty + TY, ... within the tile
        grid = cuda.cg.this_grid()
        acc = cuda.local.array((RB, 3), dtype=hs.dtype)
        xin = cuda.local.array((RB, 3), dtype=hs.dtype)
        h_prev = cuda.local.array(RB, dtype=hs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            next_h = hs[t + nxt]
            a = gates[t]
            hn = hns[t]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TU, TB)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                # 0. what the gate math needs besides the product: input projections + b_ih, h_{t-1}
                bh_r = b_hh[jc]
                bh_z = b_hh[H + jc]
                bh_n = b_hh[2 * H + jc]
                for i in range(RB):
                    bc = nonneg(min(b0 + ty + i * TY, B - 1))
                    for g in range(3):
                        xin[i, g] = a[bc, g * H + jc] + b_ih[g * H + jc]
                    h_prev[i] = prev_h[bc, jc]
                # 1. acc[i, g] = sum_k h_{t-1}[b_i, k] W_hh[g*H + j, k]
                product(acc, prev_h, W_hh, b0, j0, B, H, H)
                # 2. the gate math of unit j for the thread's rows
                for i in range(RB):
                    b = b0 + ty + i * TY
                    if b < B and j < H:
                        r = sigmoid(xin[i, 0] + acc[i, 0] + bh_r)
                        z = sigmoid(xin[i, 1] + acc[i, 1] + bh_z)
                        hn_v = acc[i, 2] + bh_n
                        n = math.tanh(xin[i, 2] + r * hn_v)
                        next_h[b, j] = (1 - z) * n + z * h_prev[i]
                        a[b, j] = r
                        a[b, H + j] = z
                        a[b, 2 * H + j] = n
                        hn[b, j] = hn_v
                        if s == 0:               # the state stack starts with h0
                            hs[t + 1 - nxt, b, j] = h_prev[i]
            grid.sync()                          # step t + 1 reads all of h_t

    return gru_forward_gemm


@functools.cache
def gru_backward_gemm_kernel(TU, TY, RB, BK, UB=BACKWARD_UNITS):
    """The persistent backward kernel for large batches (``stepgemm.py``): per step,
    dah_{t+1} W_hh for a tile of TY * RB batch rows x TU * UB units as a register-tiled product
    over the 3H gate rows, each thread RB x UB of it, then the gate math of ``_backward_kernel``
    for those (b, j) in registers."""
    from .gru import gate_gradients   # the backward equations, shared with gru.py's split-K kernel
    TB = TY * RB             # batch rows per tile
    TJ = TU * UB             # units per tile
    NT = TU * TY             # threads per block
    product = slab_product(TU, TY, RB, UB, BK, False)

    @cuda.jit(cache=True)
    def gru_backward_gemm(gates, hns, hs, W_hh, dout, dh_n, dhz, dGx, dGh, dh0, part, norms, reverse,
                          tiles_j, tiles_b):
        T, B, G = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * TU + tx
        grid = cuda.cg.this_grid()
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array((RB, UB), dtype=hs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T + 1):                   # pass T only finishes dh0
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TJ, TB)
                # 1. acc[i, u] = sum_k dah_{t+1}[b_i, k] W_hh[k, j_u]   (pass 0 starts from dh_n)
                if s > 0:
                    product(acc, dGh[tp], W_hh, b0, j0, B, G, H)
                # 2. the gate math of step t for the thread's (b, j)
                sq = 0.0
                for i in range(RB):
                    b = b0 + ty + i * TY
                    for u in range(UB):
                        j = j0 + tx + u * TU
                        if b < B and j < H:
                            dh = dh_n[b, j] if s == 0 else dhz[b, j] + acc[i, u]   # dh_t = dh_{t+1} z + dah W_hh
                            if s == T:
                                dh0[b, j] = dh
                            else:
                                dhv = gate_gradients(gates, hns, hs, dout, dGx, dGh, dhz, t, nxt, b, j, H, dh)
                                sq += dhv * dhv
                # 3. this tile's share of norms[t]: a tree sum over the block
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()                      # the next pass reads all of dah_t
        if cuda.blockIdx.x == 0:                 # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return gru_backward_gemm


@functools.cache
def rnn_forward_gemm_kernel(TU, TY, RB, BK, UB=BACKWARD_UNITS):
    """The persistent forward kernel for large batches (``stepgemm.py``): per step,
    h_{t-1} W_hh^T for a tile of TY * RB batch rows x TU * UB units as a register-tiled product,
    each thread RB x UB of it (rows ty, ty + TY, ...; units tx, tx + TU, ...), then the activation
    in registers. With one gate there is nothing to group, so the columns are units, read from
    W_hh^T (``Wt``, a transposed copy: column j of it is row j of W_hh), as the backward reads
    W_hh."""
    TB = TY * RB             # batch rows per tile
    TJ = TU * UB             # units per tile
    product = slab_product(TU, TY, RB, UB, BK, False)

    @cuda.jit(cache=True)
    def rnn_forward_gemm(xa, b_ih, b_hh, Wt, hs, h0, reverse, use_relu, tiles_j, tiles_b):
        T, B, H = xa.shape
        tx = nonneg(cuda.threadIdx.x)    # units tx, tx + TU, ... within the tile
        ty = nonneg(cuda.threadIdx.y)    # batch rows ty, ty + TY, ... within the tile
        grid = cuda.cg.this_grid()
        acc = cuda.local.array((RB, UB), dtype=hs.dtype)
        xin = cuda.local.array((RB, UB), dtype=hs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            next_h = hs[t + nxt]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TJ, TB)
                # 0. the input projections + biases, loaded before the product
                for i in range(RB):
                    bc = nonneg(min(b0 + ty + i * TY, B - 1))
                    for u in range(UB):
                        jc = nonneg(min(j0 + tx + u * TU, H - 1))
                        xin[i, u] = xa[t, bc, jc] + (b_ih[jc] + b_hh[jc])
                # 1. acc[i, u] = sum_k h_{t-1}[b_i, k] W_hh[j_u, k]
                product(acc, prev_h, Wt, b0, j0, B, H, H)
                # 2. the activation of the thread's (b, j)
                for i in range(RB):
                    b = b0 + ty + i * TY
                    for u in range(UB):
                        j = j0 + tx + u * TU
                        if b < B and j < H:
                            v = xin[i, u] + acc[i, u]
                            next_h[b, j] = max(v, 0) if use_relu else math.tanh(v)
                            if s == 0:           # the state stack starts with h0
                                hs[t + 1 - nxt, b, j] = h0[b, j]
            grid.sync()                          # step t + 1 reads all of h_t

    return rnn_forward_gemm


@functools.cache
def rnn_backward_gemm_kernel(TU, TY, RB, BK, UB=BACKWARD_UNITS):
    """The persistent backward kernel for large batches (``stepgemm.py``): per step,
    dh_t = da_{t+1} W_hh for a tile of TY * RB batch rows x TU * UB units as a register-tiled
    product over the H rows of W_hh, each thread RB x UB of it, then da_t = dh * act' (the RNN's
    ``gate_gradients``) for those (b, j) in registers."""
    from .rnn import gate_gradients   # the backward equations, shared with rnn.py's split-K kernel
    TB = TY * RB             # batch rows per tile
    TJ = TU * UB             # units per tile
    NT = TU * TY             # threads per block
    product = slab_product(TU, TY, RB, UB, BK, False)

    @cuda.jit(cache=True)
    def rnn_backward_gemm(hs, W_hh, dout, dh_n, dG, dh0, part, norms, reverse, use_relu, tiles_j, tiles_b):
        T, B, H = dout.shape
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * TU + tx
        grid = cuda.cg.this_grid()
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array((RB, UB), dtype=hs.dtype)
        nxt = 0 if reverse else 1

        for s in range(T + 1):                   # pass T only finishes dh0
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, TJ, TB)
                # 1. acc[i, u] = sum_k da_{t+1}[b_i, k] W_hh[k, j_u]   (pass 0 starts from dh_n)
                if s > 0:
                    product(acc, dG[tp], W_hh, b0, j0, B, H, H)
                # 2. da_t for the thread's (b, j)
                sq = 0.0
                for i in range(RB):
                    b = b0 + ty + i * TY
                    for u in range(UB):
                        j = j0 + tx + u * TU
                        if b < B and j < H:
                            dh = dh_n[b, j] if s == 0 else acc[i, u]
                            if s == T:
                                dh0[b, j] = dh
                            else:
                                dhv = gate_gradients(hs, dout, dG, t, nxt, b, j, dh, use_relu)
                                sq += dhv * dhv
                # 3. this tile's share of norms[t]: a tree sum over the block
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()                      # the next pass reads all of da_t
        if cuda.blockIdx.x == 0:                 # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return rnn_backward_gemm
