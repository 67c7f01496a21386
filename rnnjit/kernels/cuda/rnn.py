"""The vanilla (Elman) recurrent network on the GPU: the CUDA twin of ``rnnjit/kernels/rnn.py``.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        act = tanh or relu

Backward, with dh the total gradient reaching h_t:

    da = dh * act'(a_t)        tanh'(a) = 1 - h_t^2        relu'(a) = [h_t > 0]
    dx_t = da W_ih      dh_{t-1} = da W_hh      dW_ih += da^T x_t      dW_hh += da^T h_{t-1}

Same signatures and return values as the CPU ``rnn_forward`` / ``rnn_backward``, same state
layout (``hs`` of T + 1 rows, ``reverse``), but device arrays in and out.

How the work is split: exactly as in ``lstm.py`` (read that header first), with one gate block.
Forward: one GEMM for the input projections of all steps (``xa``), then ONE persistent
cooperative kernel for the time loop (per step: split-K recurrent product per tile of JT units x
BT rows, partial sums meet in shared memory, the activation, ``grid.sync()``; step 0 reads h0
and stores it as the first row of ``hs``). Backward: ONE persistent kernel in reverse (per step:
dh_t = da_{t+1} W_hh for the tile's units, then da_t = dh * act', stored for the GEMMs;
``grid.sync()``; at the end, block 0 turns the tiles' sums of squares into ``norms``), then dx,
dW_ih, dW_hh as three big GEMMs and db as column sums. Where a thread's k loop is long
(``launch.stage_slabs``), both kernels first copy the rows of their operand (h_{t-1}, da_{t+1})
that the tile needs into shared memory, a slab at a time (an H200: 0.63x and 0.58x the training
time at B = 32 and 64, H = 512).

Large batches (``stepgemm.py``): the same two persistent launches, with each step a
register-tiled product (``rnn_forward_gemm``, ``rnn_backward_gemm``: 64 batch rows x 32 units a
tile, each thread 4 rows x 2 units) before the activation, chosen when their tiles fill the GPU
(``launch.use_step_gemm``): at B = 256, H = 1024 an H200 ran the forward in 0.22x and the
training step in 0.30x the split-K kernels' time (6.1 and 16.4 ms; cuDNN 4.8 and 12.3).
"""

import functools
import math

import numpy as np
from numba import cuda

from ..checks import check_backward_host, check_forward_host
from .gemm import column_sums, gemm, transpose
from .graphs import copy
from .ids import nonneg
from .launch import (check, launch_persistent, launch_step_gemm, own_weights, plan, stage_slabs, step_gemm_plan,
                     use_step_gemm)
from .stepgemm import BACKWARD_UNITS
from .stepgemm import rnn_backward_gemm_kernel as _backward_gemm_kernel
from .stepgemm import rnn_forward_gemm_kernel as _forward_gemm_kernel
from .tile import keep_weights, load_slab, norms_from_parts, slice_sum, store_tile_part, tile_origin


@cuda.jit(device=True, inline="always")
def gate_gradients(hs, dout, dG, t, nxt, b, j, dh, use_relu):
    """Step t of the backward for (b, j), the equations of the module docstring: from dh (what
    reaches h_t from step t + 1) and dout, writes da_t = dh * act'(a_t) into dG; returns the
    total dL/dh_t (for ``norms``)."""
    t = nonneg(t)
    dhv = dh + dout[t, b, j]
    h = hs[t + nxt, b, j]
    if use_relu:
        dG[t, b, j] = dhv if h > 0 else 0
    else:
        dG[t, b, j] = dhv * (1 - h * h)
    return dhv


