"""The vanishing-gradient probe, its display, and the `vanish` and `tasks-bench` commands."""

import json

import numpy as np
import pytest

from rnnjit.cli import main
from rnnjit.models import SequenceClassifier
from rnnjit.nn import LSTM, RNN
from rnnjit.task_bench import set_forget_bias, verdict
from rnnjit.vanish import BARS, last_step_gradient_norms, probe, reach, sparkline


def test_probe_is_the_explicit_jacobian_product():
    """For a tanh RNN, dL/dh_t = W_hh^T diag(1 - h_{t+1}^2) dL/dh_{t+1}: the probe must be its norm."""
    T, B, H = 12, 3, 5
    layer = RNN(2, H, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, 2))
    g = np.random.default_rng(1).standard_normal((B, H))
    norms = last_step_gradient_norms(layer, x, g)
    out, _ = layer(x)
    W = layer.params["weight_hh_l0"]
    d, expected = g.copy(), [np.linalg.norm(g)]
    for t in range(T - 1, 0, -1):
        d = (d * (1 - out[t] ** 2)) @ W              # through tanh, then the recurrent weights
        expected.append(np.linalg.norm(d))
    np.testing.assert_allclose(norms, expected[::-1], rtol=1e-10)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_probe_of_a_model_reads_its_loss_at_the_last_step(cell):
    m = SequenceClassifier(2, 1, hidden_size=6, cell=cell, dtype=np.float32, seed=3)
    x = np.random.default_rng(2).random((20, 8, 2))
    y = np.ones(8)
    ratios = probe(m, x, y)
    assert ratios.shape == (20,) and ratios[-1] == 1.0
    # The same thing, by hand: the head's gradient at h_T, pushed back through a float64 copy.
    twin = SequenceClassifier(2, 1, hidden_size=6, cell=cell, dtype=np.float64)
    twin.load_state_dict(m.state_dict())
    z = twin.predict(x)
    g = (2 / 8) * (z - y[:, None]) @ twin.params["head.weight"]
    norms = last_step_gradient_norms(twin.rnn, x, g)
    np.testing.assert_allclose(ratios, norms / norms[-1], rtol=1e-9)
    assert ratios[0] < 1e-2                      # at initialisation, 20 steps already lose most of it


def test_sparkline_and_reach():
    r = 10.0 ** -np.arange(20)[::-1]             # 1e-19 ... 1: one decade per step
    line = sparkline(r, width=60, decades=16)
    assert len(line) == 20 and line[-1] == BARS[8] and line[0] == " " and line[3] == " "
    assert line[4] == BARS[1]                    # 1e-15: the lowest block
    assert line[-3] == BARS[7]                   # 1e-2
    assert len(sparkline(np.ones(500), width=40)) == 40
    assert reach(np.array([1e-5, 5e-4, 0.02, 0.5, 1.0])) == 3     # 1, 0.5, 0.02 stay above 1e-3
    assert reach(np.ones(7)) == 7
    assert sparkline(np.array([0.0, 1.0])) == " " + BARS[8]


def test_vanish_command(capsys):
    assert main(["vanish", "--length", "12", "--steps", "3", "--hidden", "4", "--batch", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "at initialisation" in out and "after training" in out
    assert sum(line.lstrip().startswith(("rnn ", "lstm ", "gru ")) for line in out.splitlines()) == 6
    assert main(["vanish", "--length", "8", "--steps", "2", "--hidden", "4", "--cells", "gru", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["cells"]["gru"]["init"]) == 8 and d["cells"]["gru"]["trained"][-1] == 1.0
    assert main(["vanish", "--cells", "tanh"]) == 2
    assert "unknown cell" in capsys.readouterr().err


def test_tasks_bench_command(capsys):
    assert main(["tasks-bench", "--lengths", "4,6", "--steps", "3", "--hidden", "4", "--batch", "4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["runs"]) == 6 and d["budget"]["steps"] == 3
    assert {r["verdict"] for r in d["runs"]} <= {"solved", "partly", "baseline"}
    assert main(["tasks-bench", "--lengths", "4", "--cells", "gru", "--steps", "2", "--hidden", "4"]) == 0
    out = capsys.readouterr().out
    assert "T=4" in out and "gru" in out and "baseline 0.1667" in out
    assert main(["tasks-bench", "--lengths", "x"]) == 2
    assert verdict(0.001, 1 / 6) == "solved" and verdict(0.05, 1 / 6) == "partly" and verdict(0.17, 1 / 6) == "baseline"


def test_forget_bias():
    layer = LSTM(2, 3, num_layers=2, seed=0)
    before = layer.state_dict()
    set_forget_bias(layer, 1.0)
    for k in (0, 1):
        assert np.all(layer.params[f"bias_ih_l{k}"][3:6] == 1) and np.all(layer.params[f"bias_hh_l{k}"][3:6] == 0)
        for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):               # the other gates are untouched
            np.testing.assert_array_equal(np.delete(layer.params[name], range(3, 6)),
                                          np.delete(before[name], range(3, 6)))
