"""Shared by tests/test_cuda.py and tests/test_cuda_models.py: code run in a fresh interpreter
without the simulator, and the preamble of a script that compiles kernels to PTX without a GPU."""

import os
import subprocess
import sys
import textwrap

import pytest

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
