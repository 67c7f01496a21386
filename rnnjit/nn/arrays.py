"""The array operations a layer does between kernel calls, on the CPU.

``rnnjit.kernels.cuda.arrays`` is the GPU twin, with the same names; a layer calls one or the
other through ``self.xp`` and is written once for both devices.
"""

import numpy as np


def _identity(a):
    return a


class NumpyArrays:
    """The array operations of a layer on the CPU; ``rnnjit.kernels.cuda.arrays`` is the GPU twin."""

    on_device = staticmethod(lambda a: False)
    to_device = to_host = staticmethod(_identity)
    host_copy = staticmethod(np.copy)
    empty = staticmethod(np.empty)
    zeros = staticmethod(np.zeros)
    contiguous = staticmethod(np.ascontiguousarray)
    multiply = staticmethod(np.multiply)
    add = staticmethod(np.add)

    @staticmethod
    def assign(dst, src):
        dst[...] = src

    @staticmethod
    def put_columns(dst, src, c0):
        dst[..., c0:c0 + src.shape[-1]] = src

    @staticmethod
    def take_columns(src, c0, width):
        return np.ascontiguousarray(src[..., c0:c0 + width])

    @staticmethod
    def swap01(a):
        return a.transpose(1, 0, 2)

    @staticmethod
    def dropout_mask(shape, dtype, rng, keep):
        return (rng.random(shape) < keep).astype(dtype) / dtype(keep)


def host_view(arrays: dict, device: str):
    """A layer's or model's dict of arrays as the user reads it: itself on the CPU; on the GPU a
    ``HostView`` whose ``view[k]`` copies array k to the host (and ``view[k] = a`` copies back)."""
    if device == "cpu":
        return arrays
    from ..kernels.cuda import HostView
    return HostView(arrays)
