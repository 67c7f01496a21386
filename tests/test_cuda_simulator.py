"""Run the CUDA tests in Numba's simulator, in their own process.

The simulator must be switched on before Numba is imported, so tests/test_cuda.py (the kernels,
the layers, CharLM) and tests/test_cuda_models.py (the other models and the synthetic tasks) each
run in a child interpreter with NUMBA_ENABLE_CUDASIM=1. Skipped when numba-cuda is not installed
(``pip install "rnnjit[cuda]"``) or when this process already has the simulator or a GPU (then
those modules run directly).
"""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["test_cuda.py", "test_cuda_models.py"])
def test_cuda_kernels_in_the_simulator(module):
    pytest.importorskip("numba_cuda")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip(f"the simulator is on in this process: tests/{module} runs directly")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
                          os.path.join(here, module)], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(here))
    tail = "\n".join(out.stdout.strip().splitlines()[-15:])
    assert out.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail
