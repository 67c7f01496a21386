"""``rnnjit bench`` on a tiny grid: the table's structure, the JSON fields, and the NumPy
reference computing what rnnjit computes."""

import json

import numpy as np
import pytest

from rnnjit import bench
from rnnjit.bench_ref import NumpyCharModel
from rnnjit.models.char_lm import CharLM
from rnnjit.train.optim import SGD

TINY = {"cells": ["lstm", "gru"], "batch": [1], "seq_len": [4], "hidden": [6], "layers": [1], "dtype": ["float64"]}


@pytest.fixture(scope="module")
def report():
    return bench.run_bench(TINY, impls=("rnnjit", "numpy", "torch"), repeats=2, sample_chars=4, compile=False)


def test_report_fields(report):
    assert report["threads"] == 1
    assert set(report["gemm_ceiling_gflops"]) == {"float64"} and report["gemm_ceiling_gflops"]["float64"] > 0
    assert len(report["rows"]) == 2
    for row in report["rows"]:
        assert {"cell", "batch", "seq_len", "hidden", "layers", "dtype", "results", "memory"} <= set(row)
        assert {"rnnjit", "numpy"} <= set(row["results"])
        for name, res in row["results"].items():
            assert set(res) == {"train", "forward", "sample"}
            for mode, r in res.items():
                assert r["ms"] > 0 and r["chars_per_s"] > 0 and r["gflops"] > 0 and r["pct_gemm"] > 0
                peers = [p for p in row["results"] if p != name]
                assert all(f"x_vs_{p}" in r for p in peers)
        assert row["memory"]["rnnjit_peak_bytes"] > 0 and row["memory"]["torch_rnn_lstm_formula_bytes"] > 0
    json.dumps(report)  # --json writes exactly this


def test_table(report):
    table = bench.format_table(report)
    lines = table.splitlines()
    assert any(line.startswith("cell") and "x torch" in line and "%GEMM" in line for line in lines)
    assert sum(" train " in line and " rnnjit " in line for line in lines) == 2
    assert "GEMM ceiling" in table and "memory" in table


def test_cli_json(tmp_path, capsys):
    from rnnjit.cli import main
    out = tmp_path / "b.json"
    rc = main(["bench", "--cells", "rnn", "--batch", "2", "--seq-len", "3", "--hidden", "4", "--layers", "1",
               "--dtype", "float32", "--impls", "rnnjit,numpy", "--modes", "train,forward", "--repeats", "1",
               "--no-compile", "--no-memory", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["rows"][0]["results"]["rnnjit"]["train"]["x_vs_numpy"] > 0
    assert "rnn" in capsys.readouterr().out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_numpy_reference_matches_rnnjit_step(cell):
    """Same weights, same batch: the plain-NumPy model gives rnnjit's loss, gradients and update."""
    V, H, L, T, B = bench.V, 7, 2, 5, 3
    model = CharLM(V, H, L, cell, input="onehot", dtype=np.float64, seed=3)
    ref = NumpyCharModel(model.state_dict(), cell, L, H, V, np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    loss, _ = model.forward_backward(x, y, model.initial_state(B))
    ref_loss, _ = ref.loss_and_grads(x, y, ref.initial_state(B))
    assert abs(loss - ref_loss) < 1e-10
    for name, _, g in model.parameters():
        np.testing.assert_allclose(ref.g[name], g, rtol=1e-7, atol=1e-10, err_msg=name)
    SGD(model.parameters(), lr=0.1).step()
    ref.sgd(0.1)
    for name, p, _ in model.parameters():
        np.testing.assert_allclose(ref.p[name], p, rtol=1e-7, atol=1e-10, err_msg=name)


def test_flops_and_memory_formula():
    assert bench.flops("lstm", 1, 1, 1, 1, "forward") == 2 * 4 * (bench.V + 1) + 2 * bench.V
    assert bench.flops("rnn", 2, 3, 4, 1, "train") == 3 * bench.flops("rnn", 2, 3, 4, 1, "forward")
    # torch-rnn: N*T*D + 6*N*T*H + 8*N*H + 8*H^2 + 8*D*H + 9*H floats
    assert bench.torch_rnn_lstm_bytes(1, 1, 1, 1, 4) == 4 * (1 + 6 + 8 + 8 + 8 + 9)


def test_bench_device_cuda_without_cuda_is_one_line(capsys):
    import rnnjit.kernels.cuda as kc
    if kc.is_available():
        import pytest
        pytest.skip("CUDA (or the simulator) is available here")
    from rnnjit.cli import main
    assert main(["bench", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NUMBA_ENABLE_CUDASIM" in err[0]


def test_bench_refuses_what_it_cannot_do_before_timing(tmp_path, monkeypatch, capsys):
    """An unwritable --json path, or only torch without torch: one line, exit 2, before any timing."""
    import rnnjit.bench as bench
    from rnnjit.cli import main
    timed = []
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: timed.append(1))
    assert main(["bench", "--quick", "--json", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "cannot write" in err[0]
    monkeypatch.setattr(bench, "_torch", lambda: None)
    assert main(["bench", "--quick", "--impls", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch is not installed" in err[0]
    assert timed == []
