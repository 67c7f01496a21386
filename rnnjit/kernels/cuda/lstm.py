"""Long short-term memory on the GPU: the CUDA twin of ``rnnjit/kernels/lstm.py``.

Same equations (PyTorch's formulation, gate order i, f, g, o):

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)      candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Backward, with dh and dc the total gradients reaching h_t and c_t:

    do = dh * tanh(c_t)
    dc = dc + dh * o_t * (1 - tanh(c_t)^2)
    di = dc * g_t      df = dc * c_{t-1}      dg = dc * i_t      dc_{t-1} = dc * f_t
    da = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]       (pre-activation gates)
    dx_t = da W_ih      dh_{t-1} = da W_hh      dW_ih += da^T x_t      dW_hh += da^T h_{t-1}

Same signatures and return values as the CPU ``lstm_forward`` / ``lstm_backward``, same state
layout (``hs`` and ``cs`` of T + 1 rows, ``reverse``), but device arrays in and out.

How the work is split (see ``launch.py`` for the tiles, ``gemm.py`` for the products):

forward
  1. ``gemm``: gates = X W_ih^T for all T*B rows at once (one launch, tiled shared-memory GEMM).
  2. ``lstm_forward_persistent``: ONE cooperative launch runs the whole time loop. Per step,
     each tile (JT units x BT batch rows, all four gates) computes its slice of
     h_{t-1} W_hh^T split over KS k-slices, meets in shared memory, does the gate math above,
     writes h_t, c_t and the activated gates; then the whole grid waits at ``grid.sync()``
     because step t + 1 reads every unit of h_t. Step 0 reads h0 and c0, and stores them as the
     first rows of ``hs`` and ``cs``. When they are few (H <= 1024 at B = 1, 512 when the batch
     spans several tiles: ``launch.own_weights``), each thread loads its 4 KN weights of W_hh
     once, before the loop, and keeps them (``w_own``); otherwise the threads read them at every
     step from W_hh^T (H, 4H), a transposed copy (``transpose``) in which threads of
     neighbouring units read neighbouring addresses. Where each thread's k loop is long
     (``launch.stage_slabs``: H = 512 at B = 32, say), the block first copies the rows of
     h_{t-1} its tile needs into shared memory, a slab of columns at a time, and the loop reads
     them there (0.63-0.75x the forward's time at B = 32, H = 512 on an H200).
backward
  1. ``lstm_backward_persistent``: ONE cooperative launch runs the time loop in reverse. Per
     step, each tile first finishes dh_t = dA_{t+1} W_hh for its units (split over KS slices
     of the 4H-long k axis, reading the dA row the whole grid wrote the step before), then does
     the gate math, writes dA_t (the per-step gate gradients, kept for the GEMMs) and its
     tile's sum of dh^2 for ``norms``; ``grid.sync()``. One last pass forms dh0, while block 0
     adds up the tiles' sums into ``norms``. The dA rows are staged in shared memory as the
     forward's h_{t-1} is, where the loop is long and a tile holds 8 rows (4H values of k:
     H = 128 from B = 65 on).
  2. ``gemm`` three times and ``column_sums``: dx = dA W_ih, dW_ih = dA^T X,
     dW_hh = dA^T H_prev, db = the column sums of dA, each over all T*B rows at once.

large batches (``launch.use_step_gemm``: when the tiles below fill the GPU, B = 256 and H = 1024
  say), the same two persistent launches with other kernels inside: at that size one step is a
  real matrix product (B x H times H x 4H), and splitting its k axis over 32 thread slices that
  then meet in shared memory wastes most of the work. ``lstm_forward_gemm`` (``stepgemm.py``)
  gives each tile 64 batch rows x 16 units (all four gates), each thread four rows of one unit, and walks k a
  16-wide slab at a time through shared memory, as ``gemm.py`` does; the thread then holds its
  unit's four gate sums and does the gate math in registers. ``lstm_backward_gemm`` does the
  same for dh_t = dA_{t+1} W_hh (64 rows x 32 units a tile, k over 4H), then the gate math above.
  Measured on an H200 at B = 256, H = 1024: 0.52x the forward and 0.38x the training step of the
  split-K kernels (22.1 and 61.7 ms; cuDNN 10.6 and 31.4); slower when its tiles are fewer than
  the multiprocessors.

Precision: the matrix products accumulate in the input dtype (float32 or float64), the gate
math follows the CPU kernel expression for expression (see ``activations.py``).
"""

import functools
import math

import numpy as np
from numba import cuda

