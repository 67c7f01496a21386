"""Knowing when Numba compiles, to tell the person waiting.

A model's first run compiles its kernels: half a minute or more for a training step on a slow
CPU, some twenty seconds for ``rnnjit sample``, with nothing on the screen meanwhile. Numba
fires a ``numba:compile`` event when it compiles a function, on a cache miss only (a function
loaded from its on-disk cache fires none), so listening to it tells a cold start from a warm one.
``rnnjit train``'s progress and ``rnnjit sample`` say that they are compiling, and for how long.
"""

import time


class CompileWatch:
    """Watches Numba compile (cache misses only) while it is installed.

    A compile *episode* runs from the first compilation after ``reset()`` until the next
    ``reset()``; ``on_begin()`` is called when one starts, from the compiling thread. ``functions``
    and ``seconds()`` say how much it compiled. Numba's event API is young: where it is missing,
    ``install`` does nothing and no episode is ever seen.
    """

    def __init__(self, on_begin=lambda: None):
        self.on_begin = on_begin
        self.functions = 0
        self.began = None           # time.perf_counter() at the episode's first compilation
        self._listener = None

    def seconds(self) -> float:
        return 0.0 if self.began is None else time.perf_counter() - self.began

    def reset(self) -> None:
        self.functions, self.began = 0, None

    def install(self) -> "CompileWatch":
        try:
            from numba.core import event
        except ImportError:
            return self
        watch = self

        class _Listener(event.Listener):
            def on_start(self, ev):
                if watch.began is None:
                    watch.began = time.perf_counter()
                    watch.on_begin()

            def on_end(self, ev):
                watch.functions += 1

        self._listener = _Listener()
        event.register("numba:compile", self._listener)
        return self

    def remove(self) -> None:
        if self._listener is not None:
            from numba.core import event
            event.unregister("numba:compile", self._listener)
            self._listener = None
