"""Shape checks for the kernels' arguments: one call at the top of each kernel.

An argument of the wrong shape gets a one-line ``ValueError`` that names the kernel and the
array, and says the shape it must have (in symbols and in numbers) and the shape it has:

    lstm_forward: W_ih must be (4*H, I) = (16, 300): 4*H rows (H = 4, from h0) and one column
    per feature of x (I = 300); got (16, 1)

Without them the products inside the kernels read past the ends of the arrays, return garbage,
or hand OpenBLAS a leading dimension it rejects (it prints a complaint to stdout and leaves
the result zero).

The checks take the arrays' shapes (``x.shape``, ...), not the arrays: a compiled call that
takes arrays increfs and decrefs each of them, which cost 50-80 ns a kernel call, against under
10 ns for these few integer comparisons. They run once per call, never inside a time loop;
when one fails it raises ``ShapeError`` with the pieces of the message, and Python puts the
message together (string code compiled into every check cost more compile time than the math).

G is the number of gates, blocks of H rows in W_ih and W_hh: 1 for the RNN, 4 for the LSTM, 3
for the GRU. An array a cell does not have (c0, gates, ...) is passed as None. Empty inputs
(T = 0, B = 0) are fine: a sequence of no steps returns h0.

The CUDA twins' host functions run the same checks as plain Python (``check_forward_host``,
``check_backward_host``).

The types of the arguments (NumPy arrays of the right number of dimensions, C-contiguous, one
float dtype) are checked before Numba compiles a kernel for them (``checked_types``), so that
a list or a float16 array is a one-line ``TypeError`` rather than Numba's typing error.
"""

import inspect

import numpy as np
from numba import njit


def shape_text(shape):
    """(16, 300) -> "(16, 300)"; (16,) -> "(16,)"."""
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


def state_name(kernel, h):
    """The name of a kernel's initial state: "h0" ("c0"), or "prev_h" ("prev_c") in a step kernel."""
    return "prev_" + h if "_step_" in kernel else h + "0"


class ShapeError(ValueError):
    """A failed shape check: argument ``name`` of kernel ``kernel`` has shape ``got`` where it must
    have ``form`` (in symbols, G*H for the gate rows) = ``want`` (in numbers); ``note`` says why,
    with ``values`` in its ``{0}``, ``{1}``... and the kernel's state names in ``{h}``, ``{c}``.

    Compiled code raises it with these pieces, which Numba hands to Python as they are, and the
    message is put together here. Building it inside compiled code (``str(H)``, ``+``,
    ``replace``) was most of what Numba compiled for a kernel: each call site of a check is a
    new version of it (the kernel's name and the argument's are literal strings, a type each),
    and each version compiled the string code again, about a second apiece. ``rnnjit train``'s
    default model reached the end of its first step from an empty Numba cache in 61 s with the
    messages built in compiled code, in 23 s with them built here (Intel Xeon)."""

    def __str__(self):
        kernel, G, name, form, want, got, note, values = self.args
        rows = "H" if G == 1 else f"{G}*H"
        names = {"h": state_name(kernel, "h"), "c": state_name(kernel, "c")}
        return (f"{kernel}: {name.format(**names)} must be {form.replace('G*H', rows)} = {shape_text(want)}"
                f"{note.format(*values, **names).replace('G*H', rows)}; got {shape_text(got)}")


class BackwardShapeError(ShapeError):
    """A ``ShapeError`` of a backward kernel's array, whose note ends by saying where T, B and H
    come from: ``values`` is (T, B, H, "x" or "dout")."""

    def __str__(self):
        kernel, G, name, form, want, got, note, values = self.args
        return str(ShapeError(kernel, G, name, form, want, got,
                              note + " (T = {0}, B = {1} from {3}; H = {2} from W_hh)", values))


class IndexRangeError(ValueError):
    """An index outside [0, V): ``name[n] = value``; ``what`` says what the indices name."""

    def __str__(self):
        kernel, name, n, value, V, what = self.args
        return f"{kernel}: {name}[{n}] = {value} is outside [0, {V}): {what}"


