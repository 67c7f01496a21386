"""Memory stays flat over a long run: nothing the engine or the dashboard keeps grows per step.

tracemalloc counts Python objects and NumPy's array buffers (NumPy reports them to it), so the
traced size after a few thousand steps against after a few hundred is the growth per step made
visible, without the noise of the resident set. benchmarks/long_run_memory.py measures the RSS
of real CLI and dashboard processes at steps 1,000 and 20,000.
"""

import gc
import tracemalloc

import numpy as np

from rnnjit.train import TrainConfig, Trainer
from rnnjit_tui.state import RunState

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300))


def traced_growth(events, first, last, consume=lambda e: None):
    """Traced bytes at step ``last`` minus at step ``first``, while ``consume`` sees every event."""
    seen = {}
    tracemalloc.start()
    try:
        for e in events:
            consume(e)
            if e.kind == "step" and e.step in (first, last):
                gc.collect()
                seen[e.step] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return seen[last] - seen[first]


def test_engine_and_dashboard_state_stay_flat(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    config = TrainConfig(corpus=str(corpus), hidden=8, layers=2, seq_len=8, batch=2, steps=2400, eval_every=200,
                         eval_batches=1, sample_every=100, sample_length=20, checkpoint_every=400, threads=1)
    state = RunState()
    growth = traced_growth(Trainer(config, out_dir=str(tmp_path / "run")).run(), 400, 2400,
                           consume=lambda e: state.feed(e.to_dict()))
    assert growth < 64 * 1024, f"{growth} bytes more after 2000 more steps"
    assert state.steps_seen == 2400 and len(state.train_curve) <= state.history


def test_dashboard_histories_are_bounded_over_20000_steps():
    state = RunState()
    rng = np.random.default_rng(0)
    for step in range(1, 20001):
        state.feed({"event": "step", "step": step, "loss": 2.0, "bpc": 3.0, "grad_norm": 1.0, "clipped": False,
                    "hidden_grad_norms": rng.random((2, 16)).tolist(), "lr": 0.01, "tokens_per_s": 1e4,
                    "elapsed": step * 0.01})
        if step % 50 == 0:
            state.feed({"event": "eval", "step": step, "val_loss": 2.0, "val_bpc": 3.0})
            state.feed({"event": "sample", "step": step, "text": "x" * 200, "temperature": 0.8})
    assert len(state.train_curve) <= state.history and len(state.grad_history) <= state.history
    assert len(state.val_curve) <= state.history and len(state.samples) <= 30
