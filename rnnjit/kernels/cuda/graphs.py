"""CUDA graphs: a training step's device work recorded once, then replayed with one launch.

Why. A small model's GPU step is mostly host work: numba-cuda prepares every launch in Python
(each array argument is flattened into seven or more C values, 3.8 us apiece on this project's
CPU; a slice of a device array is a new Python object, 11 us; a fresh array's type is worked out
again when it is first passed to a kernel, 6 us: ``benchmarks/host_costs.py``), and the CharLM's
step makes 36 launches, 37 arrays and 60 views (``benchmarks/step_counts.py``). On an H200 the GPU
was busy 4.9 ms of a 10 ms CharLM step. A CUDA graph is the driver's answer: the kernels and
copies of a step are captured once, with their arguments, into a graph, and the graph is
launched as a whole with ONE call, its nodes' arguments already in place. None of the Python
above runs again. PyTorch's ``torch.cuda.CUDAGraph`` does the same for its steps.

What a graph needs from the code it captures (the same rules as PyTorch's):

* every launch and every device copy goes to the capturing stream: rnnjit's kernels are queued
  through ``queue(kernel, grid, block, *args)`` and device copies through ``copy(dst, src)``,
  which use ``stream()``: the legacy default stream (0) normally, the capturing stream while a
  ``capture()`` runs;
* nothing crosses between host and device, and nothing is read back (the capture only records:
  nothing runs until the first replay);
* the arrays are the same at every replay: the graph reads its inputs from buffers the caller
  fills before each replay, and writes its outputs into buffers of its own. Any value Python
  computes while capturing (a shape, a learning rate) is frozen into the graph; what must be
  picked afresh at every step (a dropout mask's seed) is asked for with ``drawn(draw)``: a
  device slot the kernels read, which the graph fills with ``draw()`` before every replay.

How. ``capture(fn)`` runs ``fn()`` with ``stream()`` set to a fresh stream in capture mode
(``cuStreamBeginCapture``, relaxed mode: the memory pool may still call ``cuMemAlloc``),
ends the capture (``cuStreamEndCapture``) and instantiates the graph (``cuGraphInstantiate``).
``Graph.replay()`` is one ``cuGraphLaunch`` on that stream. The stream is a blocking one, so
work rnnjit queues on the legacy default stream before a replay (the copies into the input
buffers) finishes before the replay starts, and work after it (reading the loss) waits for the
replay: the ordering ``memory.py``'s reuse argument relies on still holds. Everything the
captured launches and copies were given is kept in the graph's ``ops``: those arrays stay
referenced, so the memory pool never hands their memory to anyone else while the graph lives.

In Numba's simulator there are no graphs, but the same code runs: ``capture`` records each
queued launch and copy without running it, and ``replay`` runs the recorded list. And it checks
the rules a real capture would enforce: while recording, a kernel launched past ``queue``, a
copy between host and device, or a read of a device array raises ``CaptureError`` (on a GPU the
driver refuses those, and ``capture`` raises the same error). So the simulator tests show that
a replayed step does all of a step's device work on the same arrays, and nothing Python decided
on the way in.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np
from numba import config, cuda

__all__ = ["CaptureError", "Graph", "capture", "capturing", "copy", "drawn", "from_cuda", "queue", "stream"]


class CaptureError(RuntimeError):
    """Something in the captured code cannot be part of a CUDA graph."""


_state = {"stream": 0, "ops": None, "draws": None}   # the current stream; while capturing, the
                                                     # op list and the drawn values


def _simulating() -> bool:
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def stream():
    """The stream rnnjit queues its work on: 0 (the legacy default stream), or the capturing one."""
    return _state["stream"]


def capturing() -> bool:
    return _state["ops"] is not None


def drawn(draw):
    """While capturing: a (1,) uint64 device array that the graph fills with ``draw()`` before
    every replay. For what the host must pick afresh at every step (a dropout mask's seed): the
    kernels read it from there, where a value passed at capture would be frozen."""
    if not capturing():
        raise CaptureError("graphs.drawn() outside a capture: pass the value itself")
    slot = cuda.device_array(1, np.uint64)
    _state["draws"].append((slot, draw))
    return slot


def queue(kernel, grid, block, *args):
    """``kernel[grid, block](*args)`` on ``stream()``; recorded while a capture runs."""
    ops = _state["ops"]
    if ops is not None:
        ops.append((kernel, grid, block, args))
        if _simulating():
            return                      # recorded, not run (a capture runs nothing)
    kernel[grid, block, _state["stream"]](*args)


def copy(dst, src):
    """Copy a whole (contiguous) array into the device array dst on ``stream()``; recorded while
    a capture runs, when src must be a device array too."""
    ops = _state["ops"]
    if ops is not None:
        if not hasattr(src, "copy_to_host"):
            raise CaptureError("a host-to-device copy while capturing a CUDA graph: copy into the graph's "
                               "input buffers before the replay")
        ops.append((None, None, None, (dst, src)))
        if _simulating():
            return
    if _state["stream"]:
        dst.copy_to_device(src, stream=_state["stream"])
    else:
        dst.copy_to_device(src)


def _run(op):
    kernel, grid, block, args = op
    if kernel is None:
        args[0].copy_to_device(args[1])
    else:
        kernel[grid, block](*args)


class Graph:
    """A captured graph: ``replay()`` runs it; ``ops`` are the launches and copies it holds,
    as (kernel, grid, block, args) tuples (kernel None: a copy, args (dst, src)); ``draws`` the
    (slot, draw) pairs of ``drawn``, filled before each replay."""

    def __init__(self, ops, draws, stream=None, graph=None, executable=None):
        self.ops, self.draws = ops, draws
        self._stream = stream
        self._exec = executable
        if executable is not None:
            weakref.finalize(self, _destroy, graph, executable)

    def replay(self):
        for slot, draw in self.draws:   # on the default stream, which the replay waits for
            slot.copy_to_device(np.array([draw()], np.uint64))
        if self._exec is None:          # the simulator: run the recording
            for op in self.ops:
                _run(op)
        else:
            _driver().cuGraphLaunch(self._exec, self._stream.handle)

    def __len__(self):
        return len(self.ops)


def _driver():
    from numba.cuda.cudadrv.driver import driver
    return driver


def _destroy(graph, executable):
    try:
        _driver().cuGraphExecDestroy(executable)
        _driver().cuGraphDestroy(graph)
    except Exception:   # at interpreter exit the context may be gone already
        pass


@contextlib.contextmanager
def _simulated_capture_rules():
    """While the simulator records: a kernel launched past ``queue``, a copy into or out of a
    device array made past ``copy``, a host-to-device copy, or reading one element of a device
    array raises ``CaptureError``, as a real capture would refuse it."""
    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator.cudadrv import devicearray as sim_arrays

    def refuse(what):
        def refused(*args, **kw):
            raise CaptureError(f"{what} while capturing a CUDA graph: queue kernels with graphs.queue, "
                               "copy with graphs.copy, and move data across before or after the capture")
        return refused

    arr, fake_kernel = sim_arrays.FakeCUDAArray, sim_kernel.FakeCUDAKernel
    saved = {(owner, name): owner.__dict__[name] for owner, name in
             ((fake_kernel, "__call__"), (arr, "copy_to_host"), (arr, "copy_to_device"), (arr, "__getitem__"))}
    saved_to_device = cuda.to_device
    launch, getitem = fake_kernel.__call__, arr.__getitem__

    def launching(kernel, *args):
        if kernel._device or sim_kernel._kernel_context:   # a device function, or inside a kernel
            return launch(kernel, *args)
        raise CaptureError(f"kernel {kernel.fn.__name__} launched past graphs.queue while capturing a CUDA graph")

    def indexing(a, idx):
        view = getitem(a, idx)
        if not isinstance(view, arr):
            refuse("reading an element of a device array")()
        return view

    fake_kernel.__call__ = launching
    arr.copy_to_host = refuse("a device-to-host copy")
    arr.copy_to_device = refuse("a copy into a device array past graphs.copy")
    arr.__getitem__ = indexing
    cuda.to_device = refuse("a host-to-device copy")
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)
        cuda.to_device = saved_to_device


def capture(fn):
    """Capture the device work of ``fn()`` into a ``Graph`` (nothing runs yet: call ``replay``).
    Returns (graph, what fn returned). Raises ``CaptureError`` when fn does something a graph
    cannot hold (the stream is out of capture mode again by then); other errors of fn pass."""
    if capturing():
        raise CaptureError("capture() inside a capture")
    ops, draws = [], []
    if _simulating():
        _state["ops"], _state["draws"] = ops, draws
        try:
            with _simulated_capture_rules():
                result = fn()
        finally:
            _state["ops"] = _state["draws"] = None
        return Graph(ops, draws), result

    from numba.cuda.cudadrv.driver import binding
    drv = _driver()
    s = cuda.stream()
    drv.cuStreamBeginCapture(s.handle, binding.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED)
    _state["stream"], _state["ops"], _state["draws"] = s, ops, draws
    graph = failure = None
    try:
        with cuda.defer_cleanup():   # Numba's own allocator (RNNJIT_CUDA_POOL=0) frees no memory meanwhile
            result = fn()
    except Exception as e:      # numba's CudaAPIError, cuda.core's CUDAError: the driver refused a step
        failure = e
    finally:
        _state["stream"], _state["ops"], _state["draws"] = 0, None, None
        try:
            graph = drv.cuStreamEndCapture(s.handle)
        except Exception as e:  # invalidated: something ran outside the capturing stream
            failure = failure or e
    if failure is not None:
        if graph is not None:
            drv.cuGraphDestroy(graph)
        if isinstance(failure, CaptureError) or not from_cuda(failure):
            raise failure
        raise CaptureError(f"the CUDA driver refused part of the capture: {failure}") from failure
    try:
        executable = drv.cuGraphInstantiate(graph, 0)
    except Exception as e:
        drv.cuGraphDestroy(graph)
        raise CaptureError(f"the captured graph could not be instantiated: {e}") from e
    return Graph(ops, draws, s, graph, executable), result


def from_cuda(e) -> bool:
    """An error raised by the CUDA driver (through numba-cuda or cuda.core), not by Python code."""
    return any(k.__module__.startswith(("numba.cuda.cudadrv", "cuda.")) for k in type(e).__mro__)
