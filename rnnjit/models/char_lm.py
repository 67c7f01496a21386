"""A character-level language model (many-to-many, aligned): read a character, predict the next.

    e_t = E[x_t]                    embedding (or the one-hot vector of x_t, with input="onehot";
                                    on the CPU the first layer then reads column x_t of W_ih
                                    instead of multiplying the one-hot vector, and skips dx)
    h_t = cell(e_t, h_{t-1})        a stacked recurrent layer: RNN, LSTM or GRU, dropout between layers
    z_t = W_dec h_t + b_dec         linear decoder to one score per character
    L   = mean_t -log softmax(z_t)[x_{t+1}]      cross-entropy in nats per character

Parameter names follow a torch module with submodules ``embedding``, ``rnn`` and ``decoder``,
so ``state_dict()`` keys read ``embedding.weight``, ``rnn.weight_ih_l0``, ``decoder.bias``...

``device="cuda"`` runs the whole model on the GPU, with the same equations: the embedding
lookup and its scatter-add gradient, the recurrent stack, the linear head (tiled GEMMs) and the
fused softmax cross-entropy are CUDA kernels (``rnnjit.kernels.cuda.dense`` is the twin of
``rnnjit.kernels.dense``), the parameters and gradients are device arrays made once, and so is
the hidden state carried from one chunk to the next (``forward_backward`` returns it on the
device; ``initial_state`` makes zeros there). A training step sends the two (T, B) arrays of
character ids to the GPU and brings back one number, the loss; with ``rnnjit.train.optim``
(which updates device arrays in place) the clipped gradient norm and the per-step norms of
dL/dh_t are the only other things that come back. ``state_dict()`` and ``load_state_dict()``
speak NumPy on both devices, as do ``params`` and ``grads`` (copies, on the GPU).

``cuda_graphs=True`` (what a new ``rnnjit train --device cuda`` run uses unless
``--no-cuda-graphs``): on the GPU, ``forward_backward`` captures its device work once per shape
as a CUDA graph and replays it from then on (``graphed.py``): one launch from the host instead of
dozens, the same numbers (dropout masks included); 2.4x the training tokens/s of the default
model on an H200. Off by default for a model made in Python; the CLI turns it on.
"""

from __future__ import annotations

import numpy as np

from ..grad_mode import no_grad
from .module import Module, check_sizes, checked_ids, flat_ids, layer_cell, make_layer, scalar


