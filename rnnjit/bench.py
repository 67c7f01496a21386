"""``rnnjit bench``: rnnjit against PyTorch CPU and a plain-NumPy reference, side by side, in one run.

For every point of a grid (cell, batch B, sequence length T, hidden size H, layers, dtype) it times

    train     one training step of a character model: one-hot input (V = 65), the recurrent
              stack, a linear decoder to V classes, mean softmax cross-entropy, BPTT, plain SGD
              (rnnjit gathers columns of W_ih for the one-hot input where the peers multiply the
              one-hot matrix, and skips the input's gradient as torch does: see ``NOTES``)
    forward   the same model's forward pass only (logits of the T*B characters), keeping nothing
              for backward: rnnjit's under ``rnnjit.no_grad()``, torch's under ``torch.no_grad()``
    sample    writing characters one at a time (B = 1, T = 1 per call, then softmax and a draw)

for rnnjit, ``rnnjit.bench_ref`` (min-char-rnn style NumPy) and PyTorch (when installed), with the
same thread count for all of them (BLAS, OpenMP, Numba, torch; default 1). Warm-up calls are not
timed; each figure is the median of ``--repeats`` timings. FLOPs count the matrix products only
(forward 2·T·B·(G·H·(I+H)) per layer plus the decoder, training three times the forward), so
GFLOP/s can be read against the GEMM ceiling measured at the start of the run.

Memory: the bytes of the arrays the training step holds at its peak (counted from the arrays of a
real step: forward caches, one layer's gate gradients, logits), beside torch-rnn's formula for an LSTM,
N·T·D + 6·N·T·H + 8·N·H + 8·H² + 8·D·H + 9·H floats (N = B, D = input size).

    rnnjit bench --quick                        a few points, a minute or so
    rnnjit bench --cells lstm --batch 32 --hidden 512 --seq-len 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from .bench_impls import IMPL_CLASSES, V, RnnjitImpl, _torch
from .threads import set_threads as _set_library_threads

GRID = {"cells": ["lstm", "gru", "rnn"], "batch": [1, 32], "seq_len": [25, 100], "hidden": [64, 128, 512],
        "layers": [1, 2], "dtype": ["float32", "float64"]}
QUICK = {"cells": ["lstm", "gru", "rnn"], "batch": [1, 32], "seq_len": [100], "hidden": [128],
         "layers": [1], "dtype": ["float32"]}
MODES = ("train", "forward", "sample")
IMPLS = ("rnnjit", "numpy", "torch")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def set_threads(n: int) -> dict:
    """Every library's pool, torch's too (it is a peer here), to n threads; what each reports."""
    report = _set_library_threads(n)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(n)
        report["torch"] = torch.get_num_threads()
    return report


# ---- timing -----------------------------------------------------------------------------------

def median_time(fn, repeats: int, warmup: int = 2, budget_s: float = 3.0) -> float:
    """Median seconds of fn() over ``repeats`` calls after ``warmup`` untimed ones (fewer repeats
    when one call is slow, but at least 3)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for k in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if k >= 2 and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def gemm_ceiling(dtype: str, n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of one n^3 GEMM through numpy's BLAS (the library rnnjit's kernels call)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    t = min(median_time(lambda: np.dot(a, a, out), 1, warmup=1) for _ in range(repeats))
    return 2.0 * n ** 3 / t / 1e9


def flops(cell, B, T, H, layers, mode):
    """FLOPs of the matrix products (the decoder included); training counts 3x the forward."""
    G = GATES[cell]
    f = 0
    for k in range(layers):
        I = V if k == 0 else H
        f += 2 * T * B * G * H * (I + H)
    f += 2 * T * B * H * V
    return 3 * f if mode == "train" else f


def torch_rnn_lstm_bytes(B, T, H, D, itemsize):
    """torch-rnn's estimate of an LSTM layer's training memory, in bytes."""
    return (B * T * D + 6 * B * T * H + 8 * B * H + 8 * H * H + 8 * D * H + 9 * H) * itemsize


