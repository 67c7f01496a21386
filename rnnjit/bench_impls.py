"""The contestants of ``rnnjit bench``: one character model, three implementations.

Each has ``train_step(x, y)`` (one-hot input, recurrent stack, linear decoder, softmax
cross-entropy, BPTT, plain SGD), ``forward(x)`` (the logits) and ``sampler(n)`` (a function
that writes n characters one at a time). NumPy and torch start from rnnjit's weights.
"""

from .grad_mode import no_grad

V = 65  # characters: the size of tiny-shakespeare's vocabulary


_TORCH = []


def _torch():
    if not _TORCH:
        try:
            import torch
            _TORCH.append(torch)
        except ImportError:
            _TORCH.append(None)
    return _TORCH[0]


class RnnjitImpl:
    name = "rnnjit"

    def __init__(self, cell, B, T, H, layers, dtype, seed=0, device="cpu"):
        import numpy as np
        from .models.char_lm import CharLM
        from .train.optim import SGD
        self.np = np
        self.model = CharLM(V, H, layers, cell, input="onehot", dtype=dtype, seed=seed, device=device)
        self.opt = SGD(self.model.parameters(), lr=0.01)
        self.B, self.T = B, T

    def state_dict(self):
        return self.model.state_dict()

    def train_step(self, x, y):
        loss, _ = self.model.forward_backward(x, y, self.model.initial_state(self.B))
        self.opt.step()
        return loss

    def forward(self, x):
        self.model.eval()
        try:
            with no_grad():   # as torch's forward below runs under torch.no_grad()
                z, _, _ = self.model.logits(x, self.model.initial_state(x.shape[1]))
        finally:
            self.model.train()
        return z

    def sampler(self, n, seed=0):
        """rnnjit's own sampler, as a user calls it (``models.sample``: on the CPU a compiled loop
        over the characters, ``kernels/generate.py``), from character 0 and a zero state like
        the others: a one-character prime is read by that loop as its first step."""
        from .data.vocab import Vocab
        from .models import sample
        np = self.np
        vocab = Vocab([chr(33 + v) for v in range(V)])

        def run():
            text = sample(self.model, vocab, n, prime=vocab.chars[0], rng=np.random.default_rng(seed))
            return vocab.chars.index(text[-1])
        return run


class NumpyImpl:
    name = "numpy"

    def __init__(self, cell, B, T, H, layers, dtype, state):
        import numpy as np
        from .bench_ref import NumpyCharModel
        self.np = np
        self.model = NumpyCharModel(state, cell, layers, H, V, dtype)
        self.B = B

    def train_step(self, x, y):
        loss, _ = self.model.train_step(x, y, self.model.initial_state(self.B), lr=0.01)
        return loss

    def forward(self, x):
        return self.model.logits(x, self.model.initial_state(x.shape[1]))[0]

    def sampler(self, n, seed=0):
        np, model = self.np, self.model

        def run():
            rng = np.random.default_rng(seed)
            state = model.initial_state(1)
            c = 0
            for _ in range(n):
                z, state, _ = model.logits(np.array([[c]]), state)
                c = _draw(np, z[-1, 0], rng)
            return c
        return run


class TorchImpl:
    name = "torch"

    def __init__(self, cell, B, T, H, layers, dtype, state):
        import numpy as np
        torch = _torch()
        self.np, self.torch = np, torch
        tdt = torch.float32 if dtype == "float32" else torch.float64
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = cls(V, H, layers).to(tdt)
        self.dec = torch.nn.Linear(H, V).to(tdt)
        with torch.no_grad():
            for k, p in self.rnn.named_parameters():
                p.copy_(torch.from_numpy(np.asarray(state["rnn." + k])))
            self.dec.weight.copy_(torch.from_numpy(np.asarray(state["decoder.weight"])))
            self.dec.bias.copy_(torch.from_numpy(np.asarray(state["decoder.bias"])))
        self.params = list(self.rnn.parameters()) + list(self.dec.parameters())
        self.opt = torch.optim.SGD(self.params, lr=0.01)
        self.eye = torch.eye(V, dtype=tdt)
        self.H = H

    def train_step(self, x, y):
        torch = self.torch
        xt = self.eye[torch.from_numpy(x)]
        yt = torch.from_numpy(y.reshape(-1))
        self.opt.zero_grad(set_to_none=False)
        out, _ = self.rnn(xt)
        loss = torch.nn.functional.cross_entropy(self.dec(out.reshape(-1, self.H)), yt)
        loss.backward()
        self.opt.step()
        return loss.item()

    def forward(self, x):
        torch = self.torch
        with torch.no_grad():
            out, _ = self.rnn(self.eye[torch.from_numpy(x)])
            return self.dec(out.reshape(-1, self.H)).numpy()

    def sampler(self, n, seed=0):
        np, torch = self.np, self.torch

        def run():
            rng = np.random.default_rng(seed)
            state, c = None, 0
            with torch.no_grad():
                for _ in range(n):
                    out, state = self.rnn(self.eye[c].reshape(1, 1, -1), state)
                    z = self.dec(out[0]).numpy()
                    c = _draw(np, z[-1], rng)
            return c
        return run


def _draw(np, z, rng):
    """One character from softmax(z), by inverting the CDF with one uniform draw (same for all)."""
    p = np.exp(z - z.max())
    cdf = np.cumsum(p)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1])), z.shape[0] - 1)


IMPL_CLASSES = {"rnnjit": RnnjitImpl, "numpy": NumpyImpl, "torch": TorchImpl}
