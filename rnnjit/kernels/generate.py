"""Generating text from a language model one character at a time, the whole loop compiled.

Sampling cannot batch over time: the input of each step is the character the step before drew.
Run from Python, each character is a trip through the layers' Python (shape checks, state
splitting, one kernel call per layer, the decoder, the draw): 30-50 us a character where the
arithmetic of a small model takes 1-5, which made rnnjit's sampling slower than a plain NumPy
loop at 32 of the 36 points of ``rnnjit bench``. ``generate`` runs the loop itself, for any
stack of one cell's layers, with B = 1:

    for each character c read (the prime's, then each one drawn):
        a_0 = table[c]                         the first layer's input part, W_ih e_c + b: a
                                               column of W_ih for one-hot input, W_ih E[c] for
                                               an embedding E
        for each layer l:                      (l > 0: a_l = W_ih^l h^{l-1} + b^l)
            a_l += W_hh^l h^l                  the recurrent part (the GRU keeps it apart:
            h^l (and c^l) <- cell(a_l, ...)     r multiplies W_hn h + b_hn)
        once the prime is read:
            z = W_dec h^{L-1} + b_dec          the decoder's scores
            c = draw(z)                        below

The draw is ``models/sampling.py``'s, as NumPy's ``Generator.choice`` makes it: s = (z - max z)
/ temperature, keeping the top_k largest (all if top_k is 0), p = exp(s) / sum, and with one
uniform number u the character is the first whose cumulative probability exceeds u (for
``argmax``, the first largest score). The uniform numbers come in drawn (``rng.random(n)``), so
the random stream is NumPy's.

The cells' own gate loops do the cell math (``rnn_cell_forward``, ``lstm_cell_forward``,
``gru_cell_forward``), and the products are the recurrent products' (``_smallgemm``): each weight
matrix transposed and packed once (``generation_weights``), then multiplied by one row with the
tiles made for a batch of one, every other character through the panels in the opposite order
(a W_hh larger than L2 is then partly still there). A plain loop over W's rows took 3.6 us for
W_hh h at H = 128 (LSTM) where the tiles take about 1.9; and the tiles are compiled already, for
the sequence kernels. The results are the sequence kernels' up to rounding, where those sum the
products in another order (chunks of steps, BLAS).

    w = generation_weights("lstm", W_ih, W_hh, b_ih, b_hh, W_dec, b_dec)   # lists by layer
    n = generate(w.cell, prime, *w.arrays, h, c, uniforms, temperature, top_k, argmax, stop, out)
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ._pool import num_threads
from ._smallgemm import pack_weights, smallgemm
from .checks import check_indices, check_rows
from .dense import copy_row
from .gru import gru_cell_forward, gru_input_bias
from .lstm import lstm_cell_forward
from .rnn import rnn_cell_forward

RNN_TANH, RNN_RELU, LSTM, GRU = 0, 1, 2, 3     # the ``cell`` codes


def cell_code(cell: str, nonlinearity: str = "tanh") -> int:
    """``generate``'s code for a cell name ('rnn' with its nonlinearity, 'lstm', 'gru')."""
    if cell == "rnn":
        return RNN_RELU if nonlinearity == "relu" else RNN_TANH
    return {"lstm": LSTM, "gru": GRU}[cell]


class GenerationWeights(NamedTuple):
    """A stack's weights as ``generate`` takes them: ``cell`` (its code) and ``arrays``, the
    seven arrays that follow the prime among its arguments."""
    cell: int
    arrays: tuple     # table, Wp_ih, b_in, Wp_hh, b_hn, Wp_dec, b_dec