# ---- the run ----------------------------------------------------------------------------------

def _points(sel):
    for cell in sel["cells"]:
        for dtype in sel["dtype"]:
            for layers in sel["layers"]:
                for B in sel["batch"]:
                    for T in sel["seq_len"]:
                        for H in sel["hidden"]:
                            yield cell, B, T, H, layers, dtype


def _train_memory(cell, B, T, H, layers, dtype):
    """Bytes of the arrays one rnnjit training step holds at its peak (start of the backward pass):
    every layer's forward cache (states, gates, the input: character ids for the first layer, whose
    one-hot vectors are never built), the gate gradients, input gradient and weight gradients of one
    layer's backward (the first layer's dx is skipped), the logits and their gradient. Counted from
    the arrays themselves after a real step (NumPy's and Numba's allocations alike; the weights
    excluded)."""
    import numpy as np
    impl = RnnjitImpl(cell, B, T, H, layers, dtype)
    x = np.zeros((T, B), np.int64)
    impl.train_step(x, x)
    params = {id(p) for _, p, _ in impl.model.parameters()}
    held = {}  # buffer -> bytes (NumPy views and Numba's arrays share a base object per buffer)
    for cache in impl.model.rnn._cache[0]:
        for a in (b for item in cache for b in (item if isinstance(item, tuple) else (item,))):
            if isinstance(a, np.ndarray) and id(a) not in params:
                key = id(a) if a.base is None else id(a.base)
                held[key] = max(held.get(key, 0), a.nbytes)
    total = sum(held.values())
    item = np.dtype(dtype).itemsize
    G = GATES[cell]
    dgates = T * B * G * H * (2 if cell == "gru" else 1)
    dx = T * B * H if layers > 1 else 0  # the upper layers' input gradients
    biggest_layer = max(G * H * ((V if k == 0 else H) + H) for k in range(layers))
    total += (dgates + dx + 2 * biggest_layer + 2 * B * H) * item  # backward of one layer
    total += 2 * T * B * V * item  # logits, dlogits
    return total


