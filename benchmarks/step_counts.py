"""Count what one training step asks of the GPU's host side, in Numba's simulator.

    NUMBA_ENABLE_CUDASIM=1 python benchmarks/step_counts.py            # 2-layer LSTM CharLM
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/step_counts.py --cell gru --layers 1

On a GPU every kernel launch, device allocation and device-to-device copy costs the host tens of
microseconds (numba-cuda prepares the arguments in Python), and a small model's step is mostly
that: see ``profile_step.py``. The simulator runs the same host code, so the numbers it counts
are the GPU's: kernel launches (by kernel), allocations, copies between device arrays,
transfers between host and device, and views (slices and reshapes, each a new device-array
object), for the engine's step (ids in; forward, BPTT, clipping, Adam;
loss and norm out) after a first step has set everything up.
"""

import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def count(step, cuda):
    """Run ``step()`` once with the simulator's launches, allocations and copies counted."""
    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator.cudadrv import devicearray as sim_arrays
    from rnnjit.kernels.cuda import graphs
    seen = {"launches": Counter(), "allocations": 0, "d2d": 0, "h2d": 0, "d2h": 0, "views": 0, "replays": 0}
    launch = sim_kernel.FakeCUDAKernel.__call__
    replay = graphs.Graph.replay
    in_graph = []

    def counted_replay(graph):        # one launch of a whole graph: its nodes cost the host nothing
        seen["replays"] += 1
        in_graph.append(True)
        try:
            return replay(graph)
        finally:
            in_graph.pop()
    arr = sim_arrays.FakeCUDAArray
    copy_to_device, copy_to_host = arr.copy_to_device, arr.copy_to_host
    getitem, reshape = arr.__getitem__, arr.reshape
    saved = {name: getattr(cuda, name) for name in ("device_array", "device_array_like", "to_device")}

    def counted_launch(kernel, *args):
        if not (kernel._device or sim_kernel._kernel_context or in_graph):
            seen["launches"][kernel.fn.__name__] += 1
        return launch(kernel, *args)

    def counted_copy_to_device(a, src, *args, **kw):
        if not in_graph:
            seen["d2d" if hasattr(src, "copy_to_host") else "h2d"] += 1
        return copy_to_device(a, src, *args, **kw)

    def counted_copy_to_host(a, *args, **kw):
        seen["d2h"] += 1
        return copy_to_host(a, *args, **kw)

    def viewing(fn):
        def wrapped(a, *args, **kw):
            if "simulator" not in sys._getframe(1).f_code.co_filename:   # ours, not the simulator's own
                seen["views"] += 1
            return fn(a, *args, **kw)
        return wrapped

    def allocating(fn, transfer=False):
        def wrapped(*args, **kw):
            seen["allocations"] += 1
            seen["h2d"] += transfer
            return fn(*args, **kw)
        return wrapped

    sim_kernel.FakeCUDAKernel.__call__ = counted_launch
    graphs.Graph.replay = counted_replay
    arr.copy_to_device, arr.copy_to_host = counted_copy_to_device, counted_copy_to_host
    arr.__getitem__, arr.reshape = viewing(getitem), viewing(reshape)
    cuda.device_array = allocating(saved["device_array"])
    cuda.device_array_like = allocating(saved["device_array_like"])
    cuda.to_device = allocating(lambda a, *r, **k: saved["to_device"](a, *r, **k), transfer=True)
    try:
        step()
    finally:
        sim_kernel.FakeCUDAKernel.__call__ = launch
        graphs.Graph.replay = replay
        arr.copy_to_device, arr.copy_to_host = copy_to_device, copy_to_host
        arr.__getitem__, arr.reshape = getitem, reshape
        for name, fn in saved.items():
            setattr(cuda, name, fn)
    return seen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="lstm", choices=("rnn", "lstm", "gru"))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=4)
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="the CharLM with cuda_graphs=True (a step replays a graph)")
    args = ap.parse_args(argv)
    from numba import config
    if not config.ENABLE_CUDASIM:
        print("step_counts: run it in the simulator: NUMBA_ENABLE_CUDASIM=1 python benchmarks/step_counts.py")
        return 2
    import numpy as np
    from numba import cuda
    from rnnjit.models import CharLM
    from rnnjit.train.optim import Adam, clip_gradients, gradients

    T, B, V = 3, 2, 5
    model = CharLM(V, args.hidden, args.layers, args.cell, seed=0, device="cuda", cuda_graphs=args.cuda_graphs)
    opt = Adam(model.parameters(), lr=1e-3)
    grads = gradients(model.parameters())
    rng = np.random.default_rng(0)

    def step():
        x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
        loss, _ = model.forward_backward(x, y, model.initial_state(B))
        norm, _ = clip_gradients(grads, 1.0, "norm")
        opt.step()
        return float(loss), float(norm)

    step()
    if args.cuda_graphs:
        step()                         # the second step captures the graph
    seen = count(step, cuda)
    n = sum(seen["launches"].values())
    graphed = ", CUDA graphs" if args.cuda_graphs else ""
    after = "the first two" if graphed else "the first"
    print(f"CharLM {args.cell}, {args.layers} layer(s){graphed}, one training step after {after}:")
    if args.cuda_graphs:
        print(f"  graph launches       {seen['replays']}  (the forward and backward; what follows is outside it)")
    print(f"  kernel launches      {n}")
    for name, k in seen["launches"].most_common():
        print(f"      {k:3d}  {name}")
    print(f"  device allocations   {seen['allocations']}")
    print(f"  device-to-device     {seen['d2d']}")
    print(f"  host-to-device       {seen['h2d']}")
    print(f"  device-to-host       {seen['d2h']}")
    print(f"  views (slices and reshapes of device arrays: a new array object each) {seen['views']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
