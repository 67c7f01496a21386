"""Encoder-decoder (many-to-many, unaligned): read one sequence, then write another.

    encoder:  e_t = E_src[x_t],   h_t = cell_enc(e_t, h_{t-1}),  h_0 = 0        t = 1..S
    decoder:  starts from the encoder's final state: h'_0 = h_S (and c'_0 = c_S for an LSTM,
              so the memory cell is handed over too); then, as a word-by-word decoder,
              d_u = E_tgt[y_{u-1}] (y_0 = <bos>),  h'_u = cell_dec(d_u, h'_{u-1}),  z_u = W h'_u + b
    L = mean over non-<pad> targets of -log softmax(z_u)[y_u]                   (targets end in <eos>)

The encoder's final state is the only bridge (no attention): the whole input must pass through
one fixed-size vector, the bottleneck of Sutskever et al. 2014 and Cho et al. 2014. Sources of
different lengths are padded on the left, so the real characters are the last ones read and h_S
follows them directly.

Training: teacher forcing (the decoder reads the true previous symbol; the decoder layer runs over
the whole target in one call). Backward: the decoder returns dL/dh'_0 (and dL/dc'_0), which is the
gradient of the encoder's final state; the encoder's outputs get zero gradient. Inference:
``translate`` decodes greedily. ``hidden_grad_norms`` puts the encoder's steps and the decoder's
side by side, (layers, S + U): the gradient's whole path back to the first input character.

``device="cuda"``: both layers, the embeddings, the head and the masked cross-entropy run on
the GPU (``kernels/cuda/dense.py``); parameters and gradients are device arrays, and
``params``/``grads``/``state_dict()`` read as NumPy. ``cuda_graphs=True`` replays each training
step's device work as a CUDA graph, one per shape of the batch (``graphed.py``).
"""

from __future__ import annotations

import numpy as np

from ..grad_mode import no_grad
from .module import (Module, check_batch, check_sizes, checked_ids, decode, decode_backward, decode_ids, flat_ids,
                     greedy, id_matrix, make_layer, masked_cross_entropy, scalar, seeds, shift_right, strip, uniform)


