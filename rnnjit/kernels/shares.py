"""How a sequence kernel splits its batch over threads: each thread runs the whole time loop on
rows of its own.

The rows of a batch never meet inside a recurrence: row b's h_t depends on row b's input and
h_{t-1} only, and W_hh is read, never written. So with more than one of Numba's threads, a
recurrence can give each thread a share of the rows and let it run all T steps on them, with
one fork and one join for the whole sequence (``*_steps_on_threads`` in each cell's file).

The other way to use several threads is to split each step's product (``smallgemm``): a fork
and a join every step, and the gate math, on one thread, reads the gates the other cores have
just written, and the next step's product reads the h_t written there. At B = 32, H = 128
(LSTM, T = 64, one-hot input) a layer's forward took 2.5 ms on one thread and 2.6-2.8 on two
that way, and 1.3 on two with shares of the batch (Intel Xeon, 2 cores).

When: from B = 16 on (two shares of eight rows) while the packed W_hh is at most
MAX_SHARED_WEIGHT_BYTES, because every thread reads all of it every step and it should stay in
each core's L2 (1 MB: an LSTM up to H = 256, a GRU to 295, an RNN to 512). Beyond that, the
per-step split of the product gives each core its part of W_hh to keep instead. (With 8 MB
allowed, B = 32, T = 100 on two cores: a GRU at H = 512, 3 MB, trained in 81-86 ms against
98-105, and an LSTM at H = 512, 4 MB, in 104-122 against 113-123, too noisy to call; with more
cores all streaming W_hh from L3, the per-step split should win, so the limit stays at what L2
holds.)

Each of these parallel loops costs about 2.7 s of compiling. A parallel loop over a small
function takes 0.2 s, so the rest goes with the tree of functions these loops call (the
products): Numba links it into each caller, where, as far as I can tell, LLVM optimises it
again.

The results are the same to the bit whatever the thread count: shares start at multiples of
eight rows and the last one takes the rest, so every row goes through the same tiles of the
products as in one share (``_smallgemm.py``); the gate math is per row; and the norm of
dL/dh_t at each step is summed per unit of eight rows (``unit_sums``) and then over the units
in order, on any number of threads.
"""

import numpy as np
from numba import njit

from ._blas import sum_squares_of_sum
from ._smallgemm import num_threads, share_rows  # noqa: F401  (share_rows: the cells take it from here)

MAX_SHARED_WEIGHT_BYTES = 1 << 20


@njit(cache=True, nogil=True)
def batch_shares(B, T, weight_bytes, packed):
    """How many threads take a share of a batch of B rows for T steps: 1 (no split) unless the
    weights are packed, T >= 2, their packed size is at most MAX_SHARED_WEIGHT_BYTES and there
    are two units of eight rows or more."""
    if not packed or T < 2 or weight_bytes > MAX_SHARED_WEIGHT_BYTES:
        return 1
    return max(1, min(num_threads(), B // 8))


@njit(cache=True, nogil=True)
def norm_units(B):
    """Units of a batch's rows for the norms: rows 8u .. 8u + 7, the last unit to B."""
    return max(1, B // 8)


@njit(cache=True, nogil=True)
def unit_sums(X, Y, b0, b1, out):
    """out[u] = sum of (X + Y)^2 over the rows of unit u, for the units of rows b0 .. b1 - 1
    (X, Y (B, H); b0 and b1 from ``share_rows``, or 0 and B)."""
    B = X.shape[0]
    U = norm_units(B)
    u1 = U if b1 == B else b1 // 8
    for u in range(b0 // 8, u1):
        r1 = B if u == U - 1 else 8 * u + 8
        out[u] = sum_squares_of_sum(X[8 * u:r1], Y[8 * u:r1])


@njit(cache=True, nogil=True)
def norms_of_units(sums, norms):
    """norms[t] = sqrt(sum over u of sums[t, u]), the units added in order."""
    for t in range(sums.shape[0]):
        s = 0.0
        for u in range(sums.shape[1]):
            s += sums[t, u]
        norms[t] = np.sqrt(s)