def generation_weights(cell, W_ih, W_hh, b_ih, b_hh, W_dec, b_dec, embedding=None, nonlinearity="tanh"):
    """Arrange one cell's stacked layers and a decoder for ``generate``. W_ih, W_hh, b_ih and b_hh
    are lists by layer, in torch's shapes (b_ih and b_hh may be None: no bias); W_dec (V, H),
    b_dec (V,); ``embedding`` (V, E) when the characters go through an embedding, None for
    one-hot input (W_ih of layer 0 is then (G, V)). Returns:

        table (V, G)            layer 0's input part of each character, biases included
        Wp_ih (L-1, P, H, NR)   W_ih of layers 1.., transposed and packed (``pack_weights``)
        b_in (L, G)             each layer's input bias: b_ih + b_hh (the GRU: b_ih plus b_hr
                                and b_hz, ``gru_input_bias``); layer 0's is in the table too
        Wp_hh (L, P, H, NR)     W_hh of every layer, packed
        b_hn (L, H)             the GRU's b_hn (inside r * (W_hn h + b_hn)); zeros otherwise
        Wp_dec (Pd, H, NR)      the decoder, packed
        b_dec (V,)
    """
    code = cell_code(cell, nonlinearity)
    L = len(W_hh)
    G, H = W_hh[0].shape
    dt = W_hh[0].dtype
    b_in, b_hn = np.zeros((L, G), dt), np.zeros((L, H), dt)
    for k in range(L):
        if b_ih[k] is None:
            continue
        if code == GRU:
            b_in[k] = gru_input_bias(b_ih[k], b_hh[k])
            b_hn[k] = b_hh[k][2 * H:]
        else:
            b_in[k] = b_ih[k] + b_hh[k]
    inputs = W_ih[0].T if embedding is None else embedding @ W_ih[0].T
    table = np.ascontiguousarray(inputs + b_in[0], dt)
    Wp_hh = np.array([pack_weights(W_hh[k], True, True) for k in range(L)])
    Wp_ih = np.array([pack_weights(W_ih[k], True, True) for k in range(1, L)], dt).reshape((L - 1,) + Wp_hh.shape[1:])
    Wp_dec = pack_weights(np.ascontiguousarray(W_dec), True, True)
    return GenerationWeights(code, (table, Wp_ih, b_in, Wp_hh, b_hn, Wp_dec, np.ascontiguousarray(b_dec, dt)))


@njit(cache=True, nogil=True)
def kth_largest(s, k):
    """The k-th largest value of s (k >= 1): k passes that each find the largest value below the
    last one found, counting its copies (what ``np.sort(s)[len(s) - k]`` gives, without compiling
    a sort: a second of compiling for one index of V numbers)."""
    found = 0
    last = np.inf
    while True:
        best = -np.inf
        for v in range(s.shape[0]):
            if best < s[v] < last:
                best = s[v]
        copies = 0
        for v in range(s.shape[0]):
            if s[v] == best:
                copies += 1
        found += copies
        if found >= k or copies == 0:
            return best
        last = best


@njit(cache=True, nogil=True, error_model="numpy")
def draw(z, u, temperature, top_k, argmax, s):
    """A character from scores z (V,) and one uniform u in [0, 1): the first whose cumulative
    probability under softmax(s), s = (z - max z) / temperature (only the top_k largest if top_k
    > 0), exceeds u; or the first largest score when argmax. s (V,) float64 is workspace."""
    V = z.shape[0]
    best = 0
    for v in range(1, V):
        if z[v] > z[best]:
            best = v
    if argmax:
        return best
    zmax = np.float64(z[best])
    for v in range(V):
        s[v] = (np.float64(z[v]) - zmax) / temperature
    if 0 < top_k < V:
        cut = kth_largest(s, top_k)            # ties with it stay in
        for v in range(V):
            if s[v] < cut:
                s[v] = -np.inf
    total = 0.0
    for v in range(V):
        s[v] = np.exp(s[v])
        total += s[v]
    cum = 0.0
    for v in range(V):                          # p = exp(s) / total; cdf = cumsum(p) / cdf[-1]
        s[v] = s[v] / total
        cum += s[v]
        s[v] = cum
    for v in range(V):
        if s[v] / cum > u:
            return v
    return V - 1


