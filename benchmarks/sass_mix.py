"""What the GPU will execute, counted without a GPU: the instruction mix of the kernels' hot loops.

Compiles kernels to PTX for sm_90 (numba-cuda's NVVM), assembles them with ``ptxas`` and
disassembles the machine code (SASS) with ``nvdisasm``, then, for each kernel, prints its
registers per thread, its spilled bytes, and its innermost loops that multiply (a loop is the
code from a label to a branch back to it): how many instructions one trip runs, how many of them
are the FMAs that do the work (FFMA, DFMA in float64), and how many read shared memory (LDS).

Why it matters: a warp scheduler issues one instruction per cycle, so a loop whose trip runs 64
FMAs in 192 instructions can reach at most a third of the GPU's FMA throughput, however well
the memory keeps up; and the registers a thread needs decide how many warps fit on a
multiprocessor to hide latency. This is a proxy, not a timing: ``cuda_check.py`` times.

    python benchmarks/sass_mix.py                 # every kernel family
    python benchmarks/sass_mix.py --only gemm     # gemm | step | persistent

Needs numba-cuda, ``ptxas`` (the CUDA toolkit; ``$PTXAS`` to point at one) and ``nvdisasm``
(``$NVDISASM``, or ``pip install nvidia-cuda-nvdisasm`` in any environment: it is looked for in
the ``nvidia`` package too); no GPU. When the PTX is newer than ptxas, its ``.version`` line is
lowered to what ptxas reads: the kernels use nothing newer.
"""

import argparse
import collections
import glob
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numba import cuda  # noqa: E402
from numba import types as t  # noqa: E402

import numba.cuda.dispatcher as _dispatcher  # noqa: E402

# Device functions ask the current device for its compute capability; there may be none.
_dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))


def find_tool(name):
    path = os.environ.get(name.upper()) or shutil.which(name)
    if path:
        return path
    for root in sys.path + [os.path.expanduser("~/.local/lib")]:
        hits = glob.glob(os.path.join(root, "nvidia", "*", "bin", name))
        if hits:
            return hits[0]
    raise SystemExit(f"sass_mix: no {name} found (set ${name.upper()}; nvdisasm: pip install nvidia-cuda-nvdisasm)")


PTXAS, NVDISASM = find_tool("ptxas"), find_tool("nvdisasm")


def assemble(ptx, work):
    """ptxas's log and the path of the relocatable cubin (-c: the cooperative-groups calls may
    stay unresolved, nothing is linked). A PTX newer than this ptxas gets the version it reads."""
    src, obj = os.path.join(work, "k.ptx"), os.path.join(work, "k.cubin")
    for _ in range(2):
        with open(src, "w") as f:
            f.write(ptx)
        run = subprocess.run([PTXAS, "-arch=sm_90", "-O3", "-v", "-c", src, "-o", obj], capture_output=True, text=True)
        readable = re.search(r"Unsupported \.version .*current version is '(\d+\.\d+)'", run.stderr)
        if not readable:
            break
        ptx = re.sub(r"\.version \d+\.\d+", f".version {readable.group(1)}", ptx, count=1)
    if run.returncode:
        raise SystemExit(run.stderr)
    return run.stderr, obj


def sass(kernel, sig, work):
    """(registers, spilled bytes, SASS text) of one kernel for sm_90."""
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
    log, obj = assemble(ptx, work)
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = int(re.search(r"(\d+) bytes spill stores", log).group(1))
    return regs, spill, subprocess.run([NVDISASM, "-c", obj], capture_output=True, text=True, check=True).stdout


def loops(text):
    """The loops of a SASS listing: (label, the instructions from the label to the branch back)."""
    labels, instrs = {}, []
    for line in text.splitlines():
        label = re.match(r"\s*\.(L_x_\d+):", line)
        if label:
            labels[label.group(1)] = len(instrs)
            continue
        ins = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if ins:
            instrs.append(ins.group(1))
    found = []
    for i, ins in enumerate(instrs):
        target = re.search(r"BRA\s+`?\(?\.(L_x_\d+)", ins)
        if target and labels.get(target.group(1), i + 1) <= i:
            found.append((target.group(1), labels[target.group(1)], instrs[labels[target.group(1)]:i + 1]))
    return found


def fma_count(body):
    return sum(opcode(ins) in ("FFMA", "DFMA") for ins in body)


def per_slab(found, fma_per_slab):
    """(instructions, FMAs) one k-slab of a product runs. The innermost loop that multiplies
    from shared memory is where the products run; the slab loop is the smallest loop around it
    (or itself, when the compiler unrolled it) with a barrier, and the innermost loop counts
    as many trips as the slab's FMAs need."""
    def has(body, op):
        return any(opcode(ins) == op for ins in body)
    inner = min((x for x in found if fma_count(x[2]) >= 4 and has(x[2], "LDS")), key=lambda x: len(x[2]))
    slab = min((x for x in found if x[1] <= inner[1] < x[1] + len(x[2]) and has(x[2], "BAR")),
               key=lambda x: len(x[2]))
    if slab is inner:
        return len(slab[2]), fma_count(slab[2])
    trips = (fma_per_slab - (fma_count(slab[2]) - fma_count(inner[2]))) / fma_count(inner[2])
    return len(slab[2]) - len(inner[2]) + trips * len(inner[2]), fma_per_slab


