"""One-to-many: a fixed-size vector sets the initial state, then the network writes a sequence.

This is the shape of image captioning in the m-RNN / "Show and Tell" line of work: an image's
features condition the recurrent state, and the decoder writes the caption word by word.

    s    = tanh(W_init v + b_init)           v (B, F): the condition (here an image's pixels)
    h_0  = s, cut into one (B, H) block per layer
    c_0  = 0                                 (LSTM: only h is conditioned; the memory cell starts
                                              empty and the gates decide what of h_0 to store)
    e_t  = E[w_{t-1}],  w_0 = <bos>          word embeddings of the previous word
    h_t  = cell(e_t, h_{t-1})                stacked RNN/LSTM/GRU
    z_t  = W h_t + b                         scores over the words
    L    = mean over non-<pad> targets of -log softmax(z_t)[w_t]      (captions end with <eos>)

Training is teacher-forced: the true previous word is the input, so the layer runs over the
whole caption in one call. Backward: the gradient of h_0 leaves the layer, goes through the tanh
(ds ⊙ (1 - s²)) and the linear map to W_init, b_init and v (``input_grad``).
``generate`` decodes greedily, one word at a time, feeding each argmax back in.

``device="cuda"``: the same equations on the GPU (``tanh`` and its backward, the head, the
embedding and the masked cross-entropy are ``kernels/cuda/dense.py`` kernels); parameters,
gradients and ``input_grad`` are device arrays, ``params``/``grads``/``state_dict()`` NumPy.
``cuda_graphs=True`` replays each training step's device work as a CUDA graph, one per shape
of the batch (``graphed.py``).
"""

from __future__ import annotations

import numpy as np

from ..grad_mode import no_grad
from .module import (Module, check_batch, check_sizes, checked_ids, decode, decode_backward, decode_ids, flat_ids,
                     greedy, id_matrix, linear, linear_grad, make_layer, masked_cross_entropy, scalar, seeds,
                     shift_right, strip, uniform)

_EMB, _HEAD = "embedding", "head"


