"""The GPU side of ``rnnjit/kernels/cuda/graphs.py``, against a stand-in CUDA driver.

The simulator tests (tests/test_cuda_models.py) show what a replayed step computes; on a GPU
the same code goes through the driver's stream capture instead, which no CI machine has. These
tests run that branch with a driver that records its calls, to pin down the protocol: begin the
capture on a fresh stream (relaxed mode), queue every launch and copy on it, end the capture
whatever happens, instantiate, launch on the same stream; wrap what the driver refuses in
``CaptureError`` and let Python's own errors through; leave the default stream current after.
"""

import contextlib

import numpy as np
import pytest

pytest.importorskip("numba_cuda")
from cuda_support import SIM  # noqa: E402

if SIM:
    pytest.skip("the real driver module, not the simulator's", allow_module_level=True)

from rnnjit.kernels.cuda import graphs  # noqa: E402


class DriverError(Exception):
    """What the CUDA driver raises, as far as ``graphs.from_cuda`` can tell."""


DriverError.__module__ = "cuda.core._utils"


class FakeDriver:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail or {}

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, *args))
            if name in self.fail:
                raise self.fail[name]
            return {"cuStreamEndCapture": "graph", "cuGraphInstantiate": "exec"}.get(name)
        return call

    def names(self):
        return [c[0] for c in self.calls]


class Stream:
    handle = "stream-handle"


class Kernel:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def __getitem__(self, config):
        return lambda *args: self.log.append((self.name, config, args))


class Array:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def copy_to_host(self):          # marks a device array
        raise AssertionError("not read here")

    def copy_to_device(self, src, stream=0):
        self.log.append(("copy", self.name, getattr(src, "name", "host"), stream))


@pytest.fixture
def gpu(monkeypatch):
    driver = FakeDriver()
    stream = Stream()
    monkeypatch.setattr(graphs, "_simulating", lambda: False)
    monkeypatch.setattr(graphs, "_driver", lambda: driver)
    monkeypatch.setattr(graphs.cuda, "stream", lambda: stream)
    monkeypatch.setattr(graphs.cuda, "defer_cleanup", contextlib.nullcontext)
    monkeypatch.setattr(graphs.cuda, "device_array", lambda n, dtype: Array([], "slot"))
    return driver, stream


def test_a_capture_queues_on_its_stream_and_replays_with_one_launch(gpu):
    driver, stream = gpu
    log = []
    a, b = Array(log, "a"), Array(log, "b")

    def step():
        graphs.queue(Kernel(log, "k1"), 4, 32, a)
        graphs.copy(b, a)
        graphs.queue(Kernel(log, "k2"), 1, 8, b)
        return graphs.drawn(lambda: 7)

    graph, slot = graphs.capture(step)
    assert driver.names() == ["cuStreamBeginCapture", "cuStreamEndCapture", "cuGraphInstantiate"]
    assert driver.calls[0][1] == stream.handle and driver.calls[0][2].name == "CU_STREAM_CAPTURE_MODE_RELAXED"
    assert driver.calls[2][1:] == ("graph", 0)
    assert log == [("k1", (4, 32, stream), (a,)), ("copy", "b", "a", stream), ("k2", (1, 8, stream), (b,))]
    assert len(graph) == 3 and graph.draws == [(slot, graph.draws[0][1])]
    assert graphs.stream() == 0 and not graphs.capturing()

    filled = []
    slot.copy_to_device = lambda value: filled.append(value)
    graph.replay()
    assert driver.calls[-1] == ("cuGraphLaunch", "exec", stream.handle)
    assert [v.tolist() for v in filled] == [[7]] and filled[0].dtype == np.uint64
    graphs.queue(Kernel(log, "k3"), 1, 1)            # after the capture: the default stream again
    assert log[-1] == ("k3", (1, 1, 0), ())


@pytest.mark.parametrize("where", ["launch", "cuStreamEndCapture", "cuGraphInstantiate"])
def test_what_the_driver_refuses_is_a_capture_error(gpu, where):
    driver, _ = gpu
    if where != "launch":
        driver.fail[where] = DriverError("CUDA_ERROR_STREAM_CAPTURE_INVALIDATED")

    def step():
        if where == "launch":
            raise DriverError("CUDA_ERROR_NOT_SUPPORTED")

    with pytest.raises(graphs.CaptureError, match="CUDA_ERROR"):
        graphs.capture(step)
    assert "cuStreamEndCapture" in driver.names()               # the stream leaves capture mode
    assert ("cuGraphDestroy", "graph") in driver.calls or where == "cuStreamEndCapture"
    assert graphs.stream() == 0 and not graphs.capturing()


def test_python_errors_in_the_captured_code_pass_through(gpu):
    driver, _ = gpu

    def step():
        raise KeyError("a bug, not the driver")

    with pytest.raises(KeyError):
        graphs.capture(step)
    assert driver.names() == ["cuStreamBeginCapture", "cuStreamEndCapture", "cuGraphDestroy"]
    assert graphs.stream() == 0 and not graphs.capturing()
    with pytest.raises(graphs.CaptureError):
        graphs.drawn(lambda: 1)                                  # outside a capture


def test_a_host_copy_cannot_be_captured(gpu):
    with pytest.raises(graphs.CaptureError, match="host-to-device"):
        graphs.capture(lambda: graphs.copy(Array([], "a"), np.zeros(3)))