@njit(cache=True, nogil=True)
def check_forward(kernel, G, x, h0, c0, W_ih, W_hh, b_ih, b_hh, onehot=False):
    """The shapes of a forward kernel's arguments. x is the input, (T, B, I), or (B, I) for a
    step, or the one-hot indices ids (T, B) when ``onehot`` (W_ih then has one column per
    symbol, any number of them). H is h0[1]: h0 and c0 (B, H), W_ih (G*H, I), W_hh (G*H, H),
    b_ih and b_hh (G*H,)."""
    B = x[-1] if onehot else x[-2]
    I = W_ih[1] if onehot else x[-1]
    H = h0[1]
    if h0[0] != B:
        raise ShapeError(kernel, G, "{h}", "(B, H)", (B, H), h0,
                         ": one row per sequence of ids (B = {0})" if onehot
                         else ": one row per sequence of x (B = {0})", (B,))
    if c0 is not None and c0 != (B, H):
        raise ShapeError(kernel, G, "{c}", "(B, H)", (B, H), c0, ", the shape of {h}", ())
    if W_ih != (G * H, I):
        if onehot:
            raise ShapeError(kernel, G, "W_ih", "(G*H, V)", (G * H, I), W_ih,
                             ": G*H rows (H = {0}, from {h}) and one column per symbol", (H,))
        raise ShapeError(kernel, G, "W_ih", "(G*H, I)", (G * H, I), W_ih,
                         ": G*H rows (H = {0}, from {h}) and one column per feature of x (I = {1})", (H, I))
    if W_hh != (G * H, H):
        raise ShapeError(kernel, G, "W_hh", "(G*H, H)", (G * H, H), W_hh, " (H = {0}, from {h})", (H,))
    if b_ih != (G * H,):
        raise ShapeError(kernel, G, "b_ih", "(G*H,)", (G * H,), b_ih,
                         ", one per row of W_ih (H = {0}, from {h})", (H,))
    if b_hh != (G * H,):
        raise ShapeError(kernel, G, "b_hh", "(G*H,)", (G * H,), b_hh,
                         ", one per row of W_hh (H = {0}, from {h})", (H,))


@njit(cache=True, nogil=True)
def check_backward(kernel, G, x, W_ih, W_hh, hs, cs, gates, hns, dout, dh_n, dc_n):
    """The shapes of a backward kernel's arguments: T and B from x (T, B, I), or from dout when
    x is None (the recurrent part on its own), H from W_hh (G*H, H). W_ih (G*H, I); what the
    forward pass returned: hs and cs (T+1, B, H), gates (T, B, G*H), hns (T, B, H); dout
    (T, B, H); dh_n and dc_n (B, H). x with W_ih, cs, gates, hns, dc_n: None where a kernel
    does not take them."""
    T, B = (x[0], x[1]) if x is not None else (dout[0], dout[1])
    H = W_hh[1]
    dims = (T, B, H, "x" if x is not None else "dout")    # where they come from, for BackwardShapeError
    if W_hh[0] != G * H:
        raise ShapeError(kernel, G, "W_hh", "(G*H, H)", (G * H, H), W_hh, ": G*H rows for its H = {0} columns", (H,))
    if W_ih is not None and W_ih != (G * H, x[2]):
        raise ShapeError(kernel, G, "W_ih", "(G*H, I)", (G * H, x[2]), W_ih,
                         ": G*H rows (H = {0}, from W_hh) and one column per feature of x (I = {1})", (H, x[2]))
    if hs != (T + 1, B, H):
        raise BackwardShapeError(kernel, G, "hs", "(T+1, B, H)", (T + 1, B, H), hs,
                                 ": the states the forward pass returned", dims)
    if cs is not None and cs != (T + 1, B, H):
        raise BackwardShapeError(kernel, G, "cs", "(T+1, B, H)", (T + 1, B, H), cs,
                                 ": the cell states the forward pass returned", dims)
    if gates is not None and gates != (T, B, G * H):
        raise BackwardShapeError(kernel, G, "gates", "(T, B, G*H)", (T, B, G * H), gates,
                                 ": the gates the forward pass returned", dims)
    if hns is not None and hns != (T, B, H):
        raise BackwardShapeError(kernel, G, "hns", "(T, B, H)", (T, B, H), hns,
                                 ": the hns the forward pass returned", dims)
    if dout != (T, B, H):
        raise BackwardShapeError(kernel, G, "dout", "(T, B, H)", (T, B, H), dout, ": the gradient of the outputs", dims)
    if dh_n != (B, H):
        raise BackwardShapeError(kernel, G, "dh_n", "(B, H)", (B, H), dh_n, ": the gradient of the final state", dims)
    if dc_n is not None and dc_n != (B, H):
        raise BackwardShapeError(kernel, G, "dc_n", "(B, H)", (B, H), dc_n,
                                 ": the gradient of the final cell state", dims)


@njit(cache=True, nogil=True)
def check_step_backward(kernel, dnext_h, dnext_c, prev_h):
    """The shapes of the gradients a step backward takes, dnext_h and dnext_c (None for a cell
    without a cell state): (B, H), the shape of the step's states (prev_h, from its cache)."""
    if dnext_h != prev_h:
        raise ShapeError(kernel, 1, "dnext_h", "(B, H)", prev_h, dnext_h, ", the shape of the step's states", ())
    if dnext_c is not None and dnext_c != prev_h:
        raise ShapeError(kernel, 1, "dnext_c", "(B, H)", prev_h, dnext_c, ", the shape of the step's states", ())