from ..checks import check_backward_host, check_forward_host
from .activations import sigmoid
from .gemm import column_sums, gemm, transpose
from .graphs import copy
from .ids import nonneg
from .launch import (check, launch_persistent, launch_step_gemm, own_weights, plan, stage_slabs, step_gemm_plan,
                     use_step_gemm)
from .stepgemm import BACKWARD_UNITS
from .stepgemm import lstm_backward_gemm_kernel as _backward_gemm_kernel
from .stepgemm import lstm_forward_gemm_kernel as _forward_gemm_kernel
from .tile import keep_weights, load_slab, norms_from_parts, slice_sum, store_tile_part, tile_origin


@cuda.jit(device=True, inline="always")
def gate_gradients(gates, cs, dout, dc, dG, t, nxt, b, j, H, dh):
    """Step t of the backward for (b, j), the equations of the module docstring: from dh (what
    reaches h_t from step t + 1), dout and the running dc, writes the four pre-activation gate
    gradients dA_t and dc_{t-1} (into ``dc``); returns the total dL/dh_t (for ``norms``)."""
    t = nonneg(t)
    i = gates[t, b, j]
    f = gates[t, b, H + j]
    g = gates[t, b, 2 * H + j]
    o = gates[t, b, 3 * H + j]
    dhv = dh + dout[t, b, j]
    tanh_c = math.tanh(cs[t + nxt, b, j])
    dcv = dc[b, j] + dhv * o * (1 - tanh_c * tanh_c)
    dG[t, b, j] = dcv * g * i * (1 - i)
    dG[t, b, H + j] = dcv * cs[t + 1 - nxt, b, j] * f * (1 - f)
    dG[t, b, 2 * H + j] = dcv * i * (1 - g * g)
    dG[t, b, 3 * H + j] = dhv * tanh_c * o * (1 - o)
    dc[b, j] = dcv * f
    return dhv


@functools.cache
def _forward_kernel(JT, KS, BT, KN, KC=0):
    """The persistent forward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights per gate for the whole loop; with KC > 0 the block stages
    h_{t-1} in shared memory, slabs of KC * KS columns (``launch.py``)."""
    RED = (KS, 4 * BT, JT)   # partial sums: k-slice, (gate, row), unit
    OWN = max(1, 4 * KN)
    NT = JT * KS
    CH = KC * KS                                  # columns of a slab
    SLAB = (BT, CH) if KC else (1, 1)
    SLABS = max(1, -(-KN // KC)) if KC else 0     # slabs a step when the weights are kept

    @cuda.jit(cache=True)
    def lstm_forward_persistent(gates, b_ih, b_hh, W, hs, cs, h0, c0, reverse, tiles_j, tiles_b):
        # W: W_hh (4H, H) when KN > 0, read once into w_own; else W_hh^T (H, 4H), read every step
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)    # unit within the tile
        ty = nonneg(cuda.threadIdx.y)    # k-slice (then batch row for the gate math)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        slab = cuda.shared.array(SLAB, dtype=hs.dtype)
        acc = cuda.local.array((4, BT), dtype=hs.dtype)
        hk = cuda.local.array(BT, dtype=hs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1        # row of hs holding the state after step t is t + nxt
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:                           # the weights this thread multiplies at every step, once
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
                b = b0 + ty                           # the batch row of this thread's gate math
                jc = nonneg(min(j, H - 1))            # out-of-range lanes compute, never store
                bc = nonneg(min(b, B - 1))
                # 0. what the gate math needs besides h_{t-1} W_hh^T, loaded first so that its
                #    latency overlaps the product: input projections + biases, c_{t-1}
                x_i = a[bc, jc] + (b_ih[jc] + b_hh[jc])
                x_f = a[bc, H + jc] + (b_ih[H + jc] + b_hh[H + jc])
                x_g = a[bc, 2 * H + jc] + (b_ih[2 * H + jc] + b_hh[2 * H + jc])
                x_o = a[bc, 3 * H + jc] + (b_ih[3 * H + jc] + b_hh[3 * H + jc])
                c_prev = prev_c[bc, jc]
                for bb in range(BT):
                    rows[bb] = nonneg(min(b0 + bb, B - 1))
                    for g in range(4):
                        acc[g, bb] = 0
                # 1. this thread's k-slice of the recurrent GEMM h_{t-1} W_hh^T
                if KC:                           # from slabs of h_{t-1} staged in shared memory
                    for sl in range(SLABS if KN else (H + CH - 1) // CH):
                        load_slab(slab, prev_h, b0, B, sl * CH, H, tid, NT)
                        for kl in range(KC):
                            kk = sl * KC + kl
                            k = nonneg(ty + kk * KS)
                            if k < H:
                                kin = nonneg(ty + kl * KS)
                                for g in range(4):
                                    w = w_own[g * KN + kk] if KN else W[k, g * H + jc]
                                    for bb in range(BT):
                                        acc[g, bb] += slab[bb, kin] * w
                        cuda.syncthreads()       # the next slab overwrites this one
                else:                            # from global memory
                    for kk in range(KN if KN else (H - ty + KS - 1) // KS):
                        k = nonneg(ty + kk * KS)
                        if k < H:
                            for bb in range(BT):
                                hk[bb] = prev_h[rows[bb], k]
                            for g in range(4):
                                w = w_own[g * KN + kk] if KN else W[k, g * H + jc]
                                for bb in range(BT):
                                    acc[g, bb] += hk[bb] * w
                # 2. the KS slices meet in shared memory
                for g in range(4):
                    for bb in range(BT):
                        red[ty, g * BT + bb, tx] = acc[g, bb]
                cuda.syncthreads()
                # 3. the gate math of unit j, batch row b
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
                    if s == 0:                   # the state stacks start with h0 and c0
                        hs[t + 1 - nxt, b, j] = h0[b, j]
                        cs[t + 1 - nxt, b, j] = c_prev
                cuda.syncthreads()               # ``red`` is reused by the next tile
            grid.sync()                          # step t + 1 reads all of h_t

    return lstm_forward_persistent


@functools.cache
def _backward_kernel(JT, KS, BT, KN, KC=0):
    """The persistent backward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights (of the 4H-long k axis) for the whole loop; with KC > 0 the
    block stages dA_{t+1} in shared memory, slabs of KC * KS columns (``launch.py``)."""
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)
    CH = KC * KS
    SLAB = (BT, CH) if KC else (1, 1)
    SLABS = max(1, -(-KN // KC)) if KC else 0

    @cuda.jit(cache=True)
    def lstm_backward_persistent(gates, cs, W_hh, dout, dh_n, dc, dG, dh0, part, norms, reverse, tiles_j, tiles_b):
        T, B, G = gates.shape
        H = cs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=cs.dtype)
        slab = cuda.shared.array(SLAB, dtype=cs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=cs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=cs.dtype)
        if KN:                                   # the weights this thread multiplies at every step, once
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, G, H, False)

        for s in range(T + 1):                   # pass T only finishes dh0
            t = s if reverse else T - 1 - s      # the step whose gate gradients this pass makes
            tp = t - 1 if reverse else t + 1     # the step the previous pass made
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                # 1. this thread's k-slice of dh_t = dA_{t+1} W_hh (k runs over all 4H gates)
                if s > 0:
                    for bb in range(BT):
                        rows[bb] = nonneg(min(b0 + bb, B - 1))
                        acc[bb] = 0
                    if KC:                       # from slabs of dA_{t+1} staged in shared memory
                        for sl in range(SLABS if KN else (G + CH - 1) // CH):
                            load_slab(slab, dG[nonneg(tp)], b0, B, sl * CH, G, tid, NT)
                            for kl in range(KC):
                                kk = sl * KC + kl
                                k = nonneg(ty + kk * KS)
                                if k < G:
                                    w = w_own[kk] if KN else W_hh[k, jc]
                                    kin = nonneg(ty + kl * KS)
                                    for bb in range(BT):
                                        acc[bb] += slab[bb, kin] * w
                            cuda.syncthreads()   # the next slab overwrites this one
                    else:                        # from global memory
                        for kk in range(KN if KN else (G - ty + KS - 1) // KS):
                            k = nonneg(ty + kk * KS)
                            if k < G:
                                w = w_own[kk] if KN else W_hh[k, jc]
                                for bb in range(BT):
                                    acc[bb] += dG[tp, rows[bb], k] * w
                    for bb in range(BT):
                        red[ty, bb, tx] = acc[bb]
                cuda.syncthreads()
                # 2. the gate math of step t for unit j, batch rows b0 + bb
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
                            dhv = gate_gradients(gates, cs, dout, dc, dG, t, nxt, b, j, H, dh)
                            sq += dhv * dhv
                # 3. this tile's share of norms[t]: a tree sum over the block
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()                      # the next pass reads all of dA_t
        if cuda.blockIdx.x == 0:                 # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return lstm_backward_persistent


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse):
    """Run an LSTM over a sequence (device arrays in and out).

    Returns hs (T+1, B, H), cs (T+1, B, H) and gates (T, B, 4H), the activated i, f, g, o of
    every step (what backward needs).
    """
    dtype = check("lstm_forward", x, h0, c0, W_ih, W_hh, b_ih, b_hh)
    check_forward_host("lstm_forward", 4, x, h0, c0, W_ih, W_hh, b_ih, b_hh)
    T, B, I = x.shape
    H = h0.shape[1]
    G = 4 * H
    hs = cuda.device_array((T + 1, B, H), dtype)
    cs = cuda.device_array((T + 1, B, H), dtype)
    gates = cuda.device_array((T, B, G), dtype)
    if T == 0:
        copy(hs[0], h0)
        copy(cs[0], c0)
        return hs, cs, gates
    gemm(x.reshape(T * B, I), W_ih, trans_b=True, out=gates.reshape(T * B, G))  # inputs of all steps
    if use_step_gemm(B, H):
        launch_step_gemm(_forward_gemm_kernel, step_gemm_plan(B, H), gates, b_ih, b_hh, W_hh, hs, cs, h0, c0,
                         bool(reverse))
        return hs, cs, gates
    p = plan(B, H, dtype)
    kc = stage_slabs(p, H)
    launch_persistent(lambda kn: _forward_kernel(p.jt, p.ks, p.bt, kn, kc), p, own_weights(p, H, 4),
                      gates, b_ih, b_hh, W_hh, hs, cs, h0, c0, bool(reverse), p.tiles_j, p.tiles_b,
                      unkept=lambda a: a[:3] + (transpose(W_hh),) + a[4:])
    return hs, cs, gates


def lstm_backward(x, W_ih, W_hh, hs, cs, gates, dout, dh_n, dc_n, reverse, into=None):
    """Backpropagation through time for ``lstm_forward`` (device arrays in and out).

    dout (T, B, H) is dL/dh_t from above (the outputs), dh_n and dc_n the gradients of the
    final state. Returns dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2
    norm of the total dL/dh_t at every timestep (a float64 device array).
    ``into``: arrays to write the results after dx into, in the order they are returned (None for
    any: a new array), as a layer does with its own gradients and state stacks: no new arrays and
    no copies; the same arrays come back.
    """
    dtype = check("lstm_backward", x, W_ih, W_hh, hs, cs, gates, dout, dh_n, dc_n)
    check_backward_host("lstm_backward", 4, x, W_ih, W_hh, hs, cs, gates, None, dout, dh_n, dc_n, into)
    T, B, I = x.shape
    H = hs.shape[2]
    G = 4 * H
    nxt = 0 if reverse else 1
    p = plan(B, H, dtype)
    dh0, dc, dW_ih, dW_hh, db_ih, db_hh, norms = into or (None,) * 7
    dG = cuda.device_array((T, B, G), dtype)
    # dc_n, then dc_t backwards to dc0. (Reading dc_n in the kernel at the first step instead of
    # this copy went with a backward recurrence 1.7x slower at B=32, H=512 on the H200, 29.6 ->
    # 49.9 us a step, likely from the registers it took: measured once, not pinned down; the
    # copy is the version measured fast.)
    dc = cuda.device_array((B, H), dtype) if dc is None else dc
    copy(dc, dc_n)
    dh0 = cuda.device_array((B, H), dtype) if dh0 is None else dh0
    norms = cuda.device_array(T, np.float64) if norms is None else norms
    if use_step_gemm(B, H):
        q = step_gemm_plan(B, H, BACKWARD_UNITS)
        part = cuda.device_array((T, q.tiles), np.float64)
        launch_step_gemm(_backward_gemm_kernel, q, gates, cs, W_hh, dout, dh_n, dc, dG, dh0, part, norms,
                         bool(reverse))
    else:
        part = cuda.device_array((T, p.tiles), np.float64)
        kc = stage_slabs(p, G)
        launch_persistent(lambda kn: _backward_kernel(p.jt, p.ks, p.bt, kn, kc), p, own_weights(p, G, 1),
                          gates, cs, W_hh, dout, dh_n, dc, dG, dh0, part, norms, bool(reverse), p.tiles_j,
                          p.tiles_b)

    dG2 = dG.reshape(T * B, G)
    dx = gemm(dG2, W_ih).reshape(T, B, I)
    dW_ih = gemm(dG2, x.reshape(T * B, I), trans_a=True, out=dW_ih)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = gemm(dG2, prev_hs.reshape(T * B, H), trans_a=True, out=dW_hh)
    db_ih, db_hh = column_sums(dG2, out=db_ih, also=db_hh, pair=True)   # both biases: the same gradient
    return dx, dh0, dc, dW_ih, dW_hh, db_ih, db_hh, norms