class Seq2Seq(Module):
    layer_names = ("encoder", "decoder")

    def __init__(self, src_vocab: int, tgt_vocab: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", embedding_size: int | None = None, pad: int = 0, bos: int = 1,
                 eos: int = 2, dtype=np.float32, seed: int | None = None, device: str = "cpu",
                 cuda_graphs: bool = False):
        check_sizes(src_vocab=src_vocab, tgt_vocab=tgt_vocab, hidden_size=hidden_size, num_layers=num_layers,
                    embedding_size=embedding_size)
        self._setup(device, cuda_graphs)
        self.src_vocab, self.tgt_vocab = int(src_vocab), int(tgt_vocab)
        self.hidden_size, self.num_layers = int(hidden_size), int(num_layers)
        checked_ids([pad, bos, eos], "pad, bos and eos", "tgt_vocab", self.tgt_vocab)
        self.pad, self.bos, self.eos = pad, bos, eos
        self.dtype = np.dtype(dtype).type
        E = self.embedding_size = int(embedding_size or hidden_size)
        enc_seed, dec_seed, own_seed = seeds(seed, 3)
        self.encoder = make_layer(cell, E, hidden_size, num_layers, dtype, enc_seed, device=device)
        self.decoder = make_layer(cell, E, hidden_size, num_layers, dtype, dec_seed, device=device)
        rng = np.random.default_rng(own_seed)
        self._own({
            "src_embedding.weight": rng.standard_normal((src_vocab, E)).astype(dtype),
            "tgt_embedding.weight": rng.standard_normal((tgt_vocab, E)).astype(dtype),
            "head.weight": uniform(rng, (tgt_vocab, hidden_size), hidden_size, dtype),
            "head.bias": np.zeros(tgt_vocab, dtype),
        })
        self._graph_step([self.encoder, self.decoder])

    @property
    def hidden_grad_norms(self):
        enc, dec = self.encoder.hidden_grad_norms, self.decoder.hidden_grad_norms
        return None if enc is None or dec is None else np.concatenate([enc, dec], axis=1)

    def encode(self, x):
        """x (S, B) source ids -> the encoder's final state (the decoder's initial state)."""
        x = self._sources(x)
        S, B = np.shape(x)
        return self._encode(self.xp.to_device(flat_ids(x)), S, B)

    def _sources(self, x):
        """Source ids x (S, B) as int64 NumPy, checked to be in [0, src_vocab) (``checked_ids``)."""
        return id_matrix(x, "sources", "(S, B)", "src_vocab", self.src_vocab)

    def _targets(self, y):
        """Target ids y (U, B) as int64 NumPy, checked to be in [0, tgt_vocab) (``checked_ids``)."""
        return id_matrix(y, "targets", "(U, B)", "tgt_vocab", self.tgt_vocab)

    def _pair(self, x, y):
        """Sources and targets, checked (``_sources``, ``_targets``) and of one batch size."""
        x, y = self._sources(x), self._targets(y)
        check_batch("x", x.shape, "y", y.shape, 1, 1, "one target column per source column (both are time-major)")
        return x, y

    def _encode(self, ids, S, B):
        """``encode`` of ids already flat (S*B,) on the model's device."""
        e = self.k.embedding_forward(self._params["src_embedding.weight"], ids)
        _, state = self.encoder(e.reshape(S, B, self.embedding_size))
        return state

    def _decode(self, state, y):
        return decode(self._params, self.decoder, "tgt_embedding", "head", shift_right(y, self.bos), state,
                      self.k, self.xp)

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def loss(self, x, y) -> float:
        """Teacher-forced loss of targets y (U, B) given sources x (S, B), without gradients."""
        x, y = self._pair(x, y)
        z, _, _ = self._decode(self.encode(x), y)
        return masked_cross_entropy(z, y, self.pad, self.k, self.xp)

    def forward_backward(self, x, y) -> float:
        """Sources x (S, B), targets y (U, B) ending in <eos> (then <pad>). Returns the loss.

        With ``cuda_graphs=True`` on the GPU, from the third batch of a shape on, the device
        work is one CUDA graph replay (``graphed.py``)."""
        x, y = self._pair(x, y)   # checked on the host, before the CPU / CUDA-graph split
        (S, B), U = np.shape(x), np.shape(y)[0]
        ids = [flat_ids(x), flat_ids(shift_right(y, self.bos)), flat_ids(y)]
        if self._graphed is not None and self._graphed.graphable():
            return self._graphed(ids, None, S, U, B)[0]
        return scalar(self._step_on_device([self.xp.to_device(a) for a in ids], None, S, U, B)[0])

    def _step_on_device(self, ids, state, S, U, B):
        """forward_backward's work on the model's device: ids = [sources (S*B,), the decoder's
        input ids and the targets (U*B,)], flat int64 arrays there; ``state`` is unused (the
        encoder starts from zeros). Returns (loss, None), the loss as the kernels give it."""
        k, xp = self.k, self.xp
        src, dec_in, targets = ids
        state = self._encode(src, S, B)
        z, _, cache = decode_ids(self._params, self.decoder, "tgt_embedding", "head", dec_in, U, B, state, k, xp)
        loss, dz = k.masked_softmax_cross_entropy(z, targets, self.pad)
        dstate = decode_backward(self._params, self._grads, self.decoder, "tgt_embedding", "head", cache, dz, k, xp)
        dout = xp.zeros((S, B, self.hidden_size), self.dtype)         # only the final state is used
        de, _ = self.encoder.backward(dout, dstate)
        k.embedding_backward(self._grads["src_embedding.weight"], src,
                             xp.contiguous(de.reshape(S * B, self.embedding_size)))
        return loss, None

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def translate(self, x, max_len: int = 20) -> list[list[int]] | list[int]:
        """Greedy decoding: one list of target ids (without <eos>) per source column of x (S, B);
        for a single source sequence x (S,), its one list."""
        one = np.ndim(x) == 1
        if one:
            x = np.reshape(x, (-1, 1))                     # a batch of one
        was = self.encoder.training
        self.eval()
        try:
            state = self.encode(x)
            ids = greedy(self._params, self.decoder, "tgt_embedding", "head", state, self.bos, self.eos, max_len,
                         self.k, self.xp)
        finally:
            self.train(was)
        rows = strip(ids, self.eos)
        return rows[0] if one else rows