# ---- the dense kernels: embedding, linear, softmax cross-entropy ------------------------------

@njit(cache=True, nogil=True)
def check_indices(kernel, name, ids, V, what):
    """Every index in ids (1-D) in [0, V): the first one outside is named with its position."""
    for n in range(ids.shape[0]):
        if ids[n] < 0 or ids[n] >= V:
            raise IndexRangeError(kernel, name, n, ids[n], V, what)


@njit(cache=True, nogil=True)
def check_rows(kernel, name, form, want, got, note, values=()):
    """A shape check of the dense kernels (no gates: G = 1)."""
    if got != want:
        raise ShapeError(kernel, 1, name, form, want, got, note, values)


@njit(cache=True, nogil=True)
def check_linear(kernel, h, W, b, dz, dW, db):
    """The shapes of a linear layer's arguments: h (N, H), W (V, H), b (V,); in backward dz (N, V),
    dW (V, H), db (V,) (None in forward)."""
    N, H = h
    V = W[0]
    check_rows(kernel, "W", "(V, H)", (V, H), W, ": one column per feature of h (H = {0})", (H,))
    if b is not None:
        check_rows(kernel, "b", "(V,)", (V,), b, ": one bias per row of W (V = {0})", (V,))
    if dz is not None:
        check_rows(kernel, "dz", "(N, V)", (N, V), dz, ": one row per row of h, one column per row of W")
    if dW is not None:
        check_rows(kernel, "dW", "(V, H)", (V, H), dW, ", the shape of W")
    if db is not None:
        check_rows(kernel, "db", "(V,)", (V,), db, ": one per row of W")


# ---- the same checks as plain Python, for the CUDA twins' host functions ---------------------

def shape(a):
    """A device array's shape as a plain tuple (the simulator's shapes are a tuple subclass, and
    the messages compare and print plain tuples); None stays None."""
    return None if a is None else tuple(a.shape)


def check_forward_host(kernel, G, x, h0, c0, W_ih, W_hh, b_ih, b_hh):
    """``check_forward`` of device arrays, as plain Python."""
    check_forward.py_func(kernel, G, *map(shape, (x, h0, c0, W_ih, W_hh, b_ih, b_hh)))


def check_backward_host(kernel, G, x, W_ih, W_hh, hs, cs, gates, hns, dout, dh_n, dc_n, into=None):
    """``check_backward`` of device arrays, as plain Python; and the arrays a CUDA backward is
    asked to write its results into (``into``: dh0, dc0 for a cell with a cell state, dW_ih,
    dW_hh, db_ih, db_hh, norms; None for any), which must have the shapes of those results: the
    kernels would write past the end of a smaller one."""
    check_backward.py_func(kernel, G, *map(shape, (x, W_ih, W_hh, hs, cs, gates, hns, dout, dh_n, dc_n)))
    if into is None:
        return
    T, B, I = x.shape
    H = W_hh.shape[1]
    wanted = {"dh0": (B, H), "dc0": (B, H), "dW_ih": (G * H, I), "dW_hh": (G * H, H),
              "db_ih": (G * H,), "db_hh": (G * H,), "norms": (T,)}
    if dc_n is None:
        del wanted["dc0"]
    if len(into) != len(wanted):
        raise ValueError(f"{kernel}: into must hold {len(wanted)} arrays or None, for {', '.join(wanted)}; "
                         f"got {len(into)}")
    for (name, want), a in zip(wanted.items(), into):
        if a is not None and shape(a) != want:
            raise ValueError(f"{kernel}: into's {name} must be {want}, the shape of the {name} it receives; "
                             f"got {shape(a)}")


# ---- the types of the arguments, checked before Numba compiles a kernel for them -------------

# The number of dimensions of each array argument, by its name (the names are the same in every
# kernel); a step kernel's x and states have no time axis.
NDIM = {"x": 3, "ids": 2, "h0": 2, "c0": 2, "W_ih": 2, "W_hh": 2, "b_ih": 1, "b_hh": 1,
        "hs": 3, "cs": 3, "gates": 3, "hns": 3, "dout": 3, "dh_n": 2, "dc_n": 2,
        "prev_h": 2, "prev_c": 2, "dnext_h": 2, "dnext_c": 2}
STEP_NDIM = {"x": 2}
DENSE_NDIM = {"E": 2, "dE": 2, "h": 2, "W": 2, "b": 1, "z": 2, "dz": 2, "dW": 2, "db": 1, "y": 1}
NDIM.update(DENSE_NDIM)
INDICES = {"ids": "symbol indices", "y": "target classes"}
FLAGS = ("reverse", "use_relu")
OUTPUTS = ("dE", "dW", "db")      # arrays a kernel writes its results into
FLOATS = ("float32", "float64")


