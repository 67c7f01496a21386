"""A model's training step on the GPU replayed as a CUDA graph (``kernels/cuda/graphs.py``).

``GraphedStep(fn, layers, xp, keep)`` wraps ``fn(inputs, state, *static) -> (loss, new_state)``, the
device work of a step (forward, loss, backward into the model's gradient buffers): ``inputs`` a
list of device arrays, ``state`` None, a device array or a tuple of them, ``static`` values
that fix the step's shape (the CharLM's T and B), ``loss`` a device array; ``layers`` the
model's recurrent layers, ``xp`` its array namespace, ``keep`` (owner, attribute) pairs of
other arrays fn leaves behind (a classifier's ``input_grad``). Calling it with NumPy inputs, a device
state and the static values does, per shape of the inputs and the state and per static values:

1. the first call: ``fn`` as it is (every kernel compiles, the memory pool fills);
2. the second: the inputs go to device buffers the graph will own, the state is copied into
   another, ``fn`` is captured on them, and the graph runs;
3. every later call: the inputs are copied into those buffers (one host-to-device copy each),
   the state into its buffer (a device copy each), and the graph replays: ONE launch for the
   whole step, none of the Python of ``fn`` runs.

It returns the loss (a float) and a copy of the new state (so that the caller's arrays are never
the graph's own buffers, which the next replay overwrites). After each replay it points every
layer's ``hidden_grad_norms`` (and the ``keep`` attributes) at the graph's arrays again.

Dropout between the layers is graphed too: a mask's seed, which the layer draws on the host,
is a device slot in the graph that every replay fills with a fresh draw, in the order the steps
without a graph draw them (``graphs.drawn``), so a graphed run draws the same masks. A graph is
kept per training mode as well (``layer.training``: masks or none).

When the capture fails (something in ``fn`` a graph cannot hold: ``graphs.CaptureError``; or
the driver refuses the graph), it says so once (a ``RuntimeWarning``) and runs ``fn`` as it is
from then on.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..kernels.cuda import graphs
from .module import scalar


def _arrays(state):
    """The arrays of a state: none (None), the tuple's, or the one."""
    return () if state is None else (state if isinstance(state, tuple) else (state,))


def _pack(template, arrays):
    """arrays in the structure of ``template`` (None, a tuple, or one array)."""
    return None if template is None else (tuple(arrays) if isinstance(template, tuple) else arrays[0])


class GraphedStep:
    def __init__(self, fn, layers, xp, keep=()):
        self.fn, self.layers, self.xp = fn, layers, xp
        # what fn leaves in attributes, pointed back at the graph's arrays after each replay
        self.keep = [(layer, "_norms") for layer in layers] + list(keep)
        self.graphs = {}        # shapes of inputs and state -> (graph, input buffers, state buffers, loss,
                                # new state, kept attributes)
        self.seen = set()       # shapes run once, eagerly
        self.failed = None      # why capturing failed (then every step runs eagerly)

    def graphable(self) -> bool:
        return self.failed is None

    def _copy(self, a):
        out = self.xp.empty(a.shape, a.dtype)
        graphs.copy(out, a)
        return out

    def __call__(self, inputs, state, *static):
        xp = self.xp
        key = (tuple((np.shape(a), np.asarray(a).dtype.str) for a in inputs), static,
               type(state).__name__, tuple((tuple(s.shape), s.dtype.str) for s in _arrays(state)),
               tuple(layer.training for layer in self.layers))      # training: with dropout masks
        entry = self.graphs.get(key)
        if entry is None:
            if key not in self.seen or not self.graphable():
                self.seen.add(key)
                return self._eager(inputs, state, static)
            return self._capture(key, inputs, state, static)
        graph, buffers, state_in, loss, new_state, kept = entry
        for buf, a in zip(buffers, inputs):
            xp.assign(buf, a)
        for buf, s in zip(state_in, _arrays(state)):
            if buf is not s:
                graphs.copy(buf, s)
        graph.replay()
        return self._finish(loss, new_state, kept)

    def _eager(self, inputs, state, static):
        loss, new_state = self.fn([self.xp.to_device(a) for a in inputs], state, *static)
        return scalar(loss), new_state

    def _capture(self, key, inputs, state, static):
        buffers = [self.xp.to_device(a) for a in inputs]
        state_in = [self._copy(s) for s in _arrays(state)]
        try:
            graph, (loss, new_state) = graphs.capture(lambda: self.fn(buffers, _pack(state, state_in), *static))
            graph.replay()                  # a graph the driver cannot launch fails here, not later
        except Exception as e:
            if not isinstance(e, graphs.CaptureError) and not graphs.from_cuda(e):
                raise
            self.failed = str(e)
            warnings.warn(f"rnnjit: training steps run without CUDA graphs: {e}", RuntimeWarning, stacklevel=4)
            return self._eager(inputs, state, static)
        kept = [getattr(owner, name) for owner, name in self.keep]
        self.graphs[key] = (graph, buffers, state_in, loss, new_state, kept)
        return self._finish(loss, new_state, kept)

    def _finish(self, loss, new_state, kept):
        """After a replay: the kept attributes (the layers' norms) point at the graph's arrays
        again; returns the loss and a copy of the state."""
        for (owner, name), value in zip(self.keep, kept):
            setattr(owner, name, value)
        return scalar(loss), _pack(new_state, [self._copy(s) for s in _arrays(new_state)])
