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


def test_the_gpu_check_script_runs_in_the_simulator(tmp_path):
    """benchmarks/cuda_check.py is what a session with a GPU runs, once, with minutes to spare: its
    tiny configuration runs here end to end (parity with the CPU, timings, the CharLM step, the
    JSON), so that the first run on a GPU does not find a broken script."""
    pytest.importorskip("numba_cuda")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "check.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "cuda_check.py"), "--tiny", "--cells",
                          "lstm", "--staged", "--json", str(out)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    import json
    result = json.loads(out.read_text())
    assert result["failures"] == [] and result["skipped"] == []
    assert [(r["cell"], r["B"], r["H"]) for r in result["rows"]] == [("lstm", 1, 4), ("lstm", 1, 6), ("lstm", 3, 4),
                                                                    ("lstm", 3, 6)]
    assert all(r["ours_train"] > 0 for r in result["rows"] + result["lm_rows"])
    # staged operands (launch.stage_slabs, forced on and off) add in the same order: the same bits
    assert [(r["B"], r["H"], r["diff"]) for r in result["staged"]] == [(1, 12, 0.0), (3, 20, 0.0)]
    assert "parity vs CPU  lstm B=3 H=6" in run.stdout and "parity vs CPU   ok" in run.stdout


def test_the_gpu_session_script_fits_one_device_call():
    """benchmarks/gpu_session.sh is one call of the device tool, which stops a command at 600 s:
    the script must parse, and its steps' time limits must add up to less than that."""
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "benchmarks", "gpu_session.sh")
    assert subprocess.run(["bash", "-n", path], capture_output=True).returncode == 0
    text = open(path).read()
    budget = int(re.search(r'CHECK_BUDGET="\$\{CHECK_BUDGET:-(\d+)\}"', text).group(1))
    tests = int(re.search(r'TESTS_LIMIT="\$\{TESTS_LIMIT:-(\d+)\}"', text).group(1))
    limits = []
    for fixed, extra, var in re.findall(r'^step \w+ (?:(\d+)|\$\(\(CHECK_BUDGET \+ (\d+)\)\)|"\$(TESTS_LIMIT)")',
                                        text, re.M):
        limits.append(int(fixed) if fixed else budget + int(extra) if extra else tests)
    assert len(limits) == 6 and sum(limits) <= 590, limits
