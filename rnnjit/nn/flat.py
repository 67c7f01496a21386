"""All of a model's parameters in one buffer, and all its gradients in another.

Why: the optimizer update, gradient clipping and the global gradient norm are elementwise over
every parameter. With the parameters scattered over a dozen arrays each of those is a dozen
calls: a dozen kernel launches per step on the GPU (a few microseconds each, which adds up for
a small model whose whole step is a millisecond), a dozen Python-to-Numba calls on the CPU.
Over one buffer each is a single call. PyTorch's ``flatten_parameters`` and its "foreach"/fused
optimizers do the same for the same reason.

Nothing else changes: every parameter is still an array of its own name and shape (a view into
the buffer), layers and kernels read and write those views as before, and ``state_dict()``,
checkpoints and optimizer states keep their per-parameter keys.

Layout: parameter i (in the order of ``parameters()``) lives at

    params[offset_i : offset_i + size_i].reshape(shape_i)       (grads: the same offsets)

with each offset rounded up to ``ALIGN`` elements (256 bytes of float32: whole cache lines on
the CPU, whole memory transactions on the GPU). The gaps between parameters are zero in both
buffers and stay zero under every update (there g = 0, so SGD's velocity stays 0, Adagrad's,
RMSprop's and Adam's steps lr * 0 / (sqrt(0) + eps) are 0), and they add nothing to the norm.

How it is used: a model (or a lone layer) calls ``flatten([itself, its layers...], xp)`` once,
when it is built; the layers' arrays are moved into the one buffer (and stop having their own).
``parameters()`` then returns a ``ParameterList``, a plain list of (name, array, grad) that also
carries ``flat``: ``rnnjit.train.optim`` uses it when it is there (one update for all), and
falls back to one update per parameter for any other list, such as a filtered one.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64


@dataclass
class Flat:
    """The two buffers and where each parameter sits in them."""

    params: object                              # 1-D array (NumPy or device) of every parameter
    grads: object                               # 1-D array of every gradient, same layout
    slots: tuple[tuple[int, tuple], ...]        # (offset, shape) of parameter i
    checked: tuple = ()                         # ids of the arrays ``holds`` last found in place

    def view(self, buf, i):
        """Parameter i's part of a buffer laid out like ``params`` (its own shape, no copy)."""
        offset, shape = self.slots[i]
        size = 1
        for n in shape:
            size *= n
        return buf[offset:offset + size].reshape(shape)


def _extent(a):
    """(first byte address, byte count) of a NumPy or device array's memory."""
    if hasattr(a, "device_ctypes_pointer"):
        return int(a.device_ctypes_pointer.value or 0), a.nbytes
    return a.__array_interface__["data"][0], a.nbytes


def holds(flat: Flat, triples) -> bool:
    """True when the arrays of ``triples`` (name, array, grad) are still the views that ``flat``
    laid out, in its order. A copy of a model (``copy.deepcopy`` copies every view on its own)
    or a parameter rebound to a new array is not: an optimizer must then update each array."""
    triples = list(triples)
    ids = tuple(id(a) for _, p, g in triples for a in (p, g))
    if ids == flat.checked:          # the same arrays as last time (the engine asks every step)
        return True
    if len(triples) != len(flat.slots):
        return False
    p0, _ = _extent(flat.params)
    g0, _ = _extent(flat.grads)
    size = flat.params.dtype.itemsize
    for (_, p, g), (offset, shape) in zip(triples, flat.slots):
        if tuple(p.shape) != shape or _extent(p)[0] != p0 + offset * size or _extent(g)[0] != g0 + offset * size:
            return False
    flat.checked = ids
    return True


class ParameterList(list):
    """What ``parameters()`` returns: (name, array, grad) triples, plus ``flat`` (a ``Flat`` whose
    i-th slot is the i-th triple's array) when every one of them lives in one buffer."""

    def __init__(self, triples, flat: Flat | None = None):
        super().__init__(triples)
        self.flat = flat


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def flatten(owners, xp) -> Flat | None:
    """Move the ``_params`` and ``_grads`` of every owner (objects holding them as dicts, in the
    order their ``parameters()`` lists them) into one parameter buffer and one gradient buffer,
    and rebind the dicts' entries to views of them. Returns the ``Flat``, or None (nothing moved)
    when the parameters do not share one dtype. Each owner's own ``_flat`` is reset to None: its
    arrays now belong to the new buffer."""
    entries = [(o, k) for o in owners for k in o._params]
    dtypes = {o._params[k].dtype for o, k in entries}
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    slots, offset = [], 0
    for o, k in entries:
        slots.append((offset, tuple(o._params[k].shape)))
        offset = _aligned(offset + o._params[k].size)
    flat = Flat(xp.zeros(offset, dtype), xp.zeros(offset, dtype), tuple(slots))
    for i, (o, k) in enumerate(entries):
        p, g = flat.view(flat.params, i), flat.view(flat.grads, i)
        xp.assign(p, o._params[k])
        xp.assign(g, o._grads[k])
        o._params[k], o._grads[k] = p, g
    for o in owners:
        o._flat = None
    return flat