def opcode(ins):
    return re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0].split(".")[0]


def report(name, kernel, sig, work, top=2, fma_per_slab=None):
    regs, spill, text = sass(kernel, sig, work)
    print(f"{name:<34} {regs:>4} regs  {spill:>4} B spilled")
    found, hot = loops(text), []
    for label, _, body in found:
        mix = collections.Counter(opcode(ins) for ins in body)
        fma = mix["FFMA"] + mix["DFMA"]
        if fma >= 4:
            hot.append((len(body), fma, mix["LDS"], label))
    for n, fma, lds, label in sorted(hot)[:top]:       # the smallest multiplying loops: the innermost
        print(f"    loop {label:<8} {n:>5} instructions a trip: {fma:>4} FMA ({fma / n:4.0%}), {lds:>3} LDS")
    if fma_per_slab:
        n, fma = per_slab(found, fma_per_slab)
        print(f"    a k-slab     {n:>5.0f} instructions:      {fma:>4} FMA ({fma / n:4.0%})")


def gemm_kernels():
    from rnnjit.kernels.cuda import gemm
    m, m3, i = t.float32[:, ::1], t.float32[:, :, ::1], t.int64
    constant_transposes = "TA" in inspect.signature(gemm.gemm_kernel).parameters
    for tile in (gemm.TILE_128, gemm.TILE_64):
        BM, BN, BK, TM, TN = tile
        for ta, tb, what in ((False, True, "X W^T"), (False, False, "dA W"), (True, False, "dA^T X")):
            name = f"gemm {BM}x{BN} {what}"
            if constant_transposes:
                yield name, gemm.gemm_kernel(*tile, True, ta, tb), (m, m, m3, i), TM * TN * BK
            else:                        # the kernel before the transposes became constants
                yield name + " (flags)", gemm.gemm_kernel(*tile, True), (m, m, m3, i, i, i), TM * TN * BK
                break


def cell_signatures():
    from rnnjit.kernels.cuda import gru, lstm, rnn
    v, m, m3, b, i = t.float32[::1], t.float32[:, ::1], t.float32[:, :, ::1], t.boolean, t.int64
    f64m, f64v = t.float64[:, ::1], t.float64[::1]
    return {
        "lstm": (lstm, (m3, v, v, m, m3, m3, m, m, b, i, i), (m3, m3, m, m3, m, m, m3, m, f64m, f64v, b, i, i)),
        "gru": (gru, (m3, m3, v, v, m, m3, m, b, i, i), (m3, m3, m3, m, m3, m, m, m3, m3, m, f64m, f64v, b, i, i)),
        "rnn": (rnn, (m3, v, v, m, m3, m, b, b, i, i), (m3, m, m3, m, m3, m, f64m, f64v, b, b, i, i)),
    }


def step_kernels():
    for cell, (module, fwd, bwd) in cell_signatures().items():
        if hasattr(module, "_forward_gemm_kernel"):      # the GPU tile: TU = TY = 16, RB = 4, BK = 16
            columns = {"lstm": 4, "gru": 3, "rnn": 2}[cell]   # a thread's gates, or (RNN) its 2 units
            yield f"{cell} step-GEMM forward", module._forward_gemm_kernel(16, 16, 4, 16), fwd, 4 * columns * 16
            yield f"{cell} step-GEMM backward", module._backward_gemm_kernel(16, 16, 4, 16), bwd, 4 * 2 * 16


def persistent_kernels():
    for cell, (module, fwd, bwd) in cell_signatures().items():
        for KN in (0, 4):
            kept = "kept W" if KN else "W read"
            yield f"{cell} split-K forward, {kept}", module._forward_kernel(8, 32, 8, KN), fwd
            yield f"{cell} split-K backward, {kept}", module._backward_kernel(8, 32, 8, KN), bwd


FAMILIES = {"gemm": gemm_kernels, "step": step_kernels, "persistent": persistent_kernels}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(FAMILIES), help="one family of kernels")
    args = ap.parse_args()
    print(f"sm_90 SASS, float32; ptxas {PTXAS}, nvdisasm {NVDISASM}")
    with tempfile.TemporaryDirectory() as work:
        for family in [args.only] if args.only else FAMILIES:
            print(f"-- {family}")
            for name, kernel, sig, *slab in FAMILIES[family]():
                report(name, kernel, sig, work, fma_per_slab=slab[0] if slab else None)


if __name__ == "__main__":
    main()
