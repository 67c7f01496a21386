"""Where the time of one call goes on a GPU: every device kernel it launches, and the host's Python.

    python benchmarks/profile_step.py                      # LSTM layer B=1 H=128 and B=256 H=1024,
                                                           # CharLM LSTM step B=32 H=128
    python benchmarks/profile_step.py --cells gru --sizes 1x128 --lm ""

``cuda_check.py``'s breakdown says how a call's wall time splits into device time and the two big
kernels; this says what the rest is. For each layer size it runs a training step (forward and
backward, ``cuda_check.Ours``) and, for the language model, the engine's step (``OursLM``),
eager and with its forward and backward replayed as a CUDA graph (``--cuda-graphs``):

* **device**: the kernels of three calls as CUPTI records them (through ``torch.profiler``, which
  sees every kernel of the process, numba's too), per call: count and microseconds by kernel
  name, their sum ("busy"), and the wall time of the call. Wall minus busy is time the GPU
  waited for the host;
* **host**: ``cProfile`` over twenty calls, the functions with the most time of their own.

Needs numba-cuda and torch with CUDA; prints and exits 0 when either is missing.
"""

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import time
import traceback
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cuda_check  # noqa: E402  (also puts the repository on sys.path)


def kernel_name(mangled):
    """``_ZN6cudapy5rnnjit7kernels4cuda4lstm15_forward_kernel...`` -> ``lstm._forward_kernel``."""
    if not mangled.startswith("_ZN"):
        return mangled[:60]
    parts, i = [], 3
    while i < len(mangled) and mangled[i].isdigit():
        m = re.match(r"\d+", mangled[i:])
        n = int(m.group())
        i += len(m.group())
        parts.append(mangled[i:i + n])
        i += n
    parts = [p for p in parts if p not in ("cudapy", "rnnjit", "kernels", "cuda", "numba")]
    return ".".join(parts[-2:]) if parts else mangled[:60]


def device_profile(torch, cuda, fn, calls=3):
    from torch.profiler import ProfilerActivity, profile
    fn()
    cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        cuda.synchronize()
        wall = (time.perf_counter() - t0) / calls * 1e6
    by = defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if str(e.device_type).endswith("CUDA") and e.name:
            r = by[kernel_name(e.name)]
            r[0] += 1
            r[1] += e.time_range.elapsed_us()
    busy = sum(t for _, t in by.values()) / calls
    print(f"    device: wall {wall:9.1f} us per call (profiled), kernels busy {busy:9.1f} us, "
          f"gaps {wall - busy:9.1f} us")
    for name, (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        print(f"      {n / calls:5.1f} x {t / calls:9.1f} us  {name}")


def host_profile(cuda, fn, calls=20, top=18):
    fn()
    cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    cuda.synchronize()
    pr.disable()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for order, restrict, what in (("tottime", (top,), "all functions, by own time"),
                                  ("cumulative", ("rnnjit", top), "rnnjit's functions, by time inside them")):
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats(order).print_stats(*restrict)
        lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
        print(f"    host: cProfile of {calls} calls, {what} (seconds over all {calls})")
        for ln in lines[start:]:
            print("      " + ln.replace(root, ".").replace(sys.prefix, "<python>"))


def guarded(fn, *args):
    """Run one section; a section that raises prints its traceback and the others still run."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        traceback.print_exc(file=sys.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm")
    ap.add_argument("--sizes", default="1x128,256x1024", help="BxH of the layer calls")
    ap.add_argument("--lm", default="32x128", help="BxH of the CharLM step ('' for none)")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--calls", type=int, default=20, help="calls under cProfile (the simulator's dry run: 2)")
    args = ap.parse_args(argv)
    try:
        from rnnjit.kernels.cuda import require_cuda
        require_cuda()
        from numba import cuda
    except Exception as error:  # noqa: BLE001 - a profile is optional
        print(f"profile_step: nothing to do ({error})")
        return 0
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA")
    except Exception as error:  # noqa: BLE001
        print(f"profile_step: no device profile ({error}); the host's only")
        torch = None
    T = args.T
    for cell in args.cells.split(","):
        for size in filter(None, args.sizes.split(",")):
            B, H = map(int, size.split("x"))
            print(f"{cell} layer B={B} H={H} T={T}: forward + backward")
            ours = cuda_check.Ours(cell, "tanh", cuda_check.make_case(cell, B, H, H, T))
            for what, fn in (("train", ours.train_step), ("fwd", ours.forward)):
                print(f"  {what}")
                if torch is not None:
                    guarded(device_profile, torch, cuda, fn)
                if B == 1:
                    guarded(host_profile, cuda, fn, args.calls)
        for size in filter(None, args.lm.split(",")):
            B, H = map(int, size.split("x"))
            rng = np.random.default_rng(0)
            x = rng.integers(0, cuda_check.LM_V, (T, B))
            y = rng.integers(0, cuda_check.LM_V, (T, B))
            for graphs in (False, True):     # eager, and with the forward and backward one CUDA graph
                print(f"{cell} CharLM step L=2 B={B} H={H} T={T}{', CUDA graphs' if graphs else ''}")
                lm = cuda_check.OursLM(cell, H, B, T, graphs=graphs)
                lm.train_step(x, y)
                lm.train_step(x, y)          # with graphs: the capture

                def step(lm=lm):
                    return lm.train_step(x, y)
                if torch is not None:
                    guarded(device_profile, torch, cuda, step)
                guarded(host_profile, cuda, step, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
