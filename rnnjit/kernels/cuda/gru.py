"""Gated recurrent unit on the GPU: the CUDA twin of ``rnnjit/kernels/gru.py``.

Same equations (PyTorch's formulation, gate order r, z, n; the reset gate multiplies the
projected previous state, bias included):

    r_t  = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
    z_t  = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
    hn_t = W_hn h_{t-1} + b_hn
    n_t  = tanh(W_in x_t + b_in + r_t * hn_t)                  candidate state
    h_t  = (1 - z_t) * n_t + z_t * h_{t-1}

Backward, with dh the total gradient reaching h_t:

    dn = dh * (1 - z)          dz = dh * (h_{t-1} - n)          dh_{t-1} = dh * z  + ...
    dn_pre = dn * (1 - n^2)    dr_pre = dn_pre * hn * r(1-r)    dz_pre = dz * z(1-z)
    input side:     dax = [dr_pre, dz_pre, dn_pre]         -> dx_t = dax W_ih, dW_ih += dax^T x_t
    recurrent side: dah = [dr_pre, dz_pre, dn_pre * r]     -> dh_{t-1} += dah W_hh, dW_hh += dah^T h_{t-1}

Same signatures and return values as the CPU ``gru_forward`` / ``gru_backward``, same state
layout (``hs`` of T + 1 rows, ``reverse``), but device arrays in and out.

How the work is split: exactly as in ``lstm.py`` (read that header first), with three gate
blocks instead of four. Forward: one GEMM for the input projections of all steps, then ONE
persistent cooperative kernel for the time loop (per step: split-K recurrent product per tile,
partial sums meet in shared memory, gate math, ``grid.sync()``; step 0 reads h0 and stores it as
the first row of ``hs``). Backward: ONE persistent kernel in reverse, which per step finishes
dh_t = dh_{t+1} z + dah_{t+1} W_hh for its units and then writes both gradient rows dax_t and
dah_t (they differ in the n block); the ``dh * z`` part is kept per (b, j) in a small buffer by
the thread that owns (b, j); at the end block 0 adds up ``norms``. Then dx, dW_ih (from dax),
dW_hh (from dah) as three big GEMMs, and the two bias gradients as column sums. The GRU reads
its operand from global memory in the k loop: staging it in shared memory, as the LSTM and the
RNN do where the loop is long (``launch.stage_slabs``), measured 0.99-1.05x its time on an H200
at B = 32-64, H = 512 (the prototype's run, cuda_check.py --staged, 2026-11-27).

Large batches: ``gru_forward_gemm`` and ``gru_backward_gemm`` run each step as a register-tiled
product instead (``stepgemm.py``; the LSTM's header says why), a thread owning the three gate sums
of one unit forward, chosen when their tiles fill the GPU (``launch.use_step_gemm``): at
B = 256, H = 1024 an H200 ran the forward in 0.23x and the training step in 0.29x the split-K
kernels' time (16.7 and 46.5 ms; cuDNN 9.6 and 27.4).
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
from .launch import check, launch_persistent, launch_step_gemm, own_weights, plan, step_gemm_plan, use_step_gemm
from .stepgemm import BACKWARD_UNITS
from .stepgemm import gru_backward_gemm_kernel as _backward_gemm_kernel
from .stepgemm import gru_forward_gemm_kernel as _forward_gemm_kernel
from .tile import keep_weights, norms_from_parts, slice_sum, store_tile_part, tile_origin


@cuda.jit(device=True, inline="always")
def gate_gradients(gates, hns, hs, dout, dGx, dGh, dhz, t, nxt, b, j, H, dh):
    """Step t of the backward for (b, j), the equations of the module docstring: from dh (what
    reaches h_t from step t + 1), dout, the gates and hn of step t, writes both gradient rows
    dax_t and dah_t and the dh * z part of dh_{t-1} (into ``dhz``); returns the total dL/dh_t
    (for ``norms``)."""
    t = nonneg(t)
    r = gates[t, b, j]
    z = gates[t, b, H + j]
    n = gates[t, b, 2 * H + j]
    dhv = dh + dout[t, b, j]
    dn_pre = dhv * (1 - z) * (1 - n * n)
    dr_pre = dn_pre * hns[t, b, j] * r * (1 - r)
    dz_pre = dhv * (hs[t + 1 - nxt, b, j] - n) * z * (1 - z)
    dGx[t, b, j] = dr_pre
    dGx[t, b, H + j] = dz_pre
    dGx[t, b, 2 * H + j] = dn_pre
    dGh[t, b, j] = dr_pre
    dGh[t, b, H + j] = dz_pre
    dGh[t, b, 2 * H + j] = dn_pre * r
    dhz[b, j] = dhv * z
    return dhv


@functools.cache
def _forward_kernel(JT, KS, BT, KN):
    """The persistent forward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights per gate for the whole loop (``launch.py``)."""
    RED = (KS, 3 * BT, JT)
    OWN = max(1, 3 * KN)

    @cuda.jit(cache=True)
    def gru_forward_persistent(gates, hns, b_ih, b_hh, W, hs, h0, reverse, tiles_j, tiles_b):
        # W: W_hh (3H, H) when KN > 0, read once into w_own; else W_hh^T (H, 3H), read every step
        T, B, _ = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        acc = cuda.local.array((3, BT), dtype=hs.dtype)
        hk = cuda.local.array(BT, dtype=hs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:                           # the weights this thread multiplies at every step, once
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
                b = b0 + ty                           # the batch row of this thread's gate math
                jc = nonneg(min(j, H - 1))
                bc = nonneg(min(b, B - 1))
                # 0. what the gate math needs besides h_{t-1} W_hh^T, loaded first so that its
                #    latency overlaps the product
                x_r = a[bc, jc] + b_ih[jc]
                x_z = a[bc, H + jc] + b_ih[H + jc]
                x_n = a[bc, 2 * H + jc] + b_ih[2 * H + jc]
                bh_r = b_hh[jc]
                bh_z = b_hh[H + jc]
                bh_n = b_hh[2 * H + jc]
                h_prev = prev_h[bc, jc]
                for bb in range(BT):
                    rows[bb] = nonneg(min(b0 + bb, B - 1))
                    for g in range(3):
                        acc[g, bb] = 0
                # 1. this thread's k-slice of the recurrent GEMM h_{t-1} W_hh^T
                for kk in range(KN if KN else (H - ty + KS - 1) // KS):
                    k = nonneg(ty + kk * KS)
                    if k < H:
                        for bb in range(BT):
                            hk[bb] = prev_h[rows[bb], k]
                        for g in range(3):
                            w = w_own[g * KN + kk] if KN else W[k, g * H + jc]
                            for bb in range(BT):
                                acc[g, bb] += hk[bb] * w
                # 2. the KS slices meet in shared memory
                for g in range(3):
                    for bb in range(BT):
                        red[ty, g * BT + bb, tx] = acc[g, bb]
                cuda.syncthreads()
                # 3. the gate math of unit j, batch row b
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
                    if s == 0:                   # the state stack starts with h0
                        hs[t + 1 - nxt, b, j] = h_prev
                cuda.syncthreads()
            grid.sync()

    return gru_forward_persistent


@functools.cache
def _backward_kernel(JT, KS, BT, KN):
    """The persistent backward kernel for tiles of JT units x BT rows, KS k-slices; with KN > 0
    each thread keeps its KN weights (of the 3H-long k axis) for the whole loop (``launch.py``)."""
    RED = (KS, BT, JT)
    NT = JT * KS
    OWN = max(1, KN)

    @cuda.jit(cache=True)
    def gru_backward_persistent(gates, hns, hs, W_hh, dout, dh_n, dhz, dGx, dGh, dh0, part, norms, reverse,
                                tiles_j, tiles_b):
        T, B, G = gates.shape
        H = hs.shape[2]
        tx = nonneg(cuda.threadIdx.x)
        ty = nonneg(cuda.threadIdx.y)
        tid = ty * JT + tx
        grid = cuda.cg.this_grid()
        red = cuda.shared.array(RED, dtype=hs.dtype)
        sqs = cuda.shared.array(NT, dtype=np.float64)
        acc = cuda.local.array(BT, dtype=hs.dtype)
        rows = cuda.local.array(BT, dtype=np.int64)
        nxt = 0 if reverse else 1
        w_own = cuda.local.array(OWN, dtype=hs.dtype)
        if KN:                           # the weights this thread multiplies at every step, once
            keep_weights(w_own, W_hh, KN, KS, JT, tiles_j, 1, 0, G, H, False)

        for s in range(T + 1):
            t = s if reverse else T - 1 - s
            tp = t - 1 if reverse else t + 1
            for tile in range(cuda.blockIdx.x, tiles_j * tiles_b, cuda.gridDim.x):
                j0, b0 = tile_origin(tile, tiles_j, JT, BT)
                j = j0 + tx
                jc = nonneg(min(j, H - 1))
                # 1. this thread's k-slice of dah_{t+1} W_hh (k runs over all 3H gates)
                if s > 0:
                    for bb in range(BT):
                        rows[bb] = nonneg(min(b0 + bb, B - 1))
                        acc[bb] = 0
                    for kk in range(KN if KN else (G - ty + KS - 1) // KS):
                        k = nonneg(ty + kk * KS)
                        if k < G:
                            w = w_own[kk] if KN else W_hh[k, jc]
                            for bb in range(BT):
                                acc[bb] += dGh[tp, rows[bb], k] * w
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
                            rec = slice_sum(red, bb, tx)
                            dh = dhz[b, j] + rec         # dh_t = dh_{t+1} z + dah W_hh
                        if s == T:
                            dh0[b, j] = dh
                        else:
                            dhv = gate_gradients(gates, hns, hs, dout, dGx, dGh, dhz, t, nxt, b, j, H, dh)
                            sq += dhv * dhv
                # 3. this tile's share of norms[t]
                store_tile_part(sqs, tid, NT, sq, part, t, tile, s < T)
            if s < T:
                grid.sync()
        if cuda.blockIdx.x == 0:                 # every tile's part was written before pass T
            norms_from_parts(part, norms, tid, NT)

    return gru_backward_persistent


def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, reverse):
    """Run a GRU over a sequence (device arrays in and out).

    Returns hs (T+1, B, H), gates (T, B, 3H) holding r, z, n of every step, and hns (T, B, H)
    holding W_hn h_{t-1} + b_hn (what backward needs).
    """
    dtype = check("gru_forward", x, h0, W_ih, W_hh, b_ih, b_hh)
    check_forward_host("gru_forward", 3, x, h0, None, W_ih, W_hh, b_ih, b_hh)
    T, B, I = x.shape
    H = h0.shape[1]
    G = 3 * H
    hs = cuda.device_array((T + 1, B, H), dtype)
    gates = cuda.device_array((T, B, G), dtype)
    hns = cuda.device_array((T, B, H), dtype)
    if T == 0:
        copy(hs[0], h0)
        return hs, gates, hns
    gemm(x.reshape(T * B, I), W_ih, trans_b=True, out=gates.reshape(T * B, G))  # inputs of all steps
    if use_step_gemm(B, H):
        launch_step_gemm(_forward_gemm_kernel, step_gemm_plan(B, H), gates, hns, b_ih, b_hh, W_hh, hs, h0,
                         bool(reverse))
        return hs, gates, hns
    p = plan(B, H, dtype)
    launch_persistent(functools.partial(_forward_kernel, p.jt, p.ks, p.bt), p, own_weights(p, H, 3),
                      gates, hns, b_ih, b_hh, W_hh, hs, h0, bool(reverse), p.tiles_j, p.tiles_b,
                      unkept=lambda a: a[:4] + (transpose(W_hh),) + a[5:])
    return hs, gates, hns


def gru_backward(x, W_ih, W_hh, hs, gates, hns, dout, dh_n, reverse, into=None):
    """Backpropagation through time for ``gru_forward`` (device arrays in and out).

    Returns dx, dh0, dW_ih, dW_hh, db_ih, db_hh and ``norms`` (T,), the L2 norm of the total
    dL/dh_t at every timestep (a float64 device array). ``into``: as in ``lstm_backward``.
    """
    dtype = check("gru_backward", x, W_ih, W_hh, hs, gates, hns, dout, dh_n)
    check_backward_host("gru_backward", 3, x, W_ih, W_hh, hs, None, gates, hns, dout, dh_n, None, into)
    T, B, I = x.shape
    H = hs.shape[2]
    G = 3 * H
    nxt = 0 if reverse else 1
    p = plan(B, H, dtype)
    dGx = cuda.device_array((T, B, G), dtype)
    dGh = cuda.device_array((T, B, G), dtype)
    dh0, dW_ih, dW_hh, db_ih, db_hh, norms = into or (None,) * 6
    dhz = cuda.device_array((B, H), dtype)
    dh0 = cuda.device_array((B, H), dtype) if dh0 is None else dh0
    norms = cuda.device_array(T, np.float64) if norms is None else norms
    if use_step_gemm(B, H):
        q = step_gemm_plan(B, H, BACKWARD_UNITS)
        part = cuda.device_array((T, q.tiles), np.float64)
        launch_step_gemm(_backward_gemm_kernel, q, gates, hns, hs, W_hh, dout, dh_n, dhz, dGx, dGh, dh0, part,
                         norms, bool(reverse))
    else:
        part = cuda.device_array((T, p.tiles), np.float64)
        launch_persistent(functools.partial(_backward_kernel, p.jt, p.ks, p.bt), p, own_weights(p, 3 * H, 1),
                          gates, hns, hs, W_hh, dout, dh_n, dhz, dGx, dGh, dh0, part, norms, bool(reverse),
                          p.tiles_j, p.tiles_b)

    dGx2 = dGx.reshape(T * B, G)
    dGh2 = dGh.reshape(T * B, G)
    dx = gemm(dGx2, W_ih).reshape(T, B, I)
    dW_ih = gemm(dGx2, x.reshape(T * B, I), trans_a=True, out=dW_ih)
    prev_hs = hs[1 - nxt:T + 1 - nxt]
    dW_hh = gemm(dGh2, prev_hs.reshape(T * B, H), trans_a=True, out=dW_hh)
    return dx, dh0, dW_ih, dW_hh, column_sums(dGx2, out=db_ih), column_sums(dGh2, out=db_hh), norms
