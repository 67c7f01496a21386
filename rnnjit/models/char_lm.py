"""A character-level language model (many-to-many, aligned): read a character, predict the next.

    e_t = E[x_t]                    embedding (or the one-hot vector of x_t, with input="onehot")
    h_t = cell(e_t, h_{t-1})        a stacked recurrent layer: RNN, LSTM or GRU, dropout between layers
    z_t = W_dec h_t + b_dec         linear decoder to one score per character
    L   = mean_t -log softmax(z_t)[x_{t+1}]      cross-entropy in nats per character

Parameter names follow a torch module with submodules ``embedding``, ``rnn`` and ``decoder``,
so ``state_dict()`` keys read ``embedding.weight``, ``rnn.weight_ih_l0``, ``decoder.bias``...
"""

from __future__ import annotations

import numpy as np

from ..kernels.dense import (cross_entropy, embedding_backward, embedding_forward, linear_backward,
                             linear_forward, softmax_cross_entropy)
from ..nn.recurrent import LAYERS


class CharLM:
    def __init__(self, vocab_size: int, hidden_size: int = 128, num_layers: int = 2, cell: str = "lstm",
                 dropout: float = 0.0, embedding_size: int | None = None, input: str = "embedding",
                 dtype=np.float32, seed: int | None = None, nonlinearity: str = "tanh",
                 device: str = "cpu"):
        if cell not in LAYERS:
            raise ValueError(f"unknown cell {cell!r}: choose one of {', '.join(LAYERS)}")
        if input not in ("embedding", "onehot"):
            raise ValueError(f"input must be 'embedding' or 'onehot', got {input!r}")
        self.vocab_size, self.hidden_size, self.num_layers = int(vocab_size), int(hidden_size), int(num_layers)
        self.cell_name, self.input, self.dtype = cell, input, np.dtype(dtype).type
        E = self.vocab_size if input == "onehot" else int(embedding_size or hidden_size)
        self.embedding_size = E
        rnn_seed, own_seed = np.random.SeedSequence(seed).spawn(2)
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = LAYERS[cell](E, hidden_size, num_layers=num_layers, dropout=dropout, dtype=dtype,
                                seed=int(rnn_seed.generate_state(1)[0]), device=device, **extra)
        rng = np.random.default_rng(own_seed)
        bound = 1.0 / np.sqrt(hidden_size)
        self.params = {
            "decoder.weight": rng.uniform(-bound, bound, (self.vocab_size, hidden_size)).astype(dtype),
            "decoder.bias": np.zeros(self.vocab_size, dtype),
        }
        if input == "embedding":
            self.params["embedding.weight"] = rng.standard_normal((self.vocab_size, E)).astype(dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    # ---- parameters -------------------------------------------------------------------------

    def parameters(self):
        """(name, array, grad) for every parameter; optimizers update the arrays in place."""
        own = [(k, self.params[k], self.grads[k]) for k in self.params]
        return own + [("rnn." + k, p, g) for k, p, g in self.rnn.parameters()]

    def state_dict(self):
        return {k: p.copy() for k, p, _ in self.parameters()}

    def load_state_dict(self, state):
        rnn = {k[4:]: v for k, v in state.items() if k.startswith("rnn.")}
        own = {k: v for k, v in state.items() if not k.startswith("rnn.")}
        missing = sorted(set(self.params) - set(own))
        extra = sorted(set(own) - set(self.params))
        if missing or extra:
            raise ValueError(f"load_state_dict: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
        for k, v in own.items():
            if np.shape(v) != self.params[k].shape:
                raise ValueError(f"load_state_dict: {k} has shape {np.shape(v)}, expected {self.params[k].shape}")
        self.rnn.load_state_dict(rnn)
        for k, v in own.items():
            self.params[k][...] = v

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def train(self, mode=True):
        self.rnn.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def initial_state(self, batch: int):
        S = self.num_layers * self.rnn.num_directions
        h = np.zeros((S, batch, self.hidden_size), self.dtype)
        return (h, np.zeros_like(h)) if self.rnn.cell.has_cell_state else h

    @property
    def hidden_grad_norms(self):
        return self.rnn.hidden_grad_norms

    # ---- forward and backward ---------------------------------------------------------------

    def _inputs(self, x):
        T, B = x.shape
        ids = np.ascontiguousarray(x.reshape(-1), dtype=np.int64)
        if self.input == "onehot":
            e = np.zeros((T * B, self.vocab_size), self.dtype)
            e[np.arange(T * B), ids] = 1
        else:
            e = embedding_forward(self.params["embedding.weight"], ids)
        return ids, e.reshape(T, B, self.embedding_size)

    def logits(self, x, state):
        """x (T, B) ids -> logits (T*B, V), next state."""
        T, B = x.shape
        ids, e = self._inputs(x)
        out, new_state = self.rnn(e, state)
        h = out.reshape(T * B, self.hidden_size)
        return linear_forward(h, self.params["decoder.weight"], self.params["decoder.bias"]), new_state, (ids, h)

    def loss(self, x, y, state):
        """Mean cross-entropy (nats per character) without gradients; returns loss, next state."""
        z, new_state, _ = self.logits(x, state)
        return float(cross_entropy(z, np.ascontiguousarray(y.reshape(-1), dtype=np.int64))), new_state

    def forward_backward(self, x, y, state):
        """One truncated-BPTT chunk: loss, gradients (in ``grads``), and the state to carry on."""
        T, B = x.shape
        z, new_state, (ids, h) = self.logits(x, state)
        loss, dz = softmax_cross_entropy(z, np.ascontiguousarray(y.reshape(-1), dtype=np.int64))
        dh = linear_backward(h, self.params["decoder.weight"], dz, self.grads["decoder.weight"],
                             self.grads["decoder.bias"])
        de, _ = self.rnn.backward(dh.reshape(T, B, self.hidden_size))
        if self.input == "embedding":
            embedding_backward(self.grads["embedding.weight"], ids, de.reshape(T * B, self.embedding_size))
        return float(loss), new_state
