"""Prototype, to be measured on a GPU before it replaces anything: the cells' persistent kernels
with each step's recurrent operand staged in shared memory (LSTM, GRU and RNN, forward and
backward; the split-K path of ``rnnjit/kernels/cuda/{lstm,gru,rnn}.py``).

In ``rnnjit/kernels/cuda/lstm.py`` (and likewise in the other cells) thread (x, y) of a tile reads its operand straight from
global memory inside the k loop: ``prev_h[row, k]`` (forward, k < H) or ``dG[t+1, row, k]``
(backward, k < 4H), BT rows per k, KN = ceil(K / KS) values of k. At B = 32, H = 512 that is
64 x 8 = 512 loads a thread a backward step, in a loop that NVVM does not unroll (KN = 64), so
the loads are issued a few at a time and each waits for L2: the H200 measured 29.6 us a
backward step there, where cuDNN's whole training step takes about 15 us a step.

Here a block first copies the slab it needs, BT rows x CH columns of the operand, into shared
memory with all its threads (consecutive threads, consecutive columns: coalesced, and all the
loads of a slab in flight at once), waits (``syncthreads``), and the k loop reads shared memory;
CH = KC * KS columns a slab, so the loop runs KC of its k values per slab. The sums are added in
the same order as in lstm.py, so the results should be the same to the last bit.

``staged(cell)`` swaps these kernels in for the cell module's (its launchers look the kernel
factories up at every call), so a layer call runs with them unchanged otherwise;
``cuda_check.py --staged`` times both and compares their results.
"""

import contextlib
import functools
import math

import numpy as np
from numba import cuda

from rnnjit.kernels.cuda import gru, lstm, rnn
from rnnjit.kernels.cuda.activations import sigmoid
from rnnjit.kernels.cuda.ids import nonneg
from rnnjit.kernels.cuda.launch import keep_weights, norms_from_parts, slice_sum, store_tile_part, tile_origin

KC = 16     # k values per thread per slab: a slab is KC * KS columns (512 with 32 k-slices)