@functools.cache
def _forward_kernel(JT, KS, BT, KN, KC=0):
    """The persistent forward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights for the whole loop; with KC > 0 the block stages h_{t-1}
    in shared memory, slabs of KC * KS columns (``launch.py``)."""
    RED = (KS, BT, JT)
    OWN = max(1, KN)
    NT = JT * KS
    CH = KC * KS                                  # columns of a slab
    SLAB = (BT, CH) if KC else (1, 1)
    SLABS = max(1, -(-KN // KC)) if KC else 0     # slabs a step when the weights are kept

    @cuda.jit(cache=True)
    def rnn_forward_persistent(xa, b_ih, b_hh, W, hs, h0, reverse, use_relu, tiles_j, tiles_b):
        # W: W_hh (H, H) when KN > 0, read once into w_own; else W_hh^T, read at every step (the
        # transpose makes a warp's reads of neighbouring units neighbouring addresses)
        T, B, H = xa.shape
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array(SLAB, dtype=hs.dtype)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:                                        # the weights this thread multiplies at every step, once
            keep_weights(w_own, W, KN, KS, JT, tiles_j, 1, 0, H, H, True)

        for s in range(T):
            t = T - 1 - s if reverse else s
            prev_h = h0 if s == 0 else hs[t + 1 - nxt]
            next_h = hs[t + nxt]
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                b = b0 + ty                           # the batch row of this thread's activation
                jc = nonneg(min(j, H - 1))
                # 0. the input projection + biases, loaded first so that its latency overlaps
                #    the product
                x_a = xa[t, nonneg(min(b, B - 1)), jc] + (b_ih[jc] + b_hh[jc])
                for bb in range(BT):
                    rows[bb] = nonneg(min(b0 + bb, B - 1))
                    acc[bb] = 0
                # 1. this thread's k-slice of the recurrent GEMM h_{t-1} W_hh^T
                if KC:                                # from slabs of h_{t-1} staged in shared memory
                    for sl in range(SLABS if KN else (H + CH - 1) // CH):
                        load_slab(slab, prev_h, b0, B, sl * CH, H, tid, NT)
                        for kl in range(KC):
                            kk = sl * KC + kl
                            k = nonneg(ty + kk * KS)
                            if k < H:
                                w = w_own[kk] if KN else W[k, jc]
                                kin = nonneg(ty + kl * KS)
                                for bb in range(BT):
                                    acc[bb] += slab[bb, kin] * w
                        cuda.syncthreads()            # the next slab overwrites this one
                else:                                 # from global memory
                    for kk in range(KN if KN else (H - ty + KS - 1) // KS):
                        k = nonneg(ty + kk * KS)
                        if k < H:
                            w = w_own[kk] if KN else W[k, jc]
                            for bb in range(BT):
                                acc[bb] += prev_h[rows[bb], k] * w
                # 2. the KS slices meet in shared memory
                for bb in range(BT):
                    red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                # 3. the activation of unit j, batch row b
                if ty < BT and b < B and j < H:
                    hh = slice_sum(red, ty, tx)
                    v = x_a + hh
                    next_h[b, j] = max(v, 0) if use_relu else math.tanh(v)
                    if s == 0:
                        hs[t + 1 - nxt, b, j] = h0[b, j]   # the state stack starts with h0
                cuda.syncthreads()
            grid.sync()

    return rnn_forward_persistent


@functools.cache
def _backward_kernel(JT, KS, BT, KN, KC=0):
    """The persistent backward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights for the whole loop; with KC > 0 the block stages da_{t+1}
    in shared memory, slabs of KC * KS columns (``launch.py``)."""
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)
    CH = KC * KS
    SLAB = (BT, CH) if KC else (1, 1)
    SLABS = max(1, -(-KN // KC)) if KC else 0

    @cuda.jit(cache=True)
    def rnn_backward_persistent(hs, W_hh, dout, dh_n, dG, dh0, part, norms, reverse, use_relu, tiles_j, tiles_b):
        T, B, H = dout.shape
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array(SLAB, dtype=hs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:                                        # the weights this thread multiplies at every step, once
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, H, H, False)

        for s in range(T + 1):
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                # 1. this thread's k-slice of dh_t = da_{t+1} W_hh
                if s > 0:
                    for bb in range(BT):
                        rows[bb] = nonneg(min(b0 + bb, B - 1))
                        acc[bb] = 0
                    if KC:                            # from slabs of da_{t+1} staged in shared memory
                        for sl in range(SLABS if KN else (H + CH - 1) // CH):
                            load_slab(slab, dG[nonneg(tp)], b0, B, sl * CH, H, tid, NT)
                            for kl in range(KC):
                                kk = sl * KC + kl
                                k = nonneg(ty + kk * KS)
                                if k < H:
                                    w = w_own[kk] if KN else W_hh[k, jc]
                                    kin = nonneg(ty + kl * KS)
                                    for bb in range(BT):
                                        acc[bb] += slab[bb, kin] * w
                            cuda.syncthreads()        # the next slab overwrites this one
                    else:                             # from global memory
                        for kk in range(KN if KN else (H - ty + KS - 1) // KS):
                            k = nonneg(ty + kk * KS)
                            if k < H:
                                w = w_own[kk] if KN else W_hh[k, jc]
                                for bb in range(BT):
                                    acc[bb] += dG[tp, rows[bb], k] * w
                    for bb in range(BT):
                        red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                # 2. da_t = dh * act' for unit j, batch rows b0 + bb
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
                            dhv = gate_gradients(hs, dout, dG, t, nxt, b, j, dh, use_relu)
                            sq += dhv * dhv
                # 3. this tile's share of norms[t]
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()
        if cuda.blockIdx.x == 0:                      # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return rnn_backward_persistent


def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse, use_relu):
    """Run the network over a sequence (device arrays in and out). Returns hs (T+1, B, H)."""
    dtype = check("rnn_forward", x, h0, W_ih, W_hh, b_ih, b_hh)
    check_forward_host("rnn_forward", 1, x, h0, None, W_ih, W_hh, b_ih, b_hh)
    T, B, I = x.shape
    H = h0.shape[1]
    hs = cuda.device_array((T + 1, B, H), dtype)
    if T == 0:
        copy(hs[0], h0)
        return hs
    xa = cuda.device_array((T, B, H), dtype)
    gemm(x.reshape(T * B, I), W_ih, trans_b=True, out=xa.reshape(T * B, H))  # inputs of all steps
    if use_step_gemm(B, H):
        launch_step_gemm(_forward_gemm_kernel, step_gemm_plan(B, H, BACKWARD_UNITS), xa, b_ih, b_hh,
                         transpose(W_hh), hs, h0, bool(reverse), bool(use_relu))
        return hs
    p = plan(B, H, dtype)
    kc = stage_slabs(p, H)
    launch_persistent(lambda kn: _forward_kernel(p.jt, p.ks, p.bt, kn, kc), p, own_weights(p, H, 1),
                      xa, b_ih, b_hh, W_hh, hs, h0, bool(reverse), bool(use_relu), p.tiles_j, p.tiles_b,
                      unkept=lambda a: a[:3] + (transpose(W_hh),) + a[4:])
    return hs


def rnn_backward(x, W_ih, W_hh, hs, dout, dh_n, reverse, use_relu, into=None):
    """Backpropagation through time for ``rnn_forward`` (device arrays in and out).

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep (a float64 device array). ``into``: as in ``lstm_backward``.
    """
    dtype = check("rnn_backward", x, W_ih, W_hh, hs, dout, dh_n)
    check_backward_host("rnn_backward", 1, x, W_ih, W_hh, hs, None, None, None, dout, dh_n, None, into)
    T, B, I = x.shape
    H = hs.shape[2]
    nxt = 0 if reverse else 1
    p = plan(B, H, dtype)
    dh0, dW_ih, dW_hh, db_ih, db_hh, norms = into or (None,) * 6
    dG = cuda.device_array((T, B, H), dtype)
    dh0 = cuda.device_array((B, H), dtype) if dh0 is None else dh0
    norms = cuda.device_array(T, np.float64) if norms is None else norms
    if use_step_gemm(B, H):
        q = step_gemm_plan(B, H, BACKWARD_UNITS)
        part = cuda.device_array((T, q.tiles), np.float64)
        launch_step_gemm(_backward_gemm_kernel, q, hs, W_hh, dout, dh_n, dG, dh0, part, norms, bool(reverse),
                         bool(use_relu))
    else:
        part = cuda.device_array((T, p.tiles), np.float64)
        kc = stage_slabs(p, H)
        launch_persistent(lambda kn: _backward_kernel(p.jt, p.ks, p.bt, kn, kc), p, own_weights(p, H, 1),
                          hs, W_hh, dout, dh_n, dG, dh0, part, norms, bool(reverse), bool(use_relu), p.tiles_j,
                          p.tiles_b)

    dG2 = dG.reshape(T * B, H)
    dx = gemm(dG2, W_ih).reshape(T, B, I)
    dW_ih = gemm(dG2, x.reshape(T * B, I), trans_a=True, out=dW_ih)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = gemm(dG2, prev_hs.reshape(T * B, H), trans_a=True, out=dW_hh)
    db_ih, db_hh = column_sums(dG2, out=db_ih, also=db_hh, pair=True)   # both biases: the same gradient
    return dx, dh0, dW_ih, dW_hh, db_ih, db_hh, norms