def describe(value) -> str:
    """A value's type as a user would name it: "float64 array (3, 2, 4)", "list", "int"."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {value.shape}"
    return type(value).__name__


def argument_type_error(kernel: str, names, args, ndims=None) -> str:
    """What is wrong with the types of a kernel's arguments, in one line ("" if nothing is).

    The arrays must be NumPy arrays with the dimensions ``NDIM`` gives, all float32 or all float64
    (the one-hot ids: any integer type), and C-contiguous for the sequence kernels (their loops
    and BLAS calls assume rows laid end to end); the flags must be True or False.
    """
    step = "_step_" in kernel
    floats = {}
    for name, value in zip(names, args):
        if name in FLAGS:
            if not isinstance(value, (bool, np.bool_)):
                return f"{kernel}: {name} must be True or False; got {describe(value)}"
            continue
        if name == "cache":
            if not isinstance(value, tuple) or not all(isinstance(a, np.ndarray) for a in value):
                return (f"{kernel}: cache must be the tuple of arrays the step's forward returned; "
                        f"got {describe(value)}")
            floats.update((f"cache[{i}]", a.dtype.name) for i, a in enumerate(value))
            continue
        ndim = (ndims or {}).get(name) or (STEP_NDIM.get(name, NDIM[name]) if step else NDIM[name])
        if not isinstance(value, np.ndarray):
            return f"{kernel}: {name} must be a {ndim}-D NumPy array; got {describe(value)}: pass np.asarray({name})"
        if value.ndim != ndim:
            return f"{kernel}: {name} must be a {ndim}-D array; got {value.ndim}-D {value.shape}"
        if not value.dtype.isnative:
            return (f"{kernel}: {name} has non-native byte order ({value.dtype.str}): "
                    f"pass {name}.astype({name}.dtype.newbyteorder('='))")
        if name in INDICES:
            if value.dtype.kind not in "iu":
                return f"{kernel}: {name} must be an integer array ({INDICES[name]}); got {value.dtype}"
        else:
            if value.dtype.name not in FLOATS:
                return (f"{kernel}: {name} is {value.dtype}: the kernels compute in float32 or float64; "
                        f"pass {name}.astype(np.float32)")
            floats[name] = value.dtype.name
        if not value.flags.c_contiguous and not step:   # the step kernels' NumPy-style products take any
            return f"{kernel}: {name} is not C-contiguous (a slice or a transpose): pass np.ascontiguousarray({name})"
    if len(set(floats.values())) > 1:
        first = next(iter(floats))
        other = next(n for n, d in floats.items() if d != floats[first])
        return (f"{kernel}: the arrays must share one dtype; {first} is {floats[first]} but {other} is "
                f"{floats[other]}: convert them all with .astype(np.float32) or all with .astype(np.float64)")
    return ""


def checked_types(kernel=None, **ndims):
    """Check the types of a compiled kernel's arguments before Numba compiles a version of it for
    them, and raise a one-line ``TypeError`` instead of Numba's page-long typing error (or a version
    that computes in int64, which Numba would compile without complaint).

    Numba calls a dispatcher's ``_compile_for_args`` only for argument types it has not compiled
    (or loaded from its cache) in this process; calls with known types never reach it. The check
    therefore costs nothing per call: it runs once for each new combination of types.

    ``@checked_types(ids=1)`` gives an argument a number of dimensions other than ``NDIM``'s.

    A read-only input array (``np.load(..., mmap_mode="r")``, ``broadcast_to``) is a type of its
    own to Numba, which would compile the kernel again for it (seconds); it is copied instead, and
    the call goes on with the copy. An array the kernel writes into must be writeable.
    """
    if kernel is None:
        return lambda k: checked_types(k, **ndims)
    compile_for_args = kernel._compile_for_args
    name = kernel.py_func.__name__
    signature = inspect.signature(kernel.py_func)

    def compile_checked(*args, **kws):
        try:
            bound = signature.bind(*args, **kws)
        except TypeError as e:
            raise TypeError(f"{name}: {e}; it takes {signature}") from None
        given = bound.arguments
        message = argument_type_error(name, list(given), list(given.values()), ndims)
        if message:
            raise TypeError(message)
        frozen = [n for n, v in given.items() if isinstance(v, np.ndarray) and not v.flags.writeable]
        if frozen:      # a read-only array is another type to Numba: seconds of compiling, for every kernel
            written = [n for n in frozen if n in OUTPUTS]
            if written:
                raise TypeError(f"{name}: {written[0]} is read-only, and the kernel writes its result into it: "
                                f"pass a writeable array")
            for n in frozen:
                given[n] = given[n].copy()
            return lambda *_, **__: kernel(*bound.args, **bound.kwargs)
        return compile_for_args(*args, **kws)   # -> what Numba then calls with the arguments

    kernel._compile_for_args = compile_checked
    return kernel
