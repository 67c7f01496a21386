"""A plain-NumPy character model, min-char-rnn style: the yardstick ``rnnjit bench`` measures against.

One timestep at a time, with a one-hot input vector, as Karpathy's min-char-rnn does it, for the
three cells (RNN with tanh, LSTM, GRU), stacked layers, a linear decoder to V classes, mean softmax
cross-entropy, backpropagation through time, and a plain SGD update. Weights use PyTorch's names
and gate order, so it loads the state of an ``rnnjit.models.CharLM(input="onehot")`` and must
compute the same loss and gradients (``tests/test_bench.py`` checks it).

Nothing here is compiled and nothing is fused: every step is a handful of ``np.dot`` calls and
NumPy expressions, which is exactly what makes it a fair "plain NumPy" baseline.
"""

from __future__ import annotations

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


class NumpyCharModel:
    def __init__(self, state: dict, cell: str, num_layers: int, hidden_size: int, vocab_size: int, dtype):
        self.cell, self.L, self.H, self.V = cell, num_layers, hidden_size, vocab_size
        self.dtype = np.dtype(dtype).type
        self.p = {k: np.array(v, dtype=self.dtype) for k, v in state.items()}
        self.g = {k: np.zeros_like(v) for k, v in self.p.items()}

    def initial_state(self, B):
        h = [np.zeros((B, self.H), self.dtype) for _ in range(self.L)]
        c = [np.zeros((B, self.H), self.dtype) for _ in range(self.L)] if self.cell == "lstm" else None
        return h, c

    # ---- one step of one layer ----------------------------------------------------------------

    def _step(self, k, x, h, c):
        p, H = self.p, self.H
        W_ih, W_hh = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = p[f"rnn.bias_ih_l{k}"], p[f"rnn.bias_hh_l{k}"]
        if self.cell == "rnn":
            h2 = np.tanh(np.dot(x, W_ih.T) + b_ih + np.dot(h, W_hh.T) + b_hh)
            return h2, None, (x, h, h2)
        if self.cell == "lstm":
            a = np.dot(x, W_ih.T) + b_ih + np.dot(h, W_hh.T) + b_hh
            i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
            g, o = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
            c2 = f * c + i * g
            tc = np.tanh(c2)
            return o * tc, c2, (x, h, c, i, f, g, o, tc)
        ax = np.dot(x, W_ih.T) + b_ih
        ah = np.dot(h, W_hh.T) + b_hh
        r = _sigmoid(ax[:, :H] + ah[:, :H])
        z = _sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        hn = ah[:, 2 * H:]
        n = np.tanh(ax[:, 2 * H:] + r * hn)
        return (1 - z) * n + z * h, None, (x, h, r, z, n, hn)

    def _step_back(self, k, dh, dc, cache):
        """-> dx, dh_prev, dc_prev; accumulates the weight gradients of layer k."""
        g, p = self.g, self.p
        W_ih, W_hh = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
        if self.cell == "rnn":
            x, h, h2 = cache
            da = dh * (1 - h2 * h2)
            dax = dah = da
            dh_prev, dc_prev = np.dot(da, W_hh), None
        elif self.cell == "lstm":
            x, h, c, i, f, gg, o, tc = cache
            dcv = dc + dh * o * (1 - tc * tc)
            da = np.concatenate((dcv * gg * i * (1 - i), dcv * c * f * (1 - f), dcv * i * (1 - gg * gg),
                                 dh * tc * o * (1 - o)), axis=1)
            dax = dah = da
            dh_prev, dc_prev = np.dot(da, W_hh), dcv * f
        else:
            x, h, r, z, n, hn = cache
            dn_pre = dh * (1 - z) * (1 - n * n)
            dr_pre = dn_pre * hn * r * (1 - r)
            dz_pre = dh * (h - n) * z * (1 - z)
            dax = np.concatenate((dr_pre, dz_pre, dn_pre), axis=1)
            dah = np.concatenate((dr_pre, dz_pre, dn_pre * r), axis=1)
            dh_prev, dc_prev = dh * z + np.dot(dah, W_hh), None
        g[f"rnn.weight_ih_l{k}"] += np.dot(dax.T, x)
        g[f"rnn.weight_hh_l{k}"] += np.dot(dah.T, h)
        g[f"rnn.bias_ih_l{k}"] += dax.sum(axis=0)
        g[f"rnn.bias_hh_l{k}"] += dah.sum(axis=0)
        return np.dot(dax, W_ih), dh_prev, dc_prev

    # ---- the model ------------------------------------------------------------------------------

    def logits(self, ids, state):
        """ids (T, B) -> logits (T, B, V), the next state, and the caches for backward."""
        T, B = ids.shape
        h, c = state
        h, c = list(h), None if c is None else list(c)
        W, bd = self.p["decoder.weight"], self.p["decoder.bias"]
        zs, caches, tops = np.empty((T, B, self.V), self.dtype), [], []
        for t in range(T):
            x = np.zeros((B, self.V), self.dtype)  # the one-hot input vector
            x[np.arange(B), ids[t]] = 1
            step = []
            for k in range(self.L):
                h[k], ck, cache = self._step(k, x, h[k], None if c is None else c[k])
                if c is not None:
                    c[k] = ck
                step.append(cache)
                x = h[k]
            caches.append(step)
            tops.append(x)
            zs[t] = np.dot(x, W.T) + bd
        return zs, (h, c), (caches, tops)

    def loss_and_grads(self, ids, targets, state):
        """Mean cross-entropy over the T*B predictions and its gradients (in ``g``); the next state."""
        T, B = ids.shape
        for v in self.g.values():
            v[...] = 0
        zs, new_state, (caches, tops) = self.logits(ids, state)
        N = T * B
        W = self.p["decoder.weight"]
        loss = 0.0
        dh_next = [np.zeros((B, self.H), self.dtype) for _ in range(self.L)]
        dc_next = [np.zeros((B, self.H), self.dtype) for _ in range(self.L)] if self.cell == "lstm" else None
        for t in reversed(range(T)):
            z = zs[t] - zs[t].max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            loss += float(np.sum(np.log(s[:, 0]) - z[np.arange(B), targets[t]]))
            dz = e / s
            dz[np.arange(B), targets[t]] -= 1
            dz /= N
            self.g["decoder.weight"] += np.dot(dz.T, tops[t])
            self.g["decoder.bias"] += dz.sum(axis=0)
            dh = np.dot(dz, W)
            for k in reversed(range(self.L)):
                dx, dh_next[k], dck = self._step_back(k, dh + dh_next[k],
                                                      None if dc_next is None else dc_next[k], caches[t][k])
                if dc_next is not None:
                    dc_next[k] = dck
                dh = dx
        return loss / N, new_state

    def sgd(self, lr):
        for k, v in self.p.items():
            v -= self.dtype(lr) * self.g[k]

    def train_step(self, ids, targets, state, lr=0.01):
        loss, new_state = self.loss_and_grads(ids, targets, state)
        self.sgd(lr)
        return loss, new_state