@functools.cache
def lstm_forward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, 4 * BT, JT)
    OWN = max(1, 4 * KN)
    NT = JT * KS
    CH = kc * KS
    NCH = max(1, -(-KN // kc))       # slabs a step, when the weights are kept (KN known here)

    @cuda.jit
    def lstm_forward_staged(gates, b_ih, b_hh, W, hs, cs, h0, c0, reverse, tiles_j, tiles_b):
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=hs.dtype)
        acc = cuda.local.array((4, BT), dtype=hs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:
            keep_weights(w_own, W, KN, KS, JT, tiles_j, 4, H, H, H, True)

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            prev_c = c0 if s == 0 else cs[t + 1 - nxt]
            next_h = hs[t + nxt]
            next_c = cs[t + nxt]
            a = gates[t]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                b = b0 + ty
                jc = nonneg(min(j, H - 1))
                bc = nonneg(min(b, B - 1))
                x_i = a[bc, jc] + (b_ih[jc] + b_hh[jc])
                x_f = a[bc, H + jc] + (b_ih[H + jc] + b_hh[H + jc])
                x_g = a[bc, 2 * H + jc] + (b_ih[2 * H + jc] + b_hh[2 * H + jc])
                x_o = a[bc, 3 * H + jc] + (b_ih[3 * H + jc] + b_hh[3 * H + jc])
                c_prev = prev_c[bc, jc]
                for bb in range(BT):
                    for g in range(4):
                        acc[g, bb] = 0
                for sl in range(NCH if KN else (H + CH - 1) // CH):
                    k0 = sl * CH
                    q = tid                                   # 1a. the slab of h_{t-1}, all threads
                    while q < BT * CH:
                        r = q // CH
                        col = q - r * CH
                        slab[r, col] = prev_h[nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, H - 1))]
                        q += NT
                    cuda.syncthreads()
                    for kl in range(kc):                      # 1b. this thread's k values in it
                        kk = sl * kc + kl
                        k = nonneg(ty + kk * KS)
                        if k < H:
                            kin = nonneg(ty + kl * KS)
                            for g in range(4):
                                w = w_own[g * KN + kk] if KN else W[k, g * H + jc]
                                for bb in range(BT):
                                    acc[g, bb] += slab[bb, kin] * w
                    cuda.syncthreads()                        # the slab is refilled next
                for g in range(4):
                    for bb in range(BT):
                        red[ty, g * BT + bb, tx] = acc[g, bb]
                cuda.syncthreads()
                if ty < BT and b < B and j < H:
                    hh_i = slice_sum(red, ty, tx)
                    hh_f = slice_sum(red, BT + ty, tx)
                    hh_g = slice_sum(red, 2 * BT + ty, tx)
                    hh_o = slice_sum(red, 3 * BT + ty, tx)
                    i = sigmoid(x_i + hh_i)
                    f = sigmoid(x_f + hh_f)
                    g = math.tanh(x_g + hh_g)
                    o = sigmoid(x_o + hh_o)
                    c = f * c_prev + i * g
                    next_c[b, j] = c
                    next_h[b, j] = o * math.tanh(c)
                    a[b, j] = i
                    a[b, H + j] = f
                    a[b, 2 * H + j] = g
                    a[b, 3 * H + j] = o
                    if s == 0:
                        hs[t + 1 - nxt, b, j] = h0[b, j]
                        cs[t + 1 - nxt, b, j] = c_prev
                cuda.syncthreads()
            grid.sync()

    return lstm_forward_staged


@functools.cache
def lstm_backward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)
    CH = kc * KS
    NCH = max(1, -(-KN // kc))

    @cuda.jit
    def lstm_backward_staged(gates, cs, W_hh, dout, dh_n, dc, dG, dh0, part, norms, reverse, tiles_j, tiles_b):
        T, B, G = gates.shape
        H = cs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=cs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=cs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=cs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=cs.dtype)
        if KN:
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, G, H, False)

        for s in range(T + 1):
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                if s > 0:
                    for bb in range(BT):
                        acc[bb] = 0
                    for sl in range(NCH if KN else (G + CH - 1) // CH):
                        k0 = sl * CH
                        q = tid                               # 1a. the slab of dA_{t+1}, all threads
                        while q < BT * CH:
                            r = q // CH
                            col = q - r * CH
                            slab[r, col] = dG[nonneg(tp), nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, G - 1))]
                            q += NT
                        cuda.syncthreads()
                        for kl in range(kc):                  # 1b. this thread's k values in it
                            kk = sl * kc + kl
                            k = nonneg(ty + kk * KS)
                            if k < G:
                                w = w_own[kk] if KN else W_hh[k, jc]
                                kin = nonneg(ty + kl * KS)
                                for bb in range(BT):
                                    acc[bb] += slab[bb, kin] * w
                        cuda.syncthreads()
                    for bb in range(BT):
                        red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                sq = 0.0
                for bb in range(ty, BT, KS):
                    b = b0 + bb
                    if b < B and j < H:
                        if s == 0:
                            dh = dh_n[b, j]
                        else:
                            dh = slice_sum(red, bb, tx)
                        if s == T:
                            dh0[b, j] = dh
                        else:
                            dhv = lstm.gate_gradients(gates, cs, dout, dc, dG, t, nxt, b, j, H, dh)
                            sq += dhv * dhv
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()
        if cuda.blockIdx.x == 0:
            norms_from_parts(part, norms, tid, NT)

    return lstm_backward_staged