def run_point(point, modes, impls, repeats, sample_chars, log=None, device="cpu"):
    import numpy as np
    cell, B, T, H, layers, dtype = point
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, (T, B)).astype(np.int64)
    y = rng.integers(0, V, (T, B)).astype(np.int64)
    rj = RnnjitImpl(cell, B, T, H, layers, dtype, device=device)
    state = rj.state_dict()
    built = {"rnnjit": lambda: rj,
             "numpy": lambda: IMPL_CLASSES["numpy"](cell, B, T, H, layers, dtype, state),
             "torch": lambda: IMPL_CLASSES["torch"](cell, B, T, H, layers, dtype, state)}
    row = {"cell": cell, "batch": B, "seq_len": T, "hidden": H, "layers": layers, "dtype": dtype, "results": {}}
    for name in impls:
        impl = built[name]()
        res = {}
        for mode in modes:
            if mode == "sample" and B != 1:
                continue
            if mode == "train":
                s = median_time(lambda: impl.train_step(x, y), repeats)
                chars = T * B
            elif mode == "forward":
                s = median_time(lambda: impl.forward(x), repeats)
                chars = T * B
            else:
                s = median_time(impl.sampler(sample_chars), max(3, repeats // 2), warmup=1)
                chars = sample_chars
            f = flops(cell, B, T, H, layers, mode) if mode != "sample" else flops(cell, 1, chars, H, layers, "forward")
            res[mode] = {"ms": s * 1e3, "chars_per_s": chars / s, "gflops": f / s / 1e9}
        row["results"][name] = res
        if log:
            log(f"  {name:6s} " + "  ".join(f"{m} {r['ms']:.3f} ms" for m, r in res.items()))
    return row


def run_bench(sel, modes=MODES, impls=IMPLS, repeats=10, threads=1, sample_chars=200, memory=True, compile=True,
              log=None, device="cpu"):
    """Run the grid; returns the report dict that --json writes.

    ``device="cuda"`` runs rnnjit's recurrent layers with the CUDA kernels (the dense parts and
    the peers stay on the CPU; ``benchmarks/cuda_check.py`` compares the kernels with cuDNN)."""
    thread_report = set_threads(threads)
    import numba
    import numpy as np
    from .kernels import _blas, _vector_width
    impls = [i for i in impls if i != "torch" or _torch() is not None]
    report = {
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                     "torch": _torch().__version__ if _torch() is not None else None},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "llvm_cpu": _vector_width.host_cpu_name(),
                    "vector_width": _vector_width.installed_width()},
        "threads": threads, "thread_report": thread_report,
        "blas": {"numpy_openblas_in_kernels": _blas.HAVE_OPENBLAS, "path": _blas.OPENBLAS_PATH},
        "vocab": V, "repeats": repeats, "sample_chars": sample_chars, "device": device,
        "notes": " ".join(NOTES),
    }
    t0 = time.perf_counter()
    report["compile_s"] = _cold_compile_probe() if compile else None
    dts = sorted(set(sel["dtype"]))
    report["gemm_ceiling_gflops"] = {dt: gemm_ceiling(dt) for dt in dts}
    if log:
        log(f"GEMM ceiling (numpy BLAS, 2048^3, {threads} thread(s)): "
            + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in report["gemm_ceiling_gflops"].items()))
    rows = []
    for point in _points(sel):
        if log:
            log("{} B={} T={} H={} layers={} {}".format(*point))
        row = run_point(point, modes, impls, repeats, sample_chars, log, device)
        ceiling = report["gemm_ceiling_gflops"][row["dtype"]]
        for name, res in row["results"].items():
            for mode, r in res.items():
                r["pct_gemm"] = 100.0 * r["gflops"] / ceiling
                for peer in impls:
                    if peer != name and mode in row["results"].get(peer, {}):
                        r[f"x_vs_{peer}"] = row["results"][peer][mode]["ms"] / r["ms"]
        if memory and "train" in modes:
            cell, B, T, H, layers, dtype = point
            item = np.dtype(dtype).itemsize
            row["memory"] = {"rnnjit_peak_bytes": _train_memory(*point),
                             "torch_rnn_lstm_formula_bytes": sum(
                                 torch_rnn_lstm_bytes(B, T, H, V if k == 0 else H, item) for k in range(layers))}
        rows.append(row)
    report["rows"] = rows
    report["elapsed_s"] = time.perf_counter() - t0
    return report


def _cold_compile_probe():
    """Seconds from a fresh interpreter to the end of the first training step of ``rnnjit train``'s
    default model (2-layer LSTM, embedding input, float32, Adam, norm clipping), imports included:
    with an empty Numba cache (``cold_s``: everything compiles), then again in a new process with
    the cache it left (``warm_s``: everything loads)."""
    import subprocess
    import tempfile
    code = ("import time; t=time.perf_counter(); import numpy as np; from rnnjit.models.char_lm import CharLM; "
            "from rnnjit.train.optim import Adam, clip_gradients, gradients; m=CharLM(65, 128, 2, 'lstm'); "
            "o=Adam(m.parameters()); x=np.zeros((64, 32), np.int64); m.forward_backward(x, x, m.initial_state(32)); "
            "clip_gradients(gradients(m.parameters()), 5.0); o.step(); print(time.perf_counter()-t)")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for key in ("cold_s", "warm_s"):
            try:
                r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   timeout=600, check=True)
                out[key] = float(r.stdout.strip().splitlines()[-1])
            except (subprocess.SubprocessError, ValueError, IndexError):
                out[key] = None
    return out


# ---- the table --------------------------------------------------------------------------------

NOTES = (
    "Same model, different work: rnnjit reads the one-hot input as a column gather (W_ih e_c is column c",
    "of W_ih; dW_ih is a scatter-add into the columns of the characters seen) where torch and numpy multiply",
    "the (T*B x 65) one-hot matrix, and, like torch (its input does not require a gradient), rnnjit does",
    "not compute the gradient of the input. GFLOP/s and %GEMM count the dense model's products for all",
    "(the first layer's input GEMM included), so rnnjit's figures there are work avoided, not work done.",
)

