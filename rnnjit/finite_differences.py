"""Check a layer's analytic gradients against central finite differences, in float64.

    dL/dθ_i  ≈  (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε        error O(ε²)

The loss is a fixed random projection of everything the layer returns,
L = Σ out ⊙ G + Σ h_n ⊙ G_h (+ Σ c_n ⊙ G_c), so every output and every state gradient is
exercised. For each parameter (and for the input and initial state) the error reported is

    max_i |analytic_i − numeric_i|  /  max(max_i |analytic_i|, max_i |numeric_i|)

the worst entry's error relative to the scale of that gradient (entry-wise relative errors are
meaningless for entries that happen to be near zero). Below about 1e-7 the gradients agree;
a bug shows as 1e-2 or worse.
"""

from __future__ import annotations

import numpy as np

from .nn.recurrent import Recurrent


def _float64_twin(layer: Recurrent) -> Recurrent:
    kwargs = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=False, dropout=0.0,
                  bidirectional=layer.bidirectional, dtype=np.float64)
    if layer.cell_name == "rnn":
        kwargs["nonlinearity"] = layer.nonlinearity
    twin = type(layer)(layer.input_size, layer.hidden_size, **kwargs)
    twin.load_state_dict(layer.state_dict())
    return twin


def gradcheck(layer: Recurrent, seq_len: int = 4, batch: int = 2, eps: float = 1e-6,
              max_entries: int = 24, seed: int = 0) -> dict[str, float]:
    """Worst relative error of every parameter's gradient (and of ``input`` and ``h0``/``c0``).

    The layer is copied to float64 without dropout; at most ``max_entries`` entries of each
    array are perturbed (chosen at random, seeded), so the check stays quick for big layers.
    """
    if not isinstance(layer, Recurrent):
        raise TypeError(f"gradcheck takes a recurrent layer (rnnjit.RNN, LSTM or GRU; for a model, "
                        f"its layer, e.g. model.rnn), got {type(layer).__name__}")
    net = _float64_twin(layer).eval()
    rng = np.random.default_rng(seed)
    T, B, H = seq_len, batch, net.hidden_size
    S = net.num_layers * net.num_directions
    lstm = net.cell.has_cell_state
    x = rng.standard_normal((T, B, net.input_size))
    h0 = rng.standard_normal((S, B, H)) * 0.5
    c0 = rng.standard_normal((S, B, H)) * 0.5 if lstm else None
    G = rng.standard_normal((T, B, H * net.num_directions))
    Gh = rng.standard_normal((S, B, H))
    Gc = rng.standard_normal((S, B, H)) if lstm else None

    def loss():
        if lstm:
            out, (h_n, c_n) = net(x, (h0, c0))
            return float((out * G).sum() + (h_n * Gh).sum() + (c_n * Gc).sum())
        out, h_n = net(x, h0)
        return float((out * G).sum() + (h_n * Gh).sum())

    loss()
    if lstm:
        dx, (dh0, dc0) = net.backward(G, (Gh, Gc))
        arrays = {"input": (x, dx), "h0": (h0, dh0), "c0": (c0, dc0)}
    else:
        dx, dh0 = net.backward(G, Gh)
        arrays = {"input": (x, dx), "h0": (h0, dh0)}
    arrays.update({k: (net.params[k], net.grads[k].copy()) for k in net.params})

    return compare_with_finite_differences(loss, arrays, max_entries, eps, rng)


def compare_with_finite_differences(loss, arrays: dict, max_entries: int = 24, eps: float = 1e-6,
                                    rng: np.random.Generator | None = None, floor: float = 1e-300) -> dict[str, float]:
    """For each name -> (array, analytic gradient): the worst error of the analytic gradient against
    central differences of ``loss()`` at up to ``max_entries`` random entries, relative to the
    larger of the two gradients' scales (never below ``floor``). The arrays are perturbed in place
    and restored; ``loss`` must read them."""
    rng = rng if rng is not None else np.random.default_rng(0)
    errors = {}
    for name, (value, analytic) in arrays.items():
        flat = value.reshape(-1)
        idx = rng.choice(flat.size, size=min(max_entries, flat.size), replace=False)
        numeric = np.empty(idx.size)
        for n, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            numeric[n] = (up - down) / (2 * eps)
        a = analytic.reshape(-1)[idx]
        scale = max(np.abs(a).max(), np.abs(numeric).max(), floor)
        errors[name] = float(np.abs(a - numeric).max() / scale)
    return errors