@functools.cache
def gru_forward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, 3 * BT, JT)
    OWN = max(1, 3 * KN)
    NT = JT * KS
    CH = kc * KS
    NCH = max(1, -(-KN // kc))

    @cuda.jit
    def gru_forward_staged(gates, hns, b_ih, b_hh, W, hs, h0, reverse, tiles_j, tiles_b):
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=hs.dtype)
        acc = cuda.local.array((3, BT), dtype=hs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:
            keep_weights(w_own, W, KN, KS, JT, tiles_j, 3, H, H, H, True)

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            next_h = hs[t + nxt]
            a = gates[t]
            hn = hns[t]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                b = b0 + ty
                jc = nonneg(min(j, H - 1))
                bc = nonneg(min(b, B - 1))
                x_r = a[bc, jc] + b_ih[jc]
                x_z = a[bc, H + jc] + b_ih[H + jc]
                x_n = a[bc, 2 * H + jc] + b_ih[2 * H + jc]
                bh_r = b_hh[jc]
                bh_z = b_hh[H + jc]
                bh_n = b_hh[2 * H + jc]
                h_prev = prev_h[bc, jc]
                for bb in range(BT):
                    for g in range(3):
                        acc[g, bb] = 0
                for sl in range(NCH if KN else (H + CH - 1) // CH):
                    k0 = sl * CH
                    q = tid
                    while q < BT * CH:
                        r = q // CH
                        col = q - r * CH
                        slab[r, col] = prev_h[nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, H - 1))]
                        q += NT
                    cuda.syncthreads()
                    for kl in range(kc):
                        kk = sl * kc + kl
                        k = nonneg(ty + kk * KS)
                        if k < H:
                            kin = nonneg(ty + kl * KS)
                            for g in range(3):
                                w = w_own[g * KN + kk] if KN else W[k, g * H + jc]
                                for bb in range(BT):
                                    acc[g, bb] += slab[bb, kin] * w
                    cuda.syncthreads()
                for g in range(3):
                    for bb in range(BT):
                        red[ty, g * BT + bb, tx] = acc[g, bb]
                cuda.syncthreads()
                if ty < BT and b < B and j < H:
                    hh_r = slice_sum(red, ty, tx)
                    hh_z = slice_sum(red, BT + ty, tx)
                    hh_n = slice_sum(red, 2 * BT + ty, tx)
                    r = sigmoid(x_r + hh_r + bh_r)
                    z = sigmoid(x_z + hh_z + bh_z)
                    hn_v = hh_n + bh_n
                    n = math.tanh(x_n + r * hn_v)
                    next_h[b, j] = (1 - z) * n + z * h_prev
                    a[b, j] = r
                    a[b, H + j] = z
                    a[b, 2 * H + j] = n
                    hn[b, j] = hn_v
                    if s == 0:
                        hs[t + 1 - nxt, b, j] = h_prev
                cuda.syncthreads()
            grid.sync()

    return gru_forward_staged


@functools.cache
def gru_backward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)
    CH = kc * KS
    NCH = max(1, -(-KN // kc))

    @cuda.jit
    def gru_backward_staged(gates, hns, hs, W_hh, dout, dh_n, dhz, dGx, dGh, dh0, part, norms, reverse,
                            tiles_j, tiles_b):
        T, B, G = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=hs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, G, H, False)

        for s in range(T + 1):
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                if s > 0:
                    for bb in range(BT):
                        acc[bb] = 0
                    for sl in range(NCH if KN else (G + CH - 1) // CH):
                        k0 = sl * CH
                        q = tid
                        while q < BT * CH:
                            r = q // CH
                            col = q - r * CH
                            slab[r, col] = dGh[nonneg(tp), nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, G - 1))]
                            q += NT
                        cuda.syncthreads()
                        for kl in range(kc):
                            kk = sl * kc + kl
                            k = nonneg(ty + kk * KS)
                            if k < G:
                                w = w_own[kk] if KN else W_hh[k, jc]
                                kin = nonneg(ty + kl * KS)
                                for bb in range(BT):
                                    acc[bb] += slab[bb, kin] * w
                        cuda.syncthreads()
                    for bb in range(BT):
                        red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                sq = 0.0
                for bb in range(ty, BT, KS):
                    b = b0 + bb
                    if b < B and j < H:
                        if s == 0:
                            dh = dh_n[b, j]
                        else:
                            rec = slice_sum(red, bb, tx)
                            dh = dhz[b, j] + rec
                        if s == T:
                            dh0[b, j] = dh
                        else:
                            dhv = gru.gate_gradients(gates, hns, hs, dout, dGx, dGh, dhz, t, nxt, b, j, H, dh)
                            sq += dhv * dhv
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()
        if cuda.blockIdx.x == 0:
            norms_from_parts(part, norms, tid, NT)

    return gru_backward_staged