class ConditionedGenerator(Module):
    layer_names = ("rnn",)

    def __init__(self, condition_size: int, vocab_size: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", embedding_size: int | None = None, pad: int = 0, bos: int = 1,
                 eos: int = 2, dtype=np.float32, seed: int | None = None, device: str = "cpu",
                 cuda_graphs: bool = False):
        check_sizes(condition_size=condition_size, vocab_size=vocab_size, hidden_size=hidden_size,
                    num_layers=num_layers, embedding_size=embedding_size)
        self._setup(device, cuda_graphs)
        self.condition_size, self.vocab_size = int(condition_size), int(vocab_size)
        self.hidden_size, self.num_layers = int(hidden_size), int(num_layers)
        checked_ids([pad, bos, eos], "pad, bos and eos", "vocab_size", self.vocab_size)
        self.pad, self.bos, self.eos = pad, bos, eos
        self.dtype = np.dtype(dtype).type
        E = int(embedding_size or hidden_size)
        rnn_seed, own_seed = seeds(seed, 2)
        self.rnn = make_layer(cell, E, hidden_size, num_layers, dtype, rnn_seed, device=device)
        rng = np.random.default_rng(own_seed)
        LH, F, V, H = num_layers * hidden_size, condition_size, vocab_size, hidden_size
        self._own({
            "init.weight": uniform(rng, (LH, F), F, dtype), "init.bias": np.zeros(LH, dtype),
            "embedding.weight": rng.standard_normal((V, E)).astype(dtype),
            "head.weight": uniform(rng, (V, H), H, dtype), "head.bias": np.zeros(V, dtype),
        })
        self.input_grad = None   # dL/dv after forward_backward (on the model's device)
        self._graph_step([self.rnn], keep=[(self, "input_grad")])

    @property
    def hidden_grad_norms(self):
        return self.rnn.hidden_grad_norms

    def _conditions(self, v, y=None):
        """v as given, once it is known to be (B, F) numbers (and, with targets y (T, B), one
        row per target column); otherwise a one-line ValueError. The kernels would read past the
        end of a narrower v, and BLAS refuses a wider one."""
        shape = np.shape(v)
        if len(shape) != 2 or shape[1] != self.condition_size or shape[0] == 0:
            raise ValueError(f"v must be (B, {self.condition_size}): one row of condition_size features per "
                             f"sequence, B >= 1; got {shape}")
        dtype = None if self.xp.on_device(v) else np.asarray(v).dtype
        if dtype is not None and dtype.kind not in "fiub":
            raise ValueError(f"v must hold numbers, got dtype {dtype}")
        if y is not None:
            check_batch("v", shape, "y", np.shape(y), 0, 1, "one condition row per target column (y is (T, B))")
        return v

    def initial_state(self, v):
        """v (B, F) -> the decoder's initial state (and s, kept for backward)."""
        k, xp = self.k, self.xp
        v = self._floats(self._conditions(v))
        s = k.tanh(linear(self._params, "init", v, k, xp))
        B, L, H = v.shape[0], self.num_layers, self.hidden_size
        h0 = xp.contiguous(xp.swap01(s.reshape(B, L, H)))
        return ((h0, xp.zeros(h0.shape, self.dtype)) if self.rnn.cell.has_cell_state else h0), s

    def _targets(self, y):
        """Target ids y (T, B) as int64 NumPy, checked to be in [0, vocab_size) (``checked_ids``)."""
        return id_matrix(y, "targets", "(T, B)", "vocab_size", self.vocab_size)

    def _decode(self, state, y):
        return decode(self._params, self.rnn, _EMB, _HEAD, shift_right(y, self.bos), state, self.k, self.xp)

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def loss(self, v, y) -> float:
        """Teacher-forced loss of targets y (T, B) without gradients."""
        y = self._targets(y)
        state, _ = self.initial_state(self._conditions(v, y))
        z, _, _ = self._decode(state, y)
        return masked_cross_entropy(z, y, self.pad, self.k, self.xp)

    def forward_backward(self, v, y) -> float:
        """v (B, F) conditions, y (T, B) target ids ending in <eos>, then <pad>. Returns the loss.

        With ``cuda_graphs=True`` on the GPU (and v on the host), from the third batch of a
        shape on, the device work is one CUDA graph replay (``graphed.py``)."""
        y = self._targets(y)          # checked on the host, before the CPU / CUDA-graph split
        self._conditions(v, y)
        T, B = np.shape(y)
        ids = [flat_ids(shift_right(y, self.bos)), flat_ids(y)]      # decoder inputs, targets
        if self._graphed is not None and self._graphed.graphable() and not self.xp.on_device(v):
            return self._graphed([np.ascontiguousarray(v, dtype=self.dtype), *ids], None, T, B)[0]
        return scalar(self._step_on_device([self._floats(v), *(self.xp.to_device(a) for a in ids)], None, T, B)[0])

    def _step_on_device(self, inputs, state, T, B):
        """forward_backward's work on the model's device: inputs = [v (B, F), the decoder's input
        ids and the targets, flat (T*B,)], all there; ``state`` is unused (v makes it). Returns
        (loss, None), the loss as the kernels give it (on the GPU a (1,) device array)."""
        k, xp = self.k, self.xp
        v, ids, targets = inputs
        state, s = self.initial_state(v)
        z, _, cache = decode_ids(self._params, self.rnn, _EMB, _HEAD, ids, T, B, state, k, xp)
        loss, dz = k.masked_softmax_cross_entropy(z, targets, self.pad)
        dstate = decode_backward(self._params, self._grads, self.rnn, _EMB, _HEAD, cache, dz, k, xp)
        dh0 = dstate[0] if isinstance(dstate, tuple) else dstate     # c_0 is constant: no gradient
        ds = xp.contiguous(xp.swap01(dh0)).reshape(s.shape[0], s.shape[1])
        self.input_grad = linear_grad(self._params, self._grads, "init", v, k.tanh_backward(s, ds), k, xp)
        return loss, None

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def generate(self, v, max_len: int = 20) -> list[list[int]] | list[int]:
        """Greedy decoding: one list of word ids (without <eos>) per condition row of v (B, F);
        for a single condition vector v (F,), its one list."""
        one = np.shape(v) == (self.condition_size,)
        if one:
            v = np.reshape(v, (1, self.condition_size))     # a batch of one (a device array reshapes too)
        was = self.rnn.training
        self.eval()
        try:
            state, _ = self.initial_state(v)
            ids = greedy(self._params, self.rnn, _EMB, _HEAD, state, self.bos, self.eos, max_len, self.k, self.xp)
        finally:
            self.train(was)
        rows = strip(ids, self.eos)
        return rows[0] if one else rows
