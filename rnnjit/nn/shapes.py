"""What a recurrent layer checks and reshapes around its kernels: the input and state arguments
(one-line errors for a wrong dtype, rank or shape), the unbatched and batch_first layouts, and
the way results go back to the caller (host or device). Functions of a layer
(``rnnjit.nn.recurrent.Recurrent``)."""

import numpy as np

STATE_NAMES = {"hx": "(h0, c0)", "dhx": "(dh_n, dc_n)"}


def add_batch_axis(a, xp):
    """(S, H) -> (S, 1, H): an unbatched array as a batch of one (a view). Other shapes pass
    through unchanged, for the shape checks to report."""
    a = a if xp.on_device(a) else np.asarray(a)
    return a.reshape(a.shape[0], 1, a.shape[1]) if a.ndim == 2 else a


def shape_text(a) -> str:
    return "(" + ", ".join(str(n) for n in a.shape) + ")"


def as_array(layer, name, a):
    """An argument (x, a state, dout) as the kernels take it; device arrays pass unchanged.
    Arrays keep their dtype for the dtype checks to judge (strict as PyTorch), but one of the
    other byte order becomes native and a read-only one is copied: Numba would compile a new
    version of every kernel for either (seconds). A list, tuple or Python number (no __array__)
    becomes an array of the layer's dtype, as torch.tensor would read it."""
    if layer.xp.on_device(a):
        return a
    if hasattr(a, "__array__"):           # NumPy arrays, torch tensors: dtype left to the checks
        a = np.asarray(a)
        if not a.dtype.isnative:
            return a.astype(a.dtype.newbyteorder("="))
        return a if a.flags.writeable else a.copy()
    try:
        read = np.asarray(a)
    except ValueError as e:                # ragged nested lists
        raise ValueError(f"{name} is a {type(a).__name__} that is not a rectangular array: {e}") from None
    if read.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got a {type(a).__name__} that NumPy reads as {read.dtype.name}")
    return read.astype(layer.dtype)


def check_state(layer, name, s, B, unbatched):
    """A state (h0, c0, dh_n or dc_n) checked: dtype and shape, on the layer's device, with a
    batch axis of 1 added when x is unbatched."""
    S, H = layer.num_layers * layer.num_directions, layer.hidden_size
    s = as_array(layer, name, s)
    if s.dtype != layer.dtype:
        raise TypeError(f"{name} has dtype {s.dtype.name}, but the layer is {np.dtype(layer.dtype).name}")
    shape = tuple(s.shape)
    if unbatched:                       # (S, H) as PyTorch takes it; (S, 1, H) passes too
        if shape not in ((S, H), (S, 1, H)):
            raise ValueError(f"{name} must have shape {(S, H)} (layers*directions, hidden) for unbatched x, "
                             f"got {shape_text(s)}")
        s = add_batch_axis(s, layer.xp)
    elif shape != (S, B, H):
        raise ValueError(f"{name} must have shape {(S, B, H)} (layers*directions, batch, hidden), got {shape_text(s)}")
    return layer.xp.to_device(s)


def check_input(layer, x):
    """x checked against the layer: dtype, rank, features, not empty (one line each)."""
    x = as_array(layer, "x", x)
    if x.dtype != layer.dtype:          # suggest only what works: layers are float32 or float64
        want = np.dtype(layer.dtype).name
        other = f" or build the layer with dtype=np.{x.dtype.name}" if x.dtype in (np.float32, np.float64) else ""
        raise TypeError(f"x has dtype {x.dtype.name}, but the layer is {want}: pass x.astype(np.{want}){other}")
    if x.ndim not in (2, 3):
        layout = "(batch, seq, input)" if layer.batch_first else "(seq, batch, input)"
        raise ValueError(f"x must be 3-D {layout} or 2-D (seq, input), got shape {shape_text(x)}")
    features = x.shape[x.ndim - 1]
    if features != layer.input_size:
        raise ValueError(f"x has {features} features in its last axis, expected input_size={layer.input_size} "
                         f"(shape {shape_text(x)})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have at least one timestep and one batch item, got shape {shape_text(x)}")
    return x


def split_state(layer, name, hx, unbatched, B):
    """(h, c) from hx as forward or backward takes it (c is None without a cell state);
    zeros for None; checked, one batch row added when unbatched, on the layer's device."""
    lstm = layer.cell.has_cell_state
    h = c = None
    if hx is not None:
        if lstm:
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise ValueError(f"{name} for an LSTM must be a tuple {STATE_NAMES[name]}")
            h, c = hx
        else:
            h = hx
    names = STATE_NAMES[name][1:-1].split(", ")
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    h = zero_state(layer, shape) if h is None else check_state(layer, names[0], h, B, unbatched)
    if lstm:
        c = zero_state(layer, shape) if c is None else check_state(layer, names[1], c, B, unbatched)
    return h, c


def zero_state(layer, shape):
    """Zeros for a state the caller did not give. On the GPU one array per shape, kept on the
    layer: the kernels only read initial states and final-state gradients, and a new array per
    call cost an allocation and a fill launch each, where a small model's step waits on the host
    (benchmarks/README.md). On the CPU a new array, which costs next to nothing."""
    if layer.device != "cuda":
        return layer.xp.zeros(shape, layer.dtype)
    kept = layer.__dict__.setdefault("_zero_states", {})
    if shape not in kept:
        kept[shape] = layer.xp.zeros(shape, layer.dtype)
    return kept[shape]


def results(layer, y, states, unbatched, to_host):
    """The outputs as the caller expects them: unbatched or batch_first, host or device.
    y may be None (backward without the input's gradient)."""
    xp = layer.xp
    if unbatched:
        y = None if y is None else y.reshape(y.shape[0], y.shape[2])
        states = [None if s is None else s.reshape(s.shape[0], s.shape[2]) for s in states]
    elif layer.batch_first and y is not None:
        y = xp.swap01(y)
    if to_host:
        y, states = None if y is None else xp.to_host(y), [xp.to_host(s) for s in states]
    return y, states


def loadable(name: str, value, shape: tuple, dtype) -> np.ndarray:
    """``value`` for parameter ``name`` as a C-contiguous NumPy array of ``dtype``, once it is
    known to be real numbers of ``shape``; otherwise a one-line ValueError naming ``name``.
    A torch tensor is detached and copied to the host first (one that requires grad included);
    a device array is copied to the host."""
    if hasattr(value, "detach"):                               # torch.Tensor, maybe on a GPU
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError):                      # bfloat16 and the like: NumPy has none
            raise ValueError(f"load_state_dict: {name} is a tensor of {value.dtype}, which NumPy cannot "
                             f"hold: convert it with .float() first") from None
    elif hasattr(value, "copy_to_host"):
        value = value.copy_to_host()
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as e:                       # a ragged list, say
        raise ValueError(f"load_state_dict: {name} is not an array: {str(e).splitlines()[0]}") from None
    if a.dtype.kind not in "fiu":
        raise ValueError(f"load_state_dict: {name} has dtype {a.dtype}, expected real numbers (float32 or "
                         f"float64): convert it first")
    if a.shape != shape:
        raise ValueError(f"load_state_dict: {name} has shape {a.shape}, expected {shape}")
    return np.ascontiguousarray(a, dtype=dtype)
