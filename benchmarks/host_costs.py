"""What numba-cuda's host side costs per operation, measured on this machine's CPU without a GPU.

    python benchmarks/host_costs.py

A small model's GPU step waits for the host (``profile_step.py`` on a GPU), and most of that
host time is numba-cuda's Python: making device-array objects and preparing each launch's
arguments. Those parts need no GPU, so they can be timed anywhere: this script builds real
``DeviceNDArray`` objects over a made-up device pointer (nothing is ever dereferenced) and times,
per call,

* a slice (``a[1:]``), an index (``a[3]``) and a reshape: each makes a new device-array object;
* working out the Numba type of a fresh array, as the first launch it is passed to does;
* ``_Kernel._prepare_args`` for one array argument and one integer: the flattening of every
  argument of every launch into C values (an array is seven values or more).

Multiply by the counts of ``step_counts.py`` to see where a step's host time goes; what it
leaves out (the driver call itself, the dispatcher's overload lookup, cuda.core's launch) needs a
GPU. A CUDA graph (``rnnjit/kernels/cuda/graphs.py``, ``--cuda-graphs``) skips all of it for the
captured part of a step.
"""

import contextlib
import timeit

import numpy as np


def per_call_us(fn, n=20000):
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def main():
    from numba.cuda.cudadrv import devicearray, devices
    from numba.cuda.cudadrv.driver import MemoryPointer, binding
    from numba.cuda.dispatcher import _Kernel
    from numba.cuda.typing.typeof import Purpose, typeof

    devices._runtime.ensure_context = contextlib.nullcontext    # no context needed: nothing runs

    class NoContext:
        pass

    shape, dtype = (101, 32, 512), np.dtype(np.float32)
    strides = (32 * 512 * 4, 512 * 4, 4)
    memory = MemoryPointer(context=NoContext(), pointer=binding.CUdeviceptr(1 << 32), size=101 * 32 * 512 * 4)
    a = devicearray.DeviceNDArray(shape, strides, dtype, gpu_data=memory)
    array_type = typeof(a, Purpose.argument)

    class Extensions:
        extensions = []

    def prepare(ty, value):
        _Kernel._prepare_args(Extensions, ty, value, 0, [], [])

    from numba.cuda import types
    rows = [
        ("slice a[1:] (a new device-array object)", lambda: a[1:]),
        ("index a[3]", lambda: a[3]),
        ("reshape", lambda: a.reshape(101 * 32, 512)),
        ("type of a fresh view (first launch it meets)", lambda: typeof(a[1:], Purpose.argument)),
        ("_prepare_args, one array argument", lambda: prepare(array_type, a)),
        ("_prepare_args, one int64 argument", lambda: prepare(types.int64, 5)),
    ]
    base = per_call_us(lambda: a[1:])
    print("numba-cuda host costs on this CPU (microseconds a call, best of 3):")
    for label, fn in rows:
        us = per_call_us(fn)
        if label.startswith("type of"):
            us -= base
        print(f"  {us:7.2f}  {label}")


if __name__ == "__main__":
    main()