@functools.cache
def rnn_forward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, BT, JT)
    OWN = max(1, KN)
    NT = JT * KS
    CH = kc * KS
    NCH = max(1, -(-KN // kc))

    @cuda.jit
    def rnn_forward_staged(xa, b_ih, b_hh, W, hs, h0, reverse, use_relu, tiles_j, tiles_b):
        T, B, H = xa.shape
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=hs.dtype)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:
            keep_weights(w_own, W, KN, KS, JT, tiles_j, 1, 0, H, H, True)

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            next_h = hs[t + nxt]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                b = b0 + ty
                jc = nonneg(min(j, H - 1))
                bc = nonneg(min(b, B - 1))
                x_a = xa[t, bc, jc] + (b_ih[jc] + b_hh[jc])
                for bb in range(BT):
                    acc[bb] = 0
                for sl in range(NCH if KN else (H + CH - 1) // CH):
                    k0 = sl * CH
                    q = tid
                    while q < BT * CH:
                        r = q // CH
                        col = q - r * CH
                        slab[r, col] = prev_h[nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, H - 1))]
                        q += NT
                    cuda.syncthreads()
                    for kl in range(kc):
                        kk = sl * kc + kl
                        k = nonneg(ty + kk * KS)
                        if k < H:
                            w = w_own[kk] if KN else W[k, jc]
                            kin = nonneg(ty + kl * KS)
                            for bb in range(BT):
                                acc[bb] += slab[bb, kin] * w
                    cuda.syncthreads()
                for bb in range(BT):
                    red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                if ty < BT and b < B and j < H:
                    hh = slice_sum(red, ty, tx)
                    v = x_a + hh
                    next_h[b, j] = max(v, 0) if use_relu else math.tanh(v)
                    if s == 0:
                        hs[t + 1 - nxt, b, j] = h0[b, j]
                cuda.syncthreads()
            grid.sync()

    return rnn_forward_staged


@functools.cache
def rnn_backward_kernel(JT, KS, BT, KN, kc=KC):
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)
    CH = kc * KS
    NCH = max(1, -(-KN // kc))

    @cuda.jit
    def rnn_backward_staged(hs, W_hh, dout, dh_n, dG, dh0, part, norms, reverse, use_relu, tiles_j, tiles_b):
        T, B, H = dout.shape
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array((BT, CH), dtype=hs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, H, H, False)

        for s in range(T + 1):
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                if s > 0:
                    for bb in range(BT):
                        acc[bb] = 0
                    for sl in range(NCH if KN else (H + CH - 1) // CH):
                        k0 = sl * CH
                        q = tid
                        while q < BT * CH:
                            r = q // CH
                            col = q - r * CH
                            slab[r, col] = dG[nonneg(tp), nonneg(min(b0 + r, B - 1)), nonneg(min(k0 + col, H - 1))]
                            q += NT
                        cuda.syncthreads()
                        for kl in range(kc):
                            kk = sl * kc + kl
                            k = nonneg(ty + kk * KS)
                            if k < H:
                                w = w_own[kk] if KN else W_hh[k, jc]
                                kin = nonneg(ty + kl * KS)
                                for bb in range(BT):
                                    acc[bb] += slab[bb, kin] * w
                        cuda.syncthreads()
                    for bb in range(BT):
                        red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                sq = 0.0
                for bb in range(ty, BT, KS):
                    b = b0 + bb
                    if b < B and j < H:
                        if s == 0:
                            dh = dh_n[b, j]
                        else:
                            dh = slice_sum(red, bb, tx)
                        if s == T:
                            dh0[b, j] = dh
                        else:
                            dhv = rnn.gate_gradients(hs, dout, dG, t, nxt, b, j, dh, use_relu)
                            sq += dhv * dhv
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()
        if cuda.blockIdx.x == 0:
            norms_from_parts(part, norms, tid, NT)

    return rnn_backward_staged


KERNELS = {"lstm": (lstm, lstm_forward_kernel, lstm_backward_kernel),
           "gru": (gru, gru_forward_kernel, gru_backward_kernel),
           "rnn": (rnn, rnn_forward_kernel, rnn_backward_kernel)}


@contextlib.contextmanager
def staged(cell="lstm", forward=True, backward=True, kc=KC):
    """Run the cell module's layer calls with the staged kernels (its persistent, split-K path)."""
    module, fwd, bwd = KERNELS[cell]
    old = module._forward_kernel, module._backward_kernel
    if forward:
        module._forward_kernel = functools.partial(fwd, kc=kc)
    if backward:
        module._backward_kernel = functools.partial(bwd, kc=kc)
    try:
        yield
    finally:
        module._forward_kernel, module._backward_kernel = old
