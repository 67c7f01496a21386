"""Shared by tests/test_cuda.py and tests/test_cuda_models.py: code run in a fresh interpreter
without the simulator, and the preamble of a script that compiles kernels to PTX without a GPU."""

import os
import subprocess
import sys
import textwrap

import pytest

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_or_skip(module, what):
    """The body of both modules' ``cuda`` fixture: numba.cuda when the CUDA kernels can run here (a
    GPU, or the simulator), else a skip that says how to run ``module`` in the simulator. The
    simulator runs every GPU thread as a Python thread and syncs them by polling; a short GIL
    switch interval makes it about 3x faster (restored afterwards)."""
    pytest.importorskip("numba_cuda")  # the maintained CUDA target (rnnjit's "cuda" extra)
    nb_cuda = pytest.importorskip("numba.cuda")
    if not SIM and not nb_cuda.is_available():
        pytest.skip(f"no CUDA GPU; run `NUMBA_ENABLE_CUDASIM=1 python -m pytest {module}` to test {what} "
                    "in Numba's simulator")
    old = sys.getswitchinterval()
    if SIM:
        sys.setswitchinterval(2e-4)
    yield nb_cuda
    sys.setswitchinterval(old)

# Compiling to PTX needs numba-cuda's NVVM, not a GPU; the script prints "SKIP <why>" without one.
# Device functions ask the current device for its compute capability: there is none here.
PTX_PREAMBLE = """
import types
try:
    from numba import cuda, types as t
    import numba.cuda.dispatcher as disp
    cuda.compile_ptx(lambda a: None, (t.float32[::1],), cc=(9, 0))
except Exception as e:
    print("SKIP", type(e).__name__)
    raise SystemExit
disp.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
"""


def run_clean(code):
    """Run code in a fresh interpreter without the simulator switched on."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True,
                          text=True, env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_ptx(body) -> list[str]:
    """Run ``PTX_PREAMBLE`` then ``body`` in a clean interpreter; its printed words (skips the test
    where there is no NVVM)."""
    out = run_clean(PTX_PREAMBLE + textwrap.dedent(body))
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.startswith("SKIP"):
        pytest.skip(f"no NVVM to compile with ({out.stdout.split()[1]})")
    return out.stdout.split()