def format_table(report) -> str:
    lines = []
    v = report["versions"]
    lines.append(f"rnnjit bench: {report['machine']['processor']}, {report['machine']['cpu_count']} CPUs, "
                 f"threads={report['threads']} ({', '.join(f'{k}={x}' for k, x in report['thread_report'].items())})")
    lines.append(f"python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, torch {v['torch']}; "
                 f"kernels call numpy's OpenBLAS: {report['blas']['numpy_openblas_in_kernels']}")
    m = report["machine"]
    if m.get("llvm_cpu"):
        width = m.get("vector_width")
        lines.append(f"Numba compiles for: {m['llvm_cpu']}, rnnjit's loops vectorised "
                     + (f"{width} bits wide" if width else "as LLVM prefers for this CPU"))
    if report.get("device", "cpu") != "cpu":
        lines.append(f"rnnjit's model runs on: {report['device']} (the peers on the CPU)")
    ceil = report["gemm_ceiling_gflops"]
    lines.append("GEMM ceiling: " + ", ".join(f"{k} {x:.1f} GFLOP/s" for k, x in ceil.items()))
    c = report.get("compile_s") or {}
    if c:
        fmt = lambda s: "n/a" if s is None else f"{s:.1f} s"
        lines.append(f"rnnjit train's default model (2-layer LSTM, H=128, float32, Adam), from a fresh interpreter to "
                     f"the end of its first step: {fmt(c.get('cold_s'))} with an empty Numba cache (compiling), "
                     f"{fmt(c.get('warm_s'))} with a warm one")
    hdr = (f"{'cell':5s} {'B':>3s} {'T':>4s} {'H':>4s} {'L':>2s} {'dtype':7s} {'mode':8s} {'impl':7s} "
           f"{'ms':>10s} {'chars/s':>10s} {'GFLOP/s':>8s} {'%GEMM':>6s} {'x numpy':>8s} {'x torch':>8s} {'x rnnjit':>8s}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for row in report["rows"]:
        key = (f"{row['cell']:5s} {row['batch']:3d} {row['seq_len']:4d} {row['hidden']:4d} {row['layers']:2d} "
               f"{row['dtype']:7s}")
        modes = []
        for res in row["results"].values():
            modes += [m for m in res if m not in modes]
        for mode in modes:
            for name, res in row["results"].items():
                if mode not in res:
                    continue
                r = res[mode]
                ratio = lambda p: f"{r[f'x_vs_{p}']:8.2f}" if f"x_vs_{p}" in r else f"{'':8s}"
                lines.append(f"{key} {mode:8s} {name:7s} {r['ms']:10.3f} {r['chars_per_s']:10.0f} "
                             f"{r['gflops']:8.2f} {r['pct_gemm']:6.1f} {ratio('numpy')} {ratio('torch')} "
                             f"{ratio('rnnjit')}")
        if "memory" in row:
            m = row["memory"]
            lines.append(f"{key} memory   rnnjit training-step peak {m['rnnjit_peak_bytes'] / 2**20:.2f} MiB; "
                         f"torch-rnn LSTM formula {m['torch_rnn_lstm_formula_bytes'] / 2**20:.2f} MiB")
    lines.append("x PEER = PEER's time / this time (above 1: this one is faster). "
                 f"Medians of up to {report['repeats']} timings after warm-up; elapsed {report['elapsed_s']:.0f} s.")
    lines.extend(NOTES)
    return "\n".join(lines)


# ---- the command ------------------------------------------------------------------------------

def _int_list(s):
    try:
        return [int(v) for v in s.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _name_list(allowed):
    def parse(s):
        names = [v.strip() for v in s.split(",") if v.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {s!r}")
        return names
    return parse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time rnnjit against PyTorch CPU and a plain-NumPy reference",
        description="Times training steps, forward passes and character-by-character sampling of a "
                    "character model for rnnjit, a min-char-rnn style NumPy reference and PyTorch CPU "
                    "(when installed), side by side, with the same thread count. The full grid takes "
                    "long: select with --cells/--batch/--hidden/... or use --quick.")
    p.add_argument("--cells", type=_name_list(GATES), default=None, metavar="LIST", help="lstm,gru,rnn")
    p.add_argument("--batch", type=_int_list, default=None, metavar="LIST", help="batch sizes (default 1,32)")
    p.add_argument("--seq-len", type=_int_list, default=None, metavar="LIST", help="sequence lengths (default 25,100)")
    p.add_argument("--hidden", type=_int_list, default=None, metavar="LIST", help="hidden sizes (default 64,128,512)")
    p.add_argument("--layers", type=_int_list, default=None, metavar="LIST", help="layer counts (default 1,2)")
    p.add_argument("--dtype", type=_name_list(("float32", "float64")), default=None, metavar="LIST",
                   help="float32,float64")
    p.add_argument("--modes", type=_name_list(MODES), default=list(MODES), metavar="LIST",
                   help="train,forward,sample (default all)")
    p.add_argument("--impls", type=_name_list(IMPLS), default=list(IMPLS), metavar="LIST",
                   help="rnnjit,numpy,torch (default all; torch only when installed)")
    p.add_argument("--quick", action="store_true", help="a small grid: every cell, B 1 and 32, T 100, H 128, float32")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="threads for every library (default 1)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where rnnjit's recurrent layers run (default cpu; cuda needs a GPU and rnnjit[cuda])")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="timed repeats per figure (default 10)")
    p.add_argument("--sample-chars", type=int, default=200, metavar="N", help="characters per sampling run")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--no-compile", action="store_true",
                   help="skip measuring the cold compile time (a fresh process with an empty Numba cache)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    p.set_defaults(handler=cmd_bench)