class CharLM(Module):
    layer_names = ("rnn",)

    def __init__(self, vocab_size: int, hidden_size: int = 128, num_layers: int = 2, cell: str = "lstm",
                 dropout: float = 0.0, embedding_size: int | None = None, input: str = "embedding",
                 dtype=np.float32, seed: int | None = None, nonlinearity: str | None = None,
                 device: str = "cpu", cuda_graphs: bool = False):
        layer_cell(cell, nonlinearity)            # rnn, rnn-relu, lstm or gru; nonlinearity for rnn only
        self._setup(device, cuda_graphs)
        if input not in ("embedding", "onehot"):
            raise ValueError(f"input must be 'embedding' or 'onehot', got {input!r}")
        check_sizes(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                    embedding_size=embedding_size)
        if input == "onehot" and embedding_size is not None:
            raise ValueError(f"embedding_size={embedding_size} does not apply to input='onehot' (its vectors are "
                             f"vocab_size wide): leave it out, or use input='embedding'")
        self.vocab_size, self.hidden_size, self.num_layers = int(vocab_size), int(hidden_size), int(num_layers)
        self.cell_name, self.input, self.dtype = cell, input, np.dtype(dtype).type
        E = self.vocab_size if input == "onehot" else int(embedding_size or hidden_size)
        self.embedding_size = E
        rnn_seed, own_seed = np.random.SeedSequence(seed).spawn(2)
        self.rnn = make_layer(cell, E, hidden_size, num_layers, dtype, int(rnn_seed.generate_state(1)[0]),
                              dropout=dropout, device=device, nonlinearity=nonlinearity)
        rng = np.random.default_rng(own_seed)
        bound = 1.0 / np.sqrt(hidden_size)
        params = {
            "decoder.weight": rng.uniform(-bound, bound, (self.vocab_size, hidden_size)).astype(dtype),
            "decoder.bias": np.zeros(self.vocab_size, dtype),
        }
        if input == "embedding":
            params["embedding.weight"] = rng.standard_normal((self.vocab_size, E)).astype(dtype)
        self._own(params)   # sent to the device once; one buffer with the layer's (nn/flat.py)
        self._graph_step([self.rnn])

    # ---- parameters: Module's (params, grads, parameters, state_dict, load_state_dict, train) --

    def initial_state(self, batch: int):
        """Zeros, on the model's device."""
        S = self.num_layers * self.rnn.num_directions
        h = self.xp.zeros((S, batch, self.hidden_size), self.dtype)
        return (h, self.xp.zeros(h.shape, self.dtype)) if self.rnn.cell.has_cell_state else h

    @property
    def hidden_grad_norms(self):
        return self.rnn.hidden_grad_norms

    # ---- forward and backward ---------------------------------------------------------------

    def _host_ids(self, x, what="inputs"):
        """Character ids (T, B) as a flat int64 NumPy array, checked to be in [0, vocab_size)
        (``checked_ids``: one line of ValueError, never an out-of-bounds read in a kernel)."""
        return flat_ids(checked_ids(x, what, "vocab_size", self.vocab_size))

    def _ids(self, x, what="inputs"):
        """``_host_ids`` sent to the model's device."""
        return self.xp.to_device(self._host_ids(x, what))

    @staticmethod
    def _check_pair(x, y):
        """x and y: (T, B) arrays of ids, one shape (the loss reads one target per input)."""
        if np.ndim(x) != 2 or np.shape(x) != np.shape(y) or 0 in np.shape(x):
            raise ValueError(f"x and y must be (T, B) arrays of ids of one shape, T and B >= 1, "
                             f"got {np.shape(x)} and {np.shape(y)}")

    def logits(self, x, state=None):
        """x (T, B) ids -> logits (T*B, V), next state (device arrays on the GPU). A state of
        None starts from zeros (``initial_state``)."""
        if np.ndim(x) != 2 or 0 in np.shape(x):
            raise ValueError(f"x must be a (T, B) array of ids (time-major, one column per sequence, "
                             f"at least one of each), got shape {np.shape(x)}")
        T, B = np.shape(x)
        return self._logits(self._ids(x), T, B, state)

    def _logits(self, ids, T, B, state):
        """``logits`` of flat ids (T*B,) already on the model's device."""
        if self.input == "onehot" and self.device == "cpu":
            # W_ih e_c is column c of W_ih: the first layer gathers columns instead of a GEMM
            out, new_state = self.rnn.forward_onehot(ids.reshape(T, B), state)
        else:
            if self.input == "onehot":     # on the GPU: the one-hot rows, then the layer's GEMM
                e = self.k.one_hot(ids, self.vocab_size, self.dtype)
            else:
                e = self.k.embedding_forward(self._params["embedding.weight"], ids)
            out, new_state = self.rnn(e.reshape(T, B, self.embedding_size), state)
        h = out.reshape(T * B, self.hidden_size)
        return self.k.linear_forward(h, self._params["decoder.weight"], self._params["decoder.bias"]), new_state, (ids, h)

    @no_grad()   # keeps nothing for backward (grad_mode.py)
    def loss(self, x, y, state=None):
        """Mean cross-entropy (nats per character) without gradients; returns loss, next state."""
        self._check_pair(x, y)
        targets = self._ids(y, "targets")
        z, new_state, _ = self.logits(x, state)
        return scalar(self.k.cross_entropy(z, targets)), new_state

    def forward_backward(self, x, y, state=None):
        """One truncated-BPTT chunk: loss, gradients (in ``grads``), and the state to carry on.

        With ``cuda_graphs=True`` on the GPU, from the third chunk of a shape on, the device work
        is one CUDA graph replay (``graphed.py``), the same kernels on the same numbers."""
        self._check_pair(x, y)
        T, B = np.shape(x)
        flat = [self._host_ids(x, "inputs"), self._host_ids(y, "targets")]   # checked on the host, both paths
        if self._graphed is not None and self._graphed.graphable():
            return self._graphed(flat, state, T, B)
        loss, new_state = self._step_on_device([self.xp.to_device(a) for a in flat], state, T, B)
        return scalar(loss), new_state

    def _step_on_device(self, ids, state, T, B):
        """forward_backward's work on the model's device: ids = [inputs, targets], flat (T*B,)
        int64 arrays there; returns the loss as the kernels give it (on the GPU a (1,) device
        array)."""
        ids, targets = ids
        z, new_state, (ids, h) = self._logits(ids, T, B, state)
        loss, dz = self.k.softmax_cross_entropy(z, targets)
        g = self._grads
        dh = self.k.linear_backward(h, self._params["decoder.weight"], dz, g["decoder.weight"], g["decoder.bias"])
        # the gradient of the input is wanted only by the embedding (nothing is upstream of one-hot vectors)
        de, _ = self.rnn.backward(dh.reshape(T, B, self.hidden_size), input_grad=self.input == "embedding")
        if self.input == "embedding":
            self.k.embedding_backward(g["embedding.weight"], ids, de.reshape(T * B, self.embedding_size))
        return loss, new_state
