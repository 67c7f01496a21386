"""Check and time the CUDA kernels on a real GPU: parity with the CPU path and with cuDNN, then speed.

    python benchmarks/cuda_check.py            # B in {1, 32, 256} x H in {128, 512, 1024}, T = 100
    python benchmarks/cuda_check.py --quick    # B in {1, 256} x H in {128, 1024}, fewer repeats
    python benchmarks/cuda_check.py --lm-only  # only the CharLM training step against torch
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/cuda_check.py --tiny    # tiny sizes in the simulator

For every cell (RNN tanh, LSTM, GRU; RNN relu for parity) and size it

* runs our forward and backward once (compiling the kernels on first use; ``cache=True`` keeps
  them for the next run),
* compares them with the CPU kernels (``rnnjit.kernels.CELLS``; with --quick only for B = 1)
  and with PyTorch's cuDNN (``torch.nn.RNN/LSTM/GRU`` on CUDA,
  TF32 off so that both sides do float32 arithmetic; skipped when torch or torch.cuda is missing):
  outputs, final states, dx, dh0, dc0, all weight and bias gradients, and the norms (CPU only),
  printed as the largest absolute error over the largest magnitude of the reference (and, for
  context, cuDNN against the CPU),
* times inference (forward) and a training step (forward + backward), ours and cuDNN's: the
  median wall time of a few calls, each followed by a device synchronize, Python overhead
  included on both sides.

Then ``breakdown`` splits one LSTM layer call (B, H in {(1, 128), (32, 512), (256, 1024)}) into
its wall time, its device time (CUDA events), the input GEMM and the persistent recurrence alone
(and that per step), forward and backward: host overhead against kernel time.

Then, for a whole model, it times one CharLM training step on the GPU as ``rnnjit train
--device cuda`` runs it (``lm_section``): the ids of a (T, B) chunk go to the device, embedding,
a 2-layer recurrent stack, linear head and softmax cross-entropy forward, BPTT, clipping by
global norm, an Adam update, and the loss and the norm come back as floats. The contestant is
the same model in PyTorch on CUDA (``nn.Embedding``, ``nn.LSTM/GRU/RNN`` (cuDNN), ``nn.Linear``,
``F.cross_entropy``, ``clip_grad_norm_``, ``torch.optim.Adam``), started from the same weights,
with the same data, ``.item()`` on the loss and the norm. Both are checked against each other
(and against the CPU CharLM) over three steps: the losses and the gradient norms.

It prints the device, the versions and every parity error, then tables in ms with the ratio
ours / cuDNN (below 1: we are faster). Exit status 1 if any parity check fails.

Made for a first run on a GPU that nobody has tried it on, with minutes of device time: a case
that raises (a launch that does not fit, a missing library) is logged with its traceback and
counted as a failure, and the next case runs; ``--budget S`` starts no new case after S seconds
and says which it skipped; ``--json F`` rewrites F after every case, so a run cut short still
leaves its results.
Needs numpy, numba, numba-cuda and (optionally) torch; nothing else outside the repository.
"""

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PARITY_TOL = 1e-3          # float32, max |ours - ref| / max |ref|, over T = 100 steps
RELU_TOL = 2e-2            # the relu RNN: see the comment where it is used
TORCH_NAMES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
OUT_NAMES = ("out", "h_n", "c_n", "dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh", "norms")


def log(*a):
    print(*a, flush=True)


def failed(label, failures):
    """Log the exception being handled (the whole traceback: a first run on a GPU has to be
    debuggable from its log) and count it as a failure; the run goes on with the next case."""
    e = sys.exc_info()[1]
    first = (str(e).strip().splitlines() or [""])[0][:300]
    what = f"{type(e).__name__}: {first}"
    failures.append(f"{label}: {what}")
    log(f"  ERROR {label}: {what}")
    if what not in _SEEN:      # the same error again (one missing library fails every case): once
        _SEEN.add(what)
        log("  " + traceback.format_exc().rstrip().replace("\n", "\n  "))


_SEEN = set()


class Budget:
    """Start no new case after ``seconds`` (None: no limit); remember what was skipped."""

    def __init__(self, seconds):
        self.seconds, self.t0, self.skipped = seconds, time.perf_counter(), []

    def over(self, label):
        if self.seconds is not None and time.perf_counter() - self.t0 > self.seconds:
            if not self.skipped:
                log(f"budget of {self.seconds:.0f} s reached: starting no new case")
            self.skipped.append(label)
            return True
        return False