def selection(args) -> dict:
    base = QUICK if args.quick else GRID
    sel = {}
    for key in GRID:
        given = getattr(args, key, None)
        sel[key] = given if given else list(base[key])
    return sel


def cmd_bench(args) -> int:
    if args.threads < 1 or args.repeats < 1 or args.sample_chars < 1:
        print("rnnjit bench: error: --threads, --repeats and --sample-chars must be >= 1", file=sys.stderr)
        return 2
    from .threads import MAX_THREADS
    if args.threads > MAX_THREADS:
        print(f"rnnjit bench: error: --threads must be at most {MAX_THREADS}, got {args.threads}", file=sys.stderr)
        return 2
    for key in ("batch", "seq_len", "hidden", "layers"):
        if any(v < 1 for v in (getattr(args, key) or [1])):
            print(f"rnnjit bench: error: --{key.replace('_', '-')} values must be >= 1", file=sys.stderr)
            return 2
    if args.json not in (None, "-"):      # before the timings: a bad path must not waste them
        where = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(where) or not os.access(where, os.W_OK):
            print(f"rnnjit bench: error: --json {args.json}: cannot write a file there: give a path in a "
                  "writable directory, or - for stdout", file=sys.stderr)
            return 2
    if args.impls == ["torch"] and _torch() is None:
        print("rnnjit bench: error: --impls torch, but torch is not installed: pip install torch, or add "
              "rnnjit or numpy to --impls", file=sys.stderr)
        return 2
    if "torch" in args.impls and _torch() is None and args.impls != list(IMPLS):
        print("rnnjit bench: note: torch is not installed: its column is left out", file=sys.stderr)
    if args.device == "cuda":
        from .kernels import cuda as kcuda
        try:
            kcuda.require_cuda()
        except RuntimeError as e:
            print(f"rnnjit bench: error: {e}", file=sys.stderr)
            return 2
    log = None if args.json == "-" else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run_bench(selection(args), modes=args.modes, impls=args.impls, repeats=args.repeats,
                       threads=args.threads, sample_chars=args.sample_chars, memory=not args.no_memory,
                       compile=not args.no_compile, log=log, device=args.device)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0
