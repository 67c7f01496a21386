"""The bookkeeping every composed model shares: its own dense parameters beside recurrent layers.

A model keeps its dense weights in ``params`` (with ``grads`` of the same keys) and its recurrent
layers as attributes named in ``layer_names``. Parameter names follow a torch module with those
submodules, so a layer's ``weight_hh_l0`` reads ``encoder.weight_hh_l0`` in ``state_dict()``.

Also here, shared by the generator and the encoder-decoder: the linear head, the word-by-word
decoder (teacher-forced pass, its backward, greedy decoding) and the cross-entropy that skips
<pad> targets.
"""

from __future__ import annotations

import numpy as np

from ..kernels.dense import (cross_entropy, embedding_backward, embedding_forward, linear_backward,
                             linear_forward, softmax_cross_entropy)
from ..nn.recurrent import LAYERS


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dtype, seed,
               bidirectional: bool = False, dropout: float = 0.0):
    """A recurrent layer by name: rnn (tanh), rnn-relu, lstm or gru."""
    cell, nl = ("rnn", "relu") if cell == "rnn-relu" else (cell, "tanh")
    if cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}: choose rnn, rnn-relu, lstm or gru")
    extra = {"nonlinearity": nl} if cell == "rnn" else {}
    return LAYERS[cell](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                        dropout=dropout, dtype=dtype, seed=seed, **extra)


def uniform(rng, shape, fan_in, dtype):
    """torch.nn.Linear's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def seeds(seed, n):
    """n independent integer seeds from one."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def linear(params, name, x):
    """z = x W^T + b with the dense kernel; x is (N, in)."""
    return linear_forward(np.ascontiguousarray(x), params[name + ".weight"], params[name + ".bias"])


def linear_grad(params, grads, name, x, dz):
    """Writes the gradients of ``name``; returns dL/dx."""
    return linear_backward(np.ascontiguousarray(x), params[name + ".weight"], np.ascontiguousarray(dz),
                           grads[name + ".weight"], grads[name + ".bias"])


class Module:
    layer_names: tuple[str, ...] = ()

    params: dict
    grads: dict

    def _layers(self):
        return [(n, getattr(self, n)) for n in self.layer_names]

    def parameters(self):
        """(name, array, grad) for every parameter; optimizers update the arrays in place."""
        own = [(k, self.params[k], self.grads[k]) for k in self.params]
        return own + [(f"{n}.{k}", p, g) for n, layer in self._layers() for k, p, g in layer.parameters()]

    def state_dict(self):
        return {k: p.copy() for k, p, _ in self.parameters()}

    def load_state_dict(self, state):
        names = {k for k, _, _ in self.parameters()}
        missing, extra = sorted(names - set(state)), sorted(set(state) - names)
        if missing or extra:
            raise ValueError(f"load_state_dict: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
        for k, p, _ in self.parameters():
            if np.shape(state[k]) != p.shape:
                raise ValueError(f"load_state_dict: {k} has shape {np.shape(state[k])}, expected {p.shape}")
        for k, p, _ in self.parameters():
            p[...] = np.asarray(state[k], dtype=p.dtype)

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def train(self, mode=True):
        for _, layer in self._layers():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)


# ---- a word-by-word decoder, shared by the generator and the encoder-decoder -------------------
#
#   e_t = E[w_{t-1}]   (w_0 = <bos>)        h_t = cell(e_t, h_{t-1})        z_t = W h_t + b
#
# Training reads the whole target at once (teacher forcing: the previous *true* word is the input),
# so the layer runs over all T steps in one call. Inference feeds back its own argmax, one step at
# a time: greedy decoding.

def shift_right(y, bos):
    """Decoder inputs for targets y (T, B): <bos>, y_1, ..., y_{T-1}."""
    return np.concatenate([np.full((1, y.shape[1]), bos, np.int64), y[:-1]]).astype(np.int64)


def decode(params, layer, emb, head, ids, state):
    """Teacher-forced decoder pass: ids (T, B) from ``state`` -> logits (T*B, V), final state, cache."""
    T, B = ids.shape
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    e = embedding_forward(params[emb + ".weight"], flat).reshape(T, B, -1)
    out, new_state = layer(e, state)
    h = out.reshape(T * B, -1)
    return linear(params, head, h), new_state, (flat, h, T, B)


def decode_backward(params, grads, layer, emb, head, cache, dz):
    """Backward of :func:`decode`: writes the gradients, returns dL/d(initial state)."""
    flat, h, T, B = cache
    dh = linear_grad(params, grads, head, h, dz)
    de, dstate = layer.backward(dh.reshape(T, B, -1))
    embedding_backward(grads[emb + ".weight"], flat, np.ascontiguousarray(de.reshape(T * B, -1)))
    return dstate


def greedy(params, layer, emb, head, state, bos, eos, max_len):
    """Greedy decoding from ``state``: (B, n) ids, n <= max_len; stops when every row wrote <eos>."""
    B = (state[0] if isinstance(state, tuple) else state).shape[1]
    w = np.full((1, B), bos, np.int64)
    out, done = [], np.zeros(B, bool)
    for _ in range(max_len):
        z, state, _ = decode(params, layer, emb, head, w, state)
        w = np.argmax(z, axis=1).astype(np.int64).reshape(1, B)
        out.append(w[0])
        done |= w[0] == eos
        if done.all():
            break
    return np.stack(out, axis=1)


def strip(ids, eos):
    """Rows of ids cut at the first <eos> (exclusive) -> list of lists."""
    rows = []
    for r in np.asarray(ids):
        r = [int(v) for v in r]
        rows.append(r[:r.index(eos)] if eos in r else r)
    return rows


def masked_cross_entropy(z, y, pad, grad=True):
    """Mean cross-entropy over the rows whose target is not ``pad``; dz is zero on pad rows."""
    y = np.asarray(y, np.int64).reshape(-1)
    keep = np.flatnonzero(y != pad)
    zk, yk = np.ascontiguousarray(z[keep]), np.ascontiguousarray(y[keep])
    if not grad:
        return float(cross_entropy(zk, yk)), None
    loss, dzk = softmax_cross_entropy(zk, yk)
    dz = np.zeros_like(z)
    dz[keep] = dzk
    return float(loss), dz