def generate(cell, prime, table, Wp_ih, b_in, Wp_hh, b_hn, Wp_dec, b_dec, h, cs, uniforms, temperature, top_k,
             argmax, stop, out):
    """Read the characters of ``prime`` (one at least), then draw a character, read it, draw the
    next, ... up to out.shape[0] characters into out (int64), stopping after ``stop`` if drawn
    (-1: never). h and cs (L, H) hold each layer's state and are updated in place (cs: the LSTM's
    cell states; any (L, H) array for the others). uniforms: one number in [0, 1) per character
    drawn (unused when argmax). Returns how many characters were drawn; the state has then read
    all of them but the last (the next call's prime).

    The arguments' shapes are checked here, in Python (the checks' own Python, ``py_func``: a
    compiled check is compiled again for every call site), then ``generate_loop`` runs."""
    V, G = b_dec.shape[0], table.shape[1]
    rows, indices = check_rows.py_func, check_indices.py_func
    rows("generate", "h", "(L, H)", (Wp_hh.shape[0], Wp_hh.shape[2]), h.shape,
         ": a state row per layer of Wp_hh, H its rows (generation_weights)")
    rows("generate", "cs", "(L, H)", h.shape, cs.shape, ", the shape of h")
    rows("generate", "table", "(V, G)", (V, G), table.shape, ": a row per character of b_dec")
    rows("generate", "uniforms", "(N,)", out.shape, uniforms.shape, ": one per character of out")
    rows("generate", "prime", "(P,)", (max(prime.shape[0], 1),), prime.shape, ": one character at least")
    indices("generate", "prime", prime, V, "characters are ids in [0, V)")
    return generate_loop(cell, prime, table, Wp_ih, b_in, Wp_hh, b_hn, Wp_dec, b_dec, h, cs, uniforms, temperature,
                         top_k, argmax, stop, out)


@njit(cache=True, nogil=True, error_model="numpy")
def generate_loop(cell, prime, table, Wp_ih, b_in, Wp_hh, b_hn, Wp_dec, b_dec, h, cs, uniforms, temperature, top_k,
                  argmax, stop, out):
    """``generate``'s loop, its arguments checked."""
    L, H = h.shape
    G = table.shape[1]
    V = b_dec.shape[0]
    P = prime.shape[0]
    dt = h.dtype
    a = np.empty((1, G), dt)      # a layer's gates (one row: a batch of one)
    ah = np.empty((1, G), dt)     # the GRU's recurrent part, W_hh h
    new_h = np.empty(H, dt)
    new_c = np.empty(H, dt)
    hn = np.empty(H, dt)
    z = np.empty((1, V), dt)
    s = np.empty(V, np.float64)
    threads = np.int64(num_threads())   # smallgemm splits a product over them from 2 MFLOP on
    for i in range(P - 1 + out.shape[0]):
        c = prime[i] if i < P else out[i - P]      # the character read at this step
        step = np.int64(i)
        for l in range(L):
            if l == 0:
                copy_row(table[c], a[0])                         # W_ih e_c + b
            else:
                copy_row(b_in[l], a[0])
                smallgemm(h[l - 1:l], Wp_ih[l - 1], a, 1.0, step, threads)   # + W_ih h^{l-1}
            if cell == GRU:
                smallgemm(h[l:l + 1], Wp_hh[l], ah, 0.0, step, threads)      # W_hh h, apart
                gru_cell_forward(a[0], ah[0], b_hn[l], h[l], new_h, hn)
            else:
                smallgemm(h[l:l + 1], Wp_hh[l], a, 1.0, step, threads)       # + W_hh h
                if cell == LSTM:
                    lstm_cell_forward(a[0], cs[l], new_c, new_h)
                    copy_row(new_c, cs[l])
                else:
                    rnn_cell_forward(a[0, :H], new_h, cell == RNN_RELU)
            copy_row(new_h, h[l])
        if i < P - 1:
            continue                                             # still reading the prime
        j = i - (P - 1)
        copy_row(b_dec, z[0])
        smallgemm(h[L - 1:L], Wp_dec, z, 1.0, step, threads)                 # scores: W_dec h + b_dec
        out[j] = draw(z[0], uniforms[j], temperature, top_k, argmax, s)
        if out[j] == stop:
            return j + 1
    return out.shape[0]
