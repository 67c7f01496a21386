"""The few array operations a layer or a model does between kernel calls, on device arrays.

``rnnjit.nn.recurrent`` and ``rnnjit.models.char_lm`` are written once for both devices: they
call these through a namespace, this module on the GPU and ``rnnjit.nn.arrays.NumpyArrays``
(the same names over NumPy) on the CPU. Each operation here is a call of a small kernel from
``elementwise.py`` (or a device allocation / copy): nothing goes to the host.

    on_device(a)                         is a a device array?
    to_device(a) / to_host(a)            copy across (device arrays pass to_device unchanged)
    host_copy(a)                         a NumPy copy (state_dict, checkpoints)
    assign(dst, src)                     dst[...] = src, in place
    empty(shape, dtype), zeros(...)      fresh arrays
    contiguous(a)                        a, checked C-contiguous (the kernels need it)
    multiply(a, b), add(a, b)            elementwise
    put_columns(dst, src, c0)            dst[..., c0:c0+w] = src     (the two directions' outputs)
    take_columns(src, c0, w)             src[..., c0:c0+w], contiguous
    swap01(a)                            a.transpose(1, 0, 2), contiguous (batch_first)
    dropout_mask(shape, dtype, rng, keep)    1/keep with probability keep, else 0
"""

from numba import cuda

from . import assign, graphs, on_device, to_device, to_host
from .elementwise import add, multiply, put_columns, swap01, take_columns, zeros
from .elementwise import dropout_mask as _dropout_mask

__all__ = ["on_device", "to_device", "to_host", "host_copy", "assign", "empty", "zeros", "contiguous",
           "multiply", "add", "put_columns", "take_columns", "swap01", "dropout_mask"]


def host_copy(a):
    return a.copy_to_host()


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def contiguous(a):
    if not a.is_c_contiguous():
        raise ValueError("device arrays must be C-contiguous (copy them on the device first)")
    return a


def dropout_mask(shape, dtype, rng, keep):
    """A mask drawn on the device from one seed that ``rng`` (the layer's dropout generator) draws.
    While a CUDA graph is captured the seed is a device slot that the graph fills with a fresh
    draw before every replay (``graphs.drawn``), in the order steps without a graph draw them."""
    def draw():
        return int(rng.integers(2 ** 32))
    return _dropout_mask(shape, dtype, graphs.drawn(draw) if graphs.capturing() else draw(), keep)