def versions():
    import numba
    v = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    try:
        from importlib.metadata import version
        v["numba-cuda"] = version("numba-cuda")
    except Exception:
        v["numba-cuda"] = "?"
    try:
        import torch
        v["torch"] = torch.__version__
        v["torch.cuda"] = str(torch.version.cuda)
        v["cudnn"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "-"
    except ImportError:
        v["torch"] = "not installed"
    return v


def device_info(cuda):
    from rnnjit.kernels.cuda.launch import simulating
    if simulating():
        return "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)", {}
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    info = {"compute_capability": ".".join(map(str, dev.compute_capability)),
            "multiprocessors": dev.MULTIPROCESSOR_COUNT}
    try:
        from numba.cuda.cudadrv import driver
        info["driver"] = driver.driver.get_version()
    except Exception:
        pass
    try:
        info["runtime"] = cuda.runtime.get_version()
    except Exception:
        pass
    return name, info


def get_torch():
    """torch with a CUDA device, or (None, reason)."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "torch.cuda is not available"
    return torch, ""


def make_case(cell, B, H, I, T, seed=0):
    from rnnjit.kernels import CELLS
    rng = np.random.default_rng(seed)
    G = CELLS[cell].gates
    bound = 1 / np.sqrt(H)
    f32 = np.float32
    d = {
        "x": rng.standard_normal((T, B, I)).astype(f32),
        "h0": (0.5 * rng.standard_normal((B, H))).astype(f32),
        "c0": (0.5 * rng.standard_normal((B, H))).astype(f32) if CELLS[cell].has_cell_state else None,
        "W_ih": rng.uniform(-bound, bound, (G * H, I)).astype(f32),
        "W_hh": rng.uniform(-bound, bound, (G * H, H)).astype(f32),
        "b_ih": rng.uniform(-bound, bound, G * H).astype(f32),
        "b_hh": rng.uniform(-bound, bound, G * H).astype(f32),
        "dout": rng.standard_normal((T, B, H)).astype(f32),
        "dh_n": rng.standard_normal((B, H)).astype(f32),
        "dc_n": rng.standard_normal((B, H)).astype(f32) if CELLS[cell].has_cell_state else None,
    }
    return d


def rel_err(got, ref):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    scale = max(np.abs(ref).max(initial=0.0), 1e-30)
    return float(np.abs(got - ref).max(initial=0.0) / scale)


class Ours:
    """Our CUDA cell with device buffers for one case."""

    def __init__(self, cell, nl, d):
        from rnnjit.kernels.cuda import to_device
        from rnnjit.kernels.cuda.cells import CUDA_CELLS
        self.cell = CUDA_CELLS[cell]
        self.nl = nl
        self.d = {k: (None if v is None else to_device(v)) for k, v in d.items()}

    def forward(self):
        d = self.d
        return self.cell.forward(d["x"], d["h0"], d["c0"], d["W_ih"], d["W_hh"], d["b_ih"], d["b_hh"], False, self.nl)

    def train_step(self):
        out, h_n, c_n, cache = self.forward()
        return (out, h_n, c_n) + tuple(self.cell.backward(cache, self.d["dout"], self.d["dh_n"], self.d["dc_n"]))

    def results(self):
        from rnnjit.kernels.cuda import to_host
        return [to_host(a) for a in self.train_step()]


class Cudnn:
    """torch.nn.RNN/LSTM/GRU on CUDA (cuDNN) with the same weights."""

    def __init__(self, torch, cell, nl, d):
        self.torch = torch
        I = d["x"].shape[2]
        H = d["h0"].shape[1]
        kw = {"nonlinearity": nl} if cell == "rnn" else {}
        self.m = getattr(torch.nn, TORCH_NAMES[cell])(I, H, **kw).cuda().float()
        with torch.no_grad():
            for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
                tname = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}[name]
                getattr(self.m, tname).copy_(torch.from_numpy(d[name]))
        dev = torch.device("cuda")
        self.lstm = cell == "lstm"
        self.x = torch.from_numpy(d["x"]).to(dev).requires_grad_()
        self.h0 = torch.from_numpy(d["h0"])[None].to(dev).requires_grad_()
        self.c0 = torch.from_numpy(d["c0"])[None].to(dev).requires_grad_() if self.lstm else None
        self.dout = torch.from_numpy(d["dout"]).to(dev)
        self.dh_n = torch.from_numpy(d["dh_n"])[None].to(dev)
        self.dc_n = torch.from_numpy(d["dc_n"])[None].to(dev) if self.lstm else None

    def _run(self):
        if self.lstm:
            out, (h_n, c_n) = self.m(self.x, (self.h0, self.c0))
            return out, h_n, c_n
        out, h_n = self.m(self.x, self.h0)
        return out, h_n, None

    def forward(self):
        with self.torch.no_grad():
            return self._run()

    def train_step(self):
        for p in (self.x, self.h0, self.c0, *self.m.parameters()):
            if p is not None:
                p.grad = None
        out, h_n, c_n = self._run()
        outs, grads = [out, h_n], [self.dout, self.dh_n]
        if self.lstm:
            outs.append(c_n)
            grads.append(self.dc_n)
        self.torch.autograd.backward(outs, grads)
        return out, h_n, c_n

    def results(self):
        out, h_n, c_n = self.train_step()
        m = self.m

        def np_(t):
            return None if t is None else t.detach().cpu().numpy()

        return [np_(out), np_(h_n[0]), None if c_n is None else np_(c_n[0]), np_(self.x.grad), np_(self.h0.grad[0]),
                None if self.c0 is None else np_(self.c0.grad[0]), np_(m.weight_ih_l0.grad), np_(m.weight_hh_l0.grad),
                np_(m.bias_ih_l0.grad), np_(m.bias_hh_l0.grad), None]


def cpu_results(cell, nl, d):
    from rnnjit.kernels import CELLS
    c = CELLS[cell]
    out, h_n, c_n, cache = c.forward(d["x"], d["h0"], d["c0"], d["W_ih"], d["W_hh"], d["b_ih"], d["b_hh"], False, nl)
    return [out, h_n, c_n] + list(c.backward(cache, d["dout"], d["dh_n"], d["dc_n"]))


def compare(label, ours, ref, failures, tol=None, info=False):
    parts, worst = [], 0.0
    for name, g, r in zip(OUT_NAMES, ours, ref):
        if r is None or g is None:
            continue
        e = rel_err(g, r)
        worst = max(worst, e)
        parts.append(f"{name}={e:.1e}")
    ok = worst <= (tol or PARITY_TOL)
    if not ok and not info:
        failures.append(label)
    verdict = "info" if info else ("ok  " if ok else "FAIL")
    log(f"  parity {label:<34} {verdict} max {worst:.1e} | " + " ".join(parts))
    return worst


def timeit(fn, sync, repeats):
    """Median wall time in ms of fn() + sync(), after one warm-up call."""
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    if first > 1.0:
        repeats = 1
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def sweep(cuda, args):
    """Time our LSTM under several tile shapes, to tune ``launch.plan``; the second variant reads
    W_hh from memory at every step instead of keeping it in the threads (``own_weights`` 0), the
    third keeps at most 64 values a thread (the cap before the H200 sweep; H = 1024 then reads
    them every step)."""
    from rnnjit.kernels.cuda import gemm
    from rnnjit.kernels.cuda.launch import plan, tuning
    T = args.T or (3 if args.tiny else 100)
    sizes = [(1, 4), (3, 6)] if args.tiny else [(1, 128), (1, 1024), (32, 512), (256, 128), (256, 1024)]
    variants = [{}, {"own_weights": 0}, {"own_weights": 64}, {"jt": 32}, {"jt": 16}, {"jt": 8}, {"jt": 32, "bt": 1}, {"jt": 32, "bt": 2},
                {"jt": 32, "bt": 4}, {"jt": 32, "bt": 8}, {"jt": 16, "ks": 8}, {"jt": 32, "ks": 4}]
    if args.tiny:
        variants = [{}, {"own_weights": 0}, {"jt": 2}, {"jt": 4, "bt": 1}, {"jt": 4, "bt": 2}]
    repeats = args.repeats or 3
    log(f"sweep: LSTM T={T}, {repeats} timed calls; variants of launch.SETTINGS (default = plan's choice)")
    for B, H in sizes:
        d = make_case("lstm", B, H, H, T)
        ours = Ours("lstm", "tanh", d)
        for v in variants:
            with tuning(**v):
                p = plan(B, H, np.float32)
                t0 = time.perf_counter()
                ours.train_step()
                cuda.synchronize()
                first = time.perf_counter() - t0
                fwd = timeit(ours.forward, cuda.synchronize, repeats)
                train = timeit(ours.train_step, cuda.synchronize, repeats)
            log(f"  B={B:<4} H={H:<5} {v!s:<24} jt={p.jt:<2} ks={p.ks:<2} bt={p.bt} tiles={p.tiles:<5} "
                f"fwd {fwd:8.3f} ms  train {train:8.3f} ms  (first {first:.1f} s)")
        for tile in (gemm.TILE_64, gemm.TILE_128):
            with tuning(gemm_tile=tile):
                train = timeit(ours.train_step, cuda.synchronize, repeats)
            log(f"  B={B:<4} H={H:<5} gemm tile {tile}: train {train:8.3f} ms")
    return 0


# ---- where the time of one LSTM call goes ----------------------------------------------------------

def _event(cuda):
    from rnnjit.kernels.cuda.launch import simulating
    return cuda.event() if simulating() else cuda.event(timing=True)


def device_ms(cuda, fn, repeats):
    """Median device time in ms of fn() between two CUDA events (0 in the simulator)."""
    fn()
    ts = []
    for _ in range(repeats):
        start, end = _event(cuda), _event(cuda)
        start.record()
        fn()
        end.record()
        end.synchronize()
        ts.append(start.elapsed_time(end))
    return statistics.median(ts)


def breakdown(cuda, sizes, T, repeats):
    """For an LSTM layer at each (B, H): a call's wall time against its device time, and the
    device time of its parts, to tell host overhead (Python, numba's launch, the driver) from
    kernel time. ``launch``: an empty kernel launched and synchronised, the floor of any call."""
    import functools as ft
    from rnnjit.kernels.cuda import lstm
    from rnnjit.kernels.cuda.gemm import gemm, transpose
    from rnnjit.kernels.cuda.launch import launch_persistent, own_weights, plan

    @cuda.jit
    def _empty():
        pass

    launch = timeit(lambda: _empty[1, 32](), cuda.synchronize, repeats)
    log(f"breakdown: LSTM, T={T}; empty kernel launch + sync {launch:.3f} ms (wall)")
    log(f"  {'B':>4} {'H':>5} | {'fwd wall':>9} {'device':>8} {'input GEMM':>10} {'recurrence':>10} "
        f"{'us/step':>8} | {'bwd wall':>9} {'device':>8} {'recurrence':>10} {'us/step':>8}   (ms)")
    rows = []
    for B, H in sizes:
        try:
            d = {k: (None if v is None else cuda.to_device(v)) for k, v in make_case("lstm", B, H, H, T).items()}
            x, W_ih, W_hh = d["x"], d["W_ih"], d["W_hh"]

            def fwd():
                return lstm.lstm_forward(x, d["h0"], d["c0"], W_ih, W_hh, d["b_ih"], d["b_hh"], False)
            hs, cs, gates = fwd()

            def bwd():
                return lstm.lstm_backward(x, W_ih, W_hh, hs, cs, gates, d["dout"], d["dh_n"], d["dc_n"], False)
            p = plan(B, H, np.float32)
            fwd_kernel = ft.partial(lstm._forward_kernel, p.jt, p.ks, p.bt)

            def recurrence():   # as lstm_forward launches it: W_hh^T only for threads that do not keep W_hh
                launch_persistent(fwd_kernel, p, own_weights(p, H, 4), gates, d["b_ih"], d["b_hh"], W_hh, hs, cs,
                                  d["h0"], d["c0"], False, p.tiles_j, p.tiles_b,
                                  unkept=lambda a: a[:3] + (transpose(W_hh),) + a[4:])
            bwd_kernel = ft.partial(lstm._backward_kernel, p.jt, p.ks, p.bt)
            dG = cuda.device_array(gates.shape, np.float32)
            dc = cuda.device_array((B, H), np.float32)
            dh0 = cuda.device_array((B, H), np.float32)
            part = cuda.device_array((T, p.tiles), np.float64)
            norms = cuda.device_array(T, np.float64)

            def back_recurrence():
                launch_persistent(bwd_kernel, p, own_weights(p, 4 * H, 1), gates, cs, W_hh, d["dout"], d["dh_n"],
                                  dc, dG, dh0, part, norms, False, p.tiles_j, p.tiles_b)
            row = {"B": B, "H": H, "T": T,
                   "fwd_wall": timeit(fwd, cuda.synchronize, repeats), "fwd_device": device_ms(cuda, fwd, repeats),
                   "input_gemm": device_ms(cuda, lambda: gemm(x.reshape(T * B, H), W_ih, trans_b=True), repeats),
                   "fwd_recurrence": device_ms(cuda, recurrence, repeats),
                   "bwd_wall": timeit(bwd, cuda.synchronize, repeats), "bwd_device": device_ms(cuda, bwd, repeats),
                   "bwd_recurrence": device_ms(cuda, back_recurrence, repeats)}
            rows.append(row)
            log(f"  {B:>4} {H:>5} | {row['fwd_wall']:9.3f} {row['fwd_device']:8.3f} {row['input_gemm']:10.3f} "
                f"{row['fwd_recurrence']:10.3f} {1e3 * row['fwd_recurrence'] / T:8.2f} | {row['bwd_wall']:9.3f} "
                f"{row['bwd_device']:8.3f} {row['bwd_recurrence']:10.3f} {1e3 * row['bwd_recurrence'] / T:8.2f}")
        except Exception:
            failed(f"breakdown B={B} H={H}", [])
    return {"launch_ms": launch, "rows": rows}


def gemm_section(cuda, torch, shapes, repeats, failures):
    """The tiled GEMM (kernels/cuda/gemm.py) on the products of a layer, loading the next slab
    after the current products (as before) or before them (``prefetch``), against cuBLAS
    (``torch.matmul``, TF32 off): device time, TFLOP/s, and the largest difference between the
    two loadings (0: the same sums in the same order) and to cuBLAS (relative to its largest)."""
    from rnnjit.kernels.cuda import gemm as g
    from rnnjit.kernels.cuda.launch import tuning
    log("gemm: the products of one layer, fp32 (ms of device time; TFLOP/s)")
    log(f"  {'product':<26} {'M':>6} {'N':>5} {'K':>6} | {'ours':>8} {'TF/s':>5} | {'prefetch':>8} {'TF/s':>5} | "
        f"{'cuBLAS':>8} {'TF/s':>5} | {'pf/ours':>7} {'ours/cuBLAS':>11}  diff pf, cuBLAS")
    rows = []
    rng = np.random.default_rng(0)
    for label, M, N, K, ta, tb in shapes:
        try:
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            dA, dB = cuda.to_device(A), cuda.to_device(B)
            out = {}
            for pf in (False, True):
                with tuning(gemm_prefetch=pf):
                    out[pf] = (device_ms(cuda, lambda: g.gemm(dA, dB, ta, tb), repeats),
                               g.gemm(dA, dB, ta, tb).copy_to_host())
            flops = 2.0 * M * N * K
            row = {"product": label, "M": M, "N": N, "K": K, "ours": out[False][0], "prefetch": out[True][0],
                   "diff_prefetch": float(np.abs(out[True][1] - out[False][1]).max())}
            if torch is not None:
                tA, tB = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
                fa = (lambda: tA.T) if ta else (lambda: tA)
                fb = (lambda: tB.T) if tb else (lambda: tB)
                ref = torch.matmul(fa(), fb())
                row["cublas"] = device_ms(cuda, lambda: torch.matmul(fa(), fb()), repeats)
                refh = ref.cpu().numpy()
                row["diff_cublas"] = rel_err(out[False][1], refh)
            rows.append(row)

            def tf(ms):
                return f"{flops / ms / 1e9:5.1f}" if ms else f"{'-':>5}"
            cub = row.get("cublas")
            log(f"  {label:<26} {M:>6} {N:>5} {K:>6} | {row['ours']:8.3f} {tf(row['ours'])} | "
                f"{row['prefetch']:8.3f} {tf(row['prefetch'])} | "
                + (f"{cub:8.3f} {tf(cub)} | " if cub else f"{'-':>8} {'-':>5} | ")
                + f"{row['prefetch'] / row['ours']:7.2f} " + (f"{row['ours'] / cub:11.2f}" if cub else f"{'-':>11}")
                + f"  {row['diff_prefetch']:.1e}, " + (f"{row['diff_cublas']:.1e}" if cub else "-"))
            if row["diff_prefetch"] != 0 or row.get("diff_cublas", 0) > PARITY_TOL:
                failures.append(f"gemm {label}")
                log(f"  FAILED: gemm {label}")
        except Exception:
            failed(f"gemm {label}", failures)
    return rows


def two_ways_section(cuda, name, cells, sizes, T, repeats, failures, off, on, labels):
    """One layer call of each cell and size run two ways, with ``launch.tuning(**off)`` and with
    ``tuning(**on)``: the device time of a forward call and of forward + backward each way, and
    the largest difference of every output and gradient between the two (relative to the
    largest value; a failure above PARITY_TOL). ``labels``: the two ways' column names."""
    from rnnjit.kernels.cuda import to_host
    from rnnjit.kernels.cuda.launch import tuning
    a, b = labels
    w = max(len(a), len(b), 8)
    log(f"  {'cell':<5} {'B':>4} {'H':>5} | fwd {a:>{w}} {b:>{w}} {'ratio':>6} | train {a:>{w}} {b:>{w}} {'ratio':>6} "
        "| max rel diff (all outputs and gradients)")
    rows = []
    for cell in cells:
        for B, H in sizes:
            try:
                ours = Ours(cell, "tanh", make_case(cell, B, H, H, T))
                outs, times = {}, {}
                for way, kw in (("off", off), ("on", on)):
                    with tuning(**kw):
                        outs[way] = [to_host(x) for x in ours.train_step() if x is not None]
                        times[way] = (device_ms(cuda, ours.forward, repeats), device_ms(cuda, ours.train_step, repeats))
                diff = max(rel_err(x, y) for x, y in zip(outs["on"], outs["off"]))
                (f0, t0), (f1, t1) = times["off"], times["on"]
                rows.append({"cell": cell, "B": B, "H": H, "fwd_off": f0, "fwd_on": f1, "train_off": t0,
                             "train_on": t1, "diff": diff, "off": a, "on": b})
                log(f"  {cell:<5} {B:>4} {H:>5} | fwd {f0:{w}.3f} {f1:{w}.3f} {f1 / f0 if f0 > 0 else 0:6.2f} | "
                    f"train {t0:{w}.3f} {t1:{w}.3f} {t1 / t0 if t0 > 0 else 0:6.2f} | {diff:.1e}")
                if diff > PARITY_TOL:
                    failures.append(f"{name} {cell} B={B} H={H}")
                    log(f"  FAILED: {name} {cell} B={B} H={H}")
            except Exception:
                failed(f"{name} {cell} B={B} H={H}", failures)
    return rows


def step_gemm_section(cuda, cells, sizes, T, repeats, failures):
    """The cells with each step as a register-tiled GEMM (``step_gemm``, the large-batch kernels
    of every cell) against the split-K kernels."""
    log("step_gemm: each step one tiled GEMM + gate math, against the split-K kernels (ms, device)")
    return two_ways_section(cuda, "step_gemm", cells, sizes, T, repeats, failures, {"step_gemm": False},
                            {"step_gemm": True}, ("split-K", "step_gemm"))


def staged_section(cuda, cells, sizes, T, repeats, failures):
    """The LSTM's and the RNN's split-K kernels with each step's operand staged in shared memory
    (``launch.stage_slabs``) against the same kernels reading it from global memory (the sums
    run in the same order: a difference of 0 expected)."""
    from rnnjit.kernels.cuda.launch import SETTINGS
    log(f"staged: each step's operand staged in shared memory (slabs of {SETTINGS['stage_kc']} k values a "
        "thread) against read from global memory in the k loop (ms, device; split-K kernels)")
    return two_ways_section(cuda, "staged", [c for c in cells if c in ("rnn", "lstm")], sizes, T, repeats,
                            failures, {"step_gemm": False, "stage": False}, {"step_gemm": False, "stage": True},
                            ("direct", "staged"))


def gemm_shapes(B, H, T):
    """(label, M, N, K, trans_a, trans_b) of an LSTM layer's four products, I = H."""
    G = 4 * H
    return [(f"X W_ih^T  B={B} H={H}", T * B, G, H, False, True),
            (f"dA W_ih   B={B} H={H}", T * B, H, G, False, False),
            (f"dA^T X    B={B} H={H}", G, H, T * B, True, False)]


# ---- a whole training step: CharLM on the device against the same model in torch ----------------

LM_V, LM_LAYERS, LM_CLIP, LM_LR = 65, 2, 5.0, 2e-3
LM_STEPS = 3   # parity: the losses and norms of this many steps from the same weights and data


class OursLM:
    """rnnjit's CharLM with device="cuda", its Adam and clipping: the engine's step."""

    def __init__(self, cell, H, B, T, device="cuda", state=None, graphs=False):
        from rnnjit.models import CharLM
        from rnnjit.train.optim import Adam, clip_gradients, gradients
        self.model = CharLM(LM_V, H, LM_LAYERS, cell, seed=0, device=device, cuda_graphs=graphs)
        if state is not None:
            self.model.load_state_dict(state)
        self.opt = Adam(self.model.parameters(), lr=LM_LR)
        self.clip = clip_gradients
        self.grads = gradients(self.model.parameters())   # the one flat buffer, as the engine clips
        self.B = B

    def train_step(self, x, y):
        loss, _ = self.model.forward_backward(x, y, self.model.initial_state(self.B))
        norm, _ = self.clip(self.grads, LM_CLIP, "norm")
        self.opt.step()
        return loss, norm


class TorchLM:
    """The same model in torch on CUDA, from the same weights (the state_dict keys match)."""

    def __init__(self, torch, cell, H, state):
        nn = torch.nn
        self.torch = torch
        rnn_cls = getattr(nn, TORCH_NAMES[cell])
        m = nn.Module()
        m.embedding = nn.Embedding(LM_V, H)
        m.rnn = rnn_cls(H, H, LM_LAYERS)
        m.decoder = nn.Linear(H, LM_V)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        self.m = m.cuda().float()
        self.opt = torch.optim.Adam(self.m.parameters(), lr=LM_LR)

    def train_step(self, x, y):
        torch, m = self.torch, self.m
        x = torch.from_numpy(x).cuda()
        y = torch.from_numpy(y).cuda()
        self.opt.zero_grad(set_to_none=True)
        out, _ = m.rnn(m.embedding(x))
        z = m.decoder(out.reshape(-1, out.shape[2]))
        loss = torch.nn.functional.cross_entropy(z, y.reshape(-1))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(m.parameters(), LM_CLIP)
        self.opt.step()
        return loss.item(), norm.item()


def lm_section(cuda, torch, cells, sizes, T, repeats, failures, cpu_check=True, budget=None, save=None):
    """Parity over LM_STEPS steps, then the median time of a training step, for each cell and (B, H)."""
    rows = []
    budget = budget or Budget(None)
    for cell in cells:
        for B, H in sizes:
            label = f"charlm {cell} L={LM_LAYERS} B={B} H={H}"
            if budget.over(label):
                continue
            log(label)
            try:
                lm_case(cuda, torch, cell, B, H, T, repeats, failures, cpu_check, label, rows)
            except Exception:
                failed(label, failures)
            if save:
                save(lm_rows=rows)
    return rows


def lm_case(cuda, torch, cell, B, H, T, repeats, failures, cpu_check, label, rows):
    """One (cell, B, H) of ``lm_section``: appends its row to ``rows``."""
    rng = np.random.default_rng(1)
    data = [(rng.integers(0, LM_V, (T, B)), rng.integers(0, LM_V, (T, B))) for _ in range(LM_STEPS)]
    ours = OursLM(cell, H, B, T)
    state = ours.model.state_dict()
    t0 = time.perf_counter()
    got = [ours.train_step(x, y) for x, y in data]
    log(f"  first {LM_STEPS} steps (with compile) {time.perf_counter() - t0:.2f} s")
    refs = []
    if cpu_check:
        cpu = OursLM(cell, H, B, T, device="cpu", state=state)
        refs.append(("CPU", [cpu.train_step(x, y) for x, y in data]))
    theirs = None
    if torch is not None:
        theirs = TorchLM(torch, cell, H, state)
        refs.append(("torch", [theirs.train_step(x, y) for x, y in data]))
    graphed = OursLM(cell, H, B, T, state=state, graphs=True)
    same = [graphed.train_step(x, y) for x, y in data] == got
    engaged = bool(graphed.model._graphed.graphs)
    if not (same and engaged):
        failures.append(f"{label} CUDA graphs")
    log(f"  CUDA graphs: {'replayed' if engaged else 'NOT captured: ' + str(graphed.model._graphed.failed)}, "
        f"steps {'the same to the last bit' if same else 'DIFFERENT'} as without")
    for who, ref in refs:
        errs = [rel_err([g[i] for g in got], [r[i] for r in ref]) for i in (0, 1)]
        ok = max(errs) <= PARITY_TOL and all(np.isfinite(v) for g in got for v in g)
        if not ok:
            failures.append(f"{label} vs {who}")
        log(f"  parity vs {who:<5} {'ok  ' if ok else 'FAIL'} losses {errs[0]:.1e} norms {errs[1]:.1e} "
            f"| ours {[round(g[0], 5) for g in got]} {who} {[round(r[0], 5) for r in ref]}")
    x, y = data[0]
    row = {"cell": cell, "B": B, "H": H, "T": T}
    row["ours_train"] = timeit(functools.partial(ours.train_step, x, y), cuda.synchronize, repeats)
    if engaged:
        row["graphed_train"] = timeit(functools.partial(graphed.train_step, x, y), cuda.synchronize, repeats)
    del graphed
    if theirs is not None:
        row["torch_train"] = timeit(functools.partial(theirs.train_step, x, y), torch.cuda.synchronize, repeats)
        del theirs
        torch.cuda.empty_cache()
    rows.append(row)
    log("  time   " + "  ".join(f"{k} {v:.3f} ms" for k, v in row.items() if k.endswith("_train")))
    del ours


def graphed_calls(ours, want, failures, label):
    """The layer's forward and its training step captured as CUDA graphs (rnnjit/kernels/cuda/
    graphs.py): their replays are what our kernels cost without numba-cuda's host work. The
    replayed training step must give ``want``, the eager call's results, to the last bit.
    Returns the two graphs, or None when a capture fails."""
    from rnnjit.kernels.cuda import graphs, to_host
    try:
        forward, _ = graphs.capture(ours.forward)
        train, outs = graphs.capture(ours.train_step)
        train.replay()
    except Exception as e:
        failures.append(f"{label}: CUDA graph capture")
        log(f"  CUDA graphs: not captured: {type(e).__name__}: {e}")
        return None
    same = all((a is None) == (b is None) and (a is None or np.array_equal(to_host(a), b))
               for a, b in zip(outs, want))
    if not same:
        failures.append(f"{label}: CUDA graph replay differs")
    log(f"  CUDA graphs: {len(forward)} + {len(train)} nodes; the replayed step is "
        f"{'the eager one to the last bit' if same else 'DIFFERENT from the eager one'}")
    return forward, train


def cell_case(cuda, torch, cell, nl, B, H, T, repeats, args, failures, label, rows):
    """One (cell, nonlinearity, B, H): parity with the CPU and cuDNN, then (tanh only) the times."""
    d = make_case(cell, B, H, H, T)
    ours = Ours(cell, nl, d)
    t0 = time.perf_counter()
    got = ours.results()
    cuda.synchronize()
    log(f"  first call (with compile) {time.perf_counter() - t0:.2f} s")
    bad = [n for n, a in zip(OUT_NAMES, got) if a is not None and not np.all(np.isfinite(a))]
    if bad:
        failures.append(f"{label}: non-finite {bad}")
        log(f"  FAIL non-finite values in {bad}")
    # relu: where a pre-activation lies within rounding of 0, two correct implementations
    # can disagree on relu'(a) and the gradients then differ by O(1) at that element
    # (it spreads back through time); cuDNN vs CPU shows the same, so a looser bound.
    tol = RELU_TOL if nl == "relu" else None
    cpu = None
    if not args.no_cpu and (not args.quick or B == 1):
        cpu = cpu_results(cell, nl, d)
        compare(f"vs CPU  {label}", got, cpu, failures, tol)
    ref = None
    if torch is not None:
        ref = Cudnn(torch, cell, nl, d)
        theirs = ref.results()
        compare(f"vs cuDNN {label}", got, theirs, failures, tol)
        if cpu is not None:
            compare(f"(cuDNN vs CPU {label})", theirs, cpu, failures, tol, info=True)
    if nl != "tanh":
        return
    row = {"cell": cell, "B": B, "H": H, "T": T}
    row["ours_fwd"] = timeit(ours.forward, cuda.synchronize, repeats)
    row["ours_train"] = timeit(ours.train_step, cuda.synchronize, repeats)
    graphed = graphed_calls(ours, got, failures, label)
    if graphed:
        row["graphed_fwd"] = timeit(graphed[0].replay, cuda.synchronize, repeats)
        row["graphed_train"] = timeit(graphed[1].replay, cuda.synchronize, repeats)
    if ref is not None:
        row["cudnn_fwd"] = timeit(ref.forward, torch.cuda.synchronize, repeats)
        row["cudnn_train"] = timeit(ref.train_step, torch.cuda.synchronize, repeats)
        del ref
        torch.cuda.empty_cache()
    rows.append(row)
    log("  time   " + "  ".join(f"{k} {v:.3f} ms" for k, v in row.items() if k.startswith(("ours", "cudnn"))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="B in {1, 256}, H in {128, 1024}, fewer repeats")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for a check in the simulator")
    ap.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells to time (default: all)")
    ap.add_argument("-T", type=int, default=None, help="sequence length (default 100; 3 with --tiny)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    ap.add_argument("--tf32", action="store_true", help="let cuDNN use TF32 (faster, less precise; parity looser)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the parity check against the CPU kernels")
    ap.add_argument("--no-relu", action="store_true", help="skip the relu RNN (checked for parity only)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--lm-only", action="store_true", help="only the CharLM training step against torch")
    ap.add_argument("--no-lm", action="store_true", help="skip the CharLM training step")
    ap.add_argument("--budget", type=float, default=None,
                    help="start no new case after this many seconds (the cases left are listed as skipped)")
    ap.add_argument("--gemm", action="store_true",
                    help="also time the GEMM of an LSTM layer's products, both slab loadings, against cuBLAS")
    ap.add_argument("--step-gemm", action="store_true",
                    help="also time the LSTM forward with each step as a tiled GEMM against the split-K kernel")
    ap.add_argument("--staged", action="store_true",
                    help="also time the LSTM and the RNN with each step's operand staged in shared memory and not")
    ap.add_argument("--sizes", default=None,
                    help="BxH pairs to check and time instead of the grid, e.g. 1x128,32x512,256x1024")
    ap.add_argument("--sweep", action="store_true",
                    help="instead: time our LSTM under several tile shapes (for tuning launch.plan)")
    args = ap.parse_args(argv)

    from rnnjit.kernels.cuda import require_cuda
    require_cuda()
    from numba import cuda

    from rnnjit.kernels.cuda.launch import simulating
    if simulating():
        sys.setswitchinterval(2e-4)  # the simulator polls its Python threads; this makes it ~3x faster
    if args.sweep:
        return sweep(cuda, args)

    if args.tiny:
        T, Bs, Hs, repeats, lm_sizes = 3, (1, 3), (4, 6), 1, [(2, 4)]
    elif args.quick:
        T, Bs, Hs, repeats, lm_sizes = 100, (1, 256), (128, 1024), 3, [(32, 128), (64, 512)]
    else:
        T, Bs, Hs, repeats, lm_sizes = 100, (1, 32, 256), (128, 512, 1024), 5, [(32, 128), (32, 512), (256, 512)]
    T = args.T or T
    repeats = args.repeats or repeats
    sizes = ([tuple(int(v) for v in p.lower().split("x")) for p in args.sizes.split(",")] if args.sizes
             else [(B, H) for B in Bs for H in Hs])
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    global PARITY_TOL
    if args.tf32:
        PARITY_TOL = 2e-2

    name, info = device_info(cuda)
    log("=" * 100)
    log(f"device   : {name}  {info}")
    log("versions : " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    torch, why = get_torch()
    if torch is None:
        log(f"cuDNN    : skipped ({why})")
    else:
        torch.backends.cudnn.allow_tf32 = bool(args.tf32)
        torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
        log(f"cuDNN    : torch.nn on {torch.cuda.get_device_name()} (TF32 {'on' if args.tf32 else 'off'})")
    log(f"sizes    : T={T}, (B, H) in {sizes}, I=H, float32, {repeats} timed calls (median)")
    log("=" * 100)

    failures, rows = [], []
    t_start = time.perf_counter()
    budget = Budget(args.budget)
    results = {"device": name, "info": info, "versions": versions(), "rows": rows, "lm_rows": [],
               "failures": failures, "skipped": budget.skipped}

    def save(**more):
        results.update(more)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)

    # the RNN with relu only for parity (its timing is the tanh RNN's)
    parity_cases = [(c, "tanh") for c in cells] + ([("rnn", "relu")] if "rnn" in cells and not args.no_relu else [])
    # size by size, every cell at each: a run cut short by the budget still compares the cells
    for B, H in ([] if args.lm_only else sizes):
        for cell, nl in parity_cases:
            label = f"{cell}{'-relu' if nl == 'relu' else ''} B={B} H={H}"
            if budget.over(label):
                continue
            log(f"{label}")
            try:
                cell_case(cuda, torch, cell, nl, B, H, T, repeats, args, failures, label, rows)
            except Exception:
                failed(label, failures)
            save()

    log("=" * 100)
    log(f"{'cell':<5} {'B':>4} {'H':>5} | {'fwd ours':>9} {'cuDNN':>9} {'ratio':>6} | "
        f"{'train ours':>10} {'cuDNN':>9} {'ratio':>6} | {'fwd graph':>9} {'ratio':>6} {'train graph':>11} "
        f"{'ratio':>6}   (ms; ratio = ours / cuDNN; graph: the same call replayed as a CUDA graph)")
    def cell_(r, k):
        return f"{r[k]:9.3f}" if k in r else f"{'-':>9}"

    def ratio(r, a, b):
        return f"{r[a] / r[b]:6.2f}" if a in r and b in r and r[b] > 0 else f"{'-':>6}"

    for r in sorted(rows, key=lambda r: (r["cell"], r["B"], r["H"])):
        log(f"{r['cell']:<5} {r['B']:>4} {r['H']:>5} | {cell_(r, 'ours_fwd')} {cell_(r, 'cudnn_fwd')} "
            f"{ratio(r, 'ours_fwd', 'cudnn_fwd')} | {cell_(r, 'ours_train'):>10} {cell_(r, 'cudnn_train')} "
            f"{ratio(r, 'ours_train', 'cudnn_train')} | {cell_(r, 'graphed_fwd')} "
            f"{ratio(r, 'graphed_fwd', 'cudnn_fwd')} {cell_(r, 'graphed_train'):>11} "
            f"{ratio(r, 'graphed_train', 'cudnn_train')}")
    log("=" * 100)
    if args.staged and not budget.over("staged"):
        sizes_s = [(1, 12), (3, 20)] if args.tiny else [(32, 512), (64, 512), (256, 128)]
        save(staged=staged_section(cuda, cells, sizes_s, T, repeats, failures))
        log("=" * 100)
    if args.step_gemm and not budget.over("step_gemm"):
        sizes_g = [(5, 9), (8, 6)] if args.tiny else [(64, 512), (256, 128), (256, 1024)]
        save(step_gemm=step_gemm_section(cuda, cells, sizes_g, T, repeats, failures))
        log("=" * 100)
    lm_rows = [] if args.no_lm else lm_section(cuda, torch, cells, lm_sizes, T, repeats, failures,
                                               cpu_check=not args.no_cpu, budget=budget, save=save)
    if lm_rows:
        log("=" * 100)
        log(f"{'charlm':<6} {'B':>4} {'H':>5} | {'step ours':>10} {'torch':>9} {'ratio':>6} | {'graphed':>9} "
            f"{'ratio':>6}   (ms per training step: ids in, forward, BPTT, clip, Adam, loss and norm out; "
            f"L={LM_LAYERS}, V={LM_V}; graphed: --cuda-graphs)")
        for r in lm_rows:
            log(f"{r['cell']:<6} {r['B']:>4} {r['H']:>5} | {cell_(r, 'ours_train'):>10} {cell_(r, 'torch_train')} "
                f"{ratio(r, 'ours_train', 'torch_train')} | {cell_(r, 'graphed_train')} "
                f"{ratio(r, 'graphed_train', 'torch_train')}")
        log("=" * 100)
    if not args.lm_only and "lstm" in cells and not budget.over("breakdown"):
        bd_sizes = [(1, 4), (3, 6)] if args.tiny else [(1, 128), (32, 512), (256, 1024)]
        try:
            save(breakdown=breakdown(cuda, bd_sizes, T, repeats))
        except Exception:
            failed("breakdown", failures)
        log("=" * 100)
    if args.gemm and not budget.over("gemm"):
        sizes = [(1, 4), (3, 6)] if args.tiny else [(64, 512), (256, 1024)]
        save(gemm=gemm_section(cuda, torch, [s for B, H in sizes for s in gemm_shapes(B, H, T)], repeats, failures))
        log("=" * 100)
    if budget.skipped:
        log(f"skipped for the budget ({len(budget.skipped)}): " + "; ".join(budget.skipped))
    from rnnjit.kernels.cuda import memory
    pool = memory.stats()   # None: numba's own allocator (simulator, or RNNJIT_CUDA_POOL=0)
    log(f"memory pool: {pool if pool is not None else 'off'}")
    results["memory_pool"] = pool
    log(f"total {time.perf_counter() - t_start:.1f} s; parity: "
        + ("all ok" if not failures else f"{len(failures)} FAILED: " + "; ".join(failures)))
    save(lm_rows=lm_rows)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
