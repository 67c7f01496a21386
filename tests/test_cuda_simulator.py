"""Run the CUDA kernel tests in Numba's simulator, in their own process.

The simulator must be switched on before Numba is imported, so tests/test_cuda.py runs in a
child interpreter with NUMBA_ENABLE_CUDASIM=1. Skipped when numba-cuda is not installed
(``pip install "rnnjit[cuda]"``) or when this process already has the simulator or a GPU (then
tests/test_cuda.py runs directly).
"""

import os
import subprocess
import sys

import pytest


def test_cuda_kernels_in_the_simulator():
    pytest.importorskip("numba_cuda")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("the simulator is on in this process: tests/test_cuda.py runs directly")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
                          os.path.join(here, "test_cuda.py")], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(here))
    tail = "\n".join(out.stdout.strip().splitlines()[-15:])
    assert out.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail
