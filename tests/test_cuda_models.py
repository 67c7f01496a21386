"""The composed models and the synthetic tasks on ``device="cuda"`` compute what they compute on the CPU.

Like tests/test_cuda.py, these run on a real GPU, or without one in Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_models.py

(the variable must be set before Python starts: tests/test_cuda_simulator.py runs this module in
its own process). Otherwise they skip, except two checks that need no GPU: asking for cuda without
CUDA is one line, and the new kernels compile to PTX (in float32 arithmetic for float32). Shapes
are tiny (the simulator runs every GPU thread as a Python thread).

What is checked, each model built twice from one seed (``device="cpu"`` and ``"cuda"``): the new
kernels of ``kernels/cuda/dense.py`` against their CPU twins; the loss, every gradient (the
model's own and its layers'), ``input_grad``, the per-step norms of dL/dh_t and the predictions
(``predict``, ``generate``, ``translate``); that params, grads and state_dict read as NumPy and
load_state_dict crosses devices; that a classifier's training step moves only its batch in and
its loss out; and the engine: every synthetic task trains on cuda with the CPU's step losses,
gradient norms, eval metrics and samples, ``rnnjit train --task adding --device cuda`` runs, and
a cuda run saves and resumes (from its own checkpoint, and from a CPU run's).
"""

import json
import os

import numpy as np
import pytest
from cuda_support import SIM, compile_ptx, cuda_or_skip, run_clean

F32 = dict(rtol=1e-4, atol=1e-5)
F64 = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def cuda():
    yield from cuda_or_skip("tests/test_cuda_models.py", "the models on CUDA")


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def assert_same_model(cpu, gpu, tol, what=""):
    """Every gradient (own and the layers'), read through parameters(), and the state_dicts."""
    want, have = list(cpu.parameters()), list(gpu.parameters())
    assert [k for k, _, _ in have] == [k for k, _, _ in want]
    for (k, _, g_cpu), (_, _, g_gpu) in zip(want, have):
        assert hasattr(g_gpu, "copy_to_host"), f"{k}: the gradient should live on the device"
        np.testing.assert_allclose(host(g_gpu), g_cpu, **tol, err_msg=f"{what} grad {k}")
    for k, v in cpu.state_dict().items():
        got = gpu.state_dict()[k]
        assert isinstance(got, np.ndarray) and got.dtype == v.dtype
        np.testing.assert_allclose(got, v, **tol, err_msg=f"{what} param {k}")


# ---- the new kernels of kernels/cuda/dense.py, against their CPU twins --------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_kernels_match_cpu(cuda, dtype):
    from rnnjit.kernels.cuda import dense as gpu
    from rnnjit.kernels.cuda import to_device
    from rnnjit.models.module import CpuKernels as cpu
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    tol = F64 if dtype == np.float64 else F32
    loss, dz = gpu.mse_grad(to_device(z), to_device(y))
    want_loss, want_dz = cpu.mse_grad(z, y)
    np.testing.assert_allclose(host(loss)[0], want_loss, **tol)
    np.testing.assert_allclose(host(dz), want_dz, **tol)
    assert host(dz).dtype == dtype and host(dz).shape == z.shape
    np.testing.assert_allclose(host(gpu.mse(to_device(z), to_device(y)))[0], cpu.mse(z, y), **tol)
    s = gpu.tanh(to_device(z))
    np.testing.assert_allclose(host(s), np.tanh(z), **tol)
    np.testing.assert_allclose(host(gpu.tanh_backward(s, to_device(y))), cpu.tanh_backward(np.tanh(z), y), **tol)
    z[1] = [0.5, 2.0, 2.0, -1.0]                       # a tie: the first maximum, as np.argmax
    np.testing.assert_array_equal(host(gpu.argmax_rows(to_device(z))), np.argmax(z, axis=1))
    zm, ym = rng.standard_normal((5, 4)).astype(dtype), np.array([3, 0, 1, 0, 2])  # 0: <pad>, skipped
    loss, dz = gpu.masked_softmax_cross_entropy(to_device(zm), to_device(ym), 0)
    want_loss, want_dz = cpu.masked_softmax_cross_entropy(zm, ym, 0)
    np.testing.assert_allclose(host(loss)[0], want_loss, **tol)
    np.testing.assert_allclose(host(dz), want_dz, **tol)
    assert not host(dz)[[1, 3]].any() and host(dz)[[0, 2, 4]].all()
    np.testing.assert_allclose(host(gpu.masked_cross_entropy(to_device(zm), to_device(ym), 0))[0], want_loss, **tol)
    np.testing.assert_allclose(want_loss, cpu.masked_cross_entropy(zm, ym, 0), rtol=1e-12)
    none = np.zeros(5, np.int64)                        # no target counts: loss 0, no gradient
    loss, dz = gpu.masked_softmax_cross_entropy(to_device(zm), to_device(none), 0)
    assert host(loss)[0] == cpu.masked_softmax_cross_entropy(zm, none, 0)[0] == 0 and not host(dz).any()
    keep = [0, 2, 4]                                    # the mean over the three kept rows only
    np.testing.assert_allclose(want_loss, float(cpu.softmax_cross_entropy(zm[keep], ym[keep])[0]), rtol=1e-12)


# ---- the models, cpu against cuda from one seed -------------------------------------------------

CLASSIFIER_CASES = [  # cell, layers, bidirectional, loss, dtype
    ("lstm", 1, False, "mse", np.float32),
    ("gru", 2, True, "mse", np.float32),
    ("rnn-relu", 1, True, "ce", np.float32),
    ("lstm", 2, True, "ce", np.float64),
]


@pytest.mark.parametrize("cell,layers,bi,loss,dtype", CLASSIFIER_CASES)
def test_classifier_matches_cpu(cuda, cell, layers, bi, loss, dtype):
    from rnnjit.models import SequenceClassifier
    rng = np.random.default_rng(1)
    T, B, I, O = 3, 2, 2, 3
    kw = dict(hidden_size=3, num_layers=layers, cell=cell, bidirectional=bi, loss=loss, dtype=dtype, seed=2)
    cpu, gpu = SequenceClassifier(I, O, **kw), SequenceClassifier(I, O, device="cuda", **kw)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    y = rng.standard_normal((B, O)) if loss == "mse" else rng.integers(0, O, B)
    tol = F64 if dtype == np.float64 else F32
    want, got = cpu.forward_backward(x, y), gpu.forward_backward(x, y)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, want, **tol)
    assert_same_model(cpu, gpu, tol)
    np.testing.assert_allclose(host(gpu.input_grad), cpu.input_grad, **tol)
    np.testing.assert_allclose(gpu.hidden_grad_norms, cpu.hidden_grad_norms, **tol)
    np.testing.assert_allclose(gpu.loss(x, y), cpu.loss(x, y), **tol)
    z = gpu.predict(x)
    assert isinstance(z, np.ndarray) and z.shape == (B, O)            # NumPy in, NumPy out
    np.testing.assert_allclose(z, cpu.predict(x), **tol)
    from rnnjit.kernels.cuda import to_device
    assert hasattr(gpu.predict(to_device(x)), "copy_to_host")          # device in, device out


@pytest.mark.parametrize("cell,layers,dtype", [("lstm", 2, np.float32), ("gru", 1, np.float64)])
def test_generator_matches_cpu(cuda, cell, layers, dtype):
    from rnnjit.models import ConditionedGenerator
    rng = np.random.default_rng(3)
    F, V, B = 4, 6, 2
    kw = dict(hidden_size=3, num_layers=layers, cell=cell, embedding_size=3, dtype=dtype, seed=4)
    cpu, gpu = ConditionedGenerator(F, V, **kw), ConditionedGenerator(F, V, device="cuda", **kw)
    v = rng.standard_normal((B, F)).astype(dtype)
    y = np.array([[3, 4], [5, 2], [2, 0]])                 # (T, B): <eos> = 2, then <pad> = 0
    tol = F64 if dtype == np.float64 else F32
    np.testing.assert_allclose(gpu.forward_backward(v, y), cpu.forward_backward(v, y), **tol)
    assert_same_model(cpu, gpu, tol)
    np.testing.assert_allclose(host(gpu.input_grad), cpu.input_grad, **tol)
    np.testing.assert_allclose(gpu.hidden_grad_norms, cpu.hidden_grad_norms, **tol)
    np.testing.assert_allclose(gpu.loss(v, y), cpu.loss(v, y), **tol)
    assert gpu.generate(v, max_len=3) == cpu.generate(v, max_len=3)


@pytest.mark.parametrize("cell,layers,dtype", [("gru", 2, np.float32), ("lstm", 1, np.float64)])
def test_seq2seq_matches_cpu(cuda, cell, layers, dtype):
    from rnnjit.models import Seq2Seq
    rng = np.random.default_rng(5)
    kw = dict(hidden_size=3, num_layers=layers, cell=cell, embedding_size=3, dtype=dtype, seed=6)
    cpu, gpu = Seq2Seq(7, 6, **kw), Seq2Seq(7, 6, device="cuda", **kw)
    x = rng.integers(3, 7, (3, 2))
    x[0, 0] = 0                                            # left padding
    y = np.array([[3, 4], [5, 2], [2, 0]])
    tol = F64 if dtype == np.float64 else F32
    np.testing.assert_allclose(gpu.forward_backward(x, y), cpu.forward_backward(x, y), **tol)
    assert_same_model(cpu, gpu, tol)
    assert gpu.hidden_grad_norms.shape == (layers, 3 + 3)
    np.testing.assert_allclose(gpu.hidden_grad_norms, cpu.hidden_grad_norms, **tol)
    np.testing.assert_allclose(gpu.loss(x, y), cpu.loss(x, y), **tol)
    assert gpu.translate(x, max_len=3) == cpu.translate(x, max_len=3)


def test_params_and_state_cross_devices(cuda):
    """params and grads read as NumPy copies; a state_dict moves cpu -> cuda -> cpu unchanged;
    wrong keys and shapes are the CPU model's one-line errors."""
    from rnnjit.models import Seq2Seq, SequenceClassifier
    cpu = SequenceClassifier(2, 1, hidden_size=3, cell="gru", seed=0)
    gpu = SequenceClassifier(2, 1, hidden_size=3, cell="gru", seed=1, device="cuda")
    assert isinstance(gpu.params["head.weight"], np.ndarray) and isinstance(gpu.grads["head.bias"], np.ndarray)
    assert all(hasattr(p, "copy_to_host") and hasattr(g, "copy_to_host") for _, p, g in gpu.parameters())
    gpu.load_state_dict(cpu.state_dict())
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(gpu.state_dict()[k], v)
    gpu.params["head.bias"] = np.full(1, 0.5, np.float32)          # a HostView takes whole arrays
    assert gpu.state_dict()["head.bias"][0] == np.float32(0.5)
    back = SequenceClassifier(2, 1, hidden_size=3, cell="gru", seed=2)
    back.load_state_dict(gpu.state_dict())
    np.testing.assert_array_equal(back.params["head.weight"], cpu.params["head.weight"])
    with pytest.raises(ValueError, match="missing"):
        gpu.load_state_dict({})
    bad = dict(cpu.state_dict(), **{"head.weight": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="head.weight has shape"):
        gpu.load_state_dict(bad)
    s2s = Seq2Seq(5, 5, hidden_size=3, cell="rnn", seed=0, device="cuda")
    assert sorted(s2s.state_dict()) == sorted(k for k, _, _ in s2s.parameters())


def test_a_classifier_step_moves_only_the_batch_and_the_loss(cuda, monkeypatch):
    """After the first step, forward + backward + Adam sends x and y and brings back the loss,
    the gradient norm (with the clip count) and the per-step norms of dL/dh_t."""
    from test_cuda import _Transfers   # the transfer counter of tests/test_cuda.py
    from rnnjit.models import SequenceClassifier
    from rnnjit.train.optim import Adam, clip_gradients
    T, B = 3, 2
    model = SequenceClassifier(2, 1, hidden_size=3, num_layers=2, cell="lstm", bidirectional=True, seed=0,
                               device="cuda")
    opt = Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)

    def step():
        loss = model.forward_backward(rng.random((T, B, 2)).astype(np.float32), rng.random(B).astype(np.float32))
        norm, _ = clip_gradients([g for _, _, g in model.parameters()], 0.01, "norm")
        opt.step()
        return loss, norm, model.hidden_grad_norms

    step()
    moved = _Transfers(cuda, monkeypatch)
    loss, norm, hgn = step()
    assert np.isfinite(loss) and norm > 0 and hgn.shape == (4, T)
    assert moved.implicit == []
    assert sorted(moved.to_device, key=str) == sorted([((T, B, 2), np.float32), ((B, 1), np.float32)], key=str)
    assert sorted(moved.to_host, key=str) == sorted([((1,), np.float64), ((2,), np.float64), ((4, T), np.float64)],
                                                    key=str)


def _step_counts():
    """benchmarks/step_counts.py as a module (it is a script, not a package's)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "step_counts", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "step_counts.py"))
    counts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counts)
    return counts


def test_a_charlm_step_copies_only_the_final_states(cuda):
    """What a 2-layer LSTM CharLM step asks of the host, counted by benchmarks/step_counts.py (in
    the simulator, whose host code is the GPU's): the only device-to-device copies are the final
    h and c of each layer into the model's state stacks and dc_n into each layer's working dc
    (lstm.py says why); the initial states and the second bias gradient reach their kernels
    without copies; threads that keep W_hh need no transposed copy of it; the backward kernels
    finish the per-step norms themselves; the zero dh_n and dc_n are made once and stay zero."""
    if not SIM:
        pytest.skip("counts the simulator's launches")
    counts = _step_counts()
    from rnnjit.models import CharLM
    from rnnjit.train.optim import Adam, clip_gradients, gradients
    model = CharLM(5, 2, 2, "lstm", seed=0, device="cuda")   # H = 2: one tile of units, weights kept
    opt, grads = Adam(model.parameters(), lr=1e-3), gradients(model.parameters())
    rng = np.random.default_rng(0)

    def step():
        loss, _ = model.forward_backward(rng.integers(0, 5, (3, 2)), rng.integers(0, 5, (3, 2)), model.initial_state(2))
        clip_gradients(grads, 1.0, "norm")
        opt.step()
        return loss
    step()
    seen = counts.count(step, cuda)
    assert seen["d2d"] == 6
    assert seen["h2d"] == 2 and seen["d2h"] == 2         # the ids and targets in; the loss and the norm out
    launched = seen["launches"]
    assert launched["lstm_forward_persistent"] == launched["lstm_backward_persistent"] == 2
    assert "transpose_kernel" not in launched and "_norms_kernel" not in launched
    assert "_fill" not in launched or launched["_fill"] <= 2   # initial_state's zeros; dh_n, dc_n are kept
    assert sum(launched.values()) <= 34
    kept = model.rnn._zero_states                             # the kept zeros, only ever read
    assert kept and all(not host(z).any() for z in kept.values())


def test_a_step_clips_and_updates_every_parameter_in_one_launch(cuda, monkeypatch):
    """The model's parameters live in one device buffer (nn/flat.py): the norm is one reduction,
    the clipping one scaling and Adam one update, however many parameter arrays there are (18
    here), and the result is the per-array path's."""
    from rnnjit.kernels.cuda import optim as dev
    from rnnjit.models import SequenceClassifier
    from rnnjit.train.optim import Adam, clip_gradients, gradients

    def build():
        return SequenceClassifier(2, 1, hidden_size=3, num_layers=2, cell="lstm", bidirectional=True,
                                  seed=0, device="cuda")
    model, plain = build(), build()
    params = model.parameters()
    assert len(params) == 18 and params.flat is not None
    opt, plain_opt = Adam(params, lr=0.01), Adam(list(plain.parameters()), lr=0.01)
    x, y = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32), np.ones(2, np.float32)
    model.forward_backward(x, y)
    plain.forward_backward(x, y)

    launches, reductions = [], []
    launch1d, sums = dev.launch1d, dev.sums
    monkeypatch.setattr(dev, "launch1d", lambda k, n, *a: (launches.append((k, n)), launch1d(k, n, *a)))
    monkeypatch.setattr(dev, "sums", lambda arrays, **kw: (reductions.append(len(arrays)), sums(arrays, **kw))[1])
    norm, clipped = clip_gradients(gradients(params), 0.01, "norm")
    opt.step()
    n = params.flat.params.size
    assert clipped and reductions == [1]
    assert launches == [(dev._scale, n), (dev._adam, n)]
    monkeypatch.undo()

    plain_norm, _ = clip_gradients([g for _, _, g in plain.parameters()], 0.01, "norm")
    plain_opt.step()
    assert norm == pytest.approx(plain_norm, rel=1e-6)
    for (k, p, _), (_, q, _) in zip(params, plain.parameters()):
        np.testing.assert_allclose(host(p), host(q), **F32, err_msg=k)


# ---- the synthetic tasks through the engine ----------------------------------------------------

def run_task(task, device, steps, out=None, resume=False, **kw):
    """Train a tiny task through the engine -> (step (loss, norm) pairs, eval metrics, samples)."""
    from rnnjit.train import TrainConfig, Trainer
    base = dict(task=task, cell="gru", hidden=3, layers=1, batch=2, length=3, steps=steps, eval_every=2,
                eval_batches=1, sample_every=2, checkpoint_every=0, seed=1, clip=0.5, threads=1, device=device)
    events = list(Trainer(TrainConfig(**{**base, **kw}), out_dir=out, resume=resume).run())
    assert events[-1].kind == "end" and events[-1].reason == "done", events[-1]
    steps_ = [(e.loss, e.grad_norm) for e in events if e.kind == "step"]
    evals = [(e.val_loss, e.metrics) for e in events if e.kind == "eval"]
    return steps_, evals, [e.text for e in events if e.kind == "sample"]


def assert_same_run(got, want, tol=F32):
    (gs, ge, gx), (ws, we, wx) = got, want
    np.testing.assert_allclose(gs, ws, **tol, err_msg="step losses and gradient norms")
    assert len(ge) == len(we)
    for (gl, gm), (wl, wm) in zip(ge, we):
        np.testing.assert_allclose(gl, wl, **tol)
        assert set(gm) == set(wm)
        for k in wm:
            np.testing.assert_allclose(gm[k], wm[k], **tol, err_msg=k)
    assert gx == wx


@pytest.mark.parametrize("task,cell", [("adding", "lstm"), ("copy", "gru"), ("captions", "gru"), ("dates", "lstm")])
def test_every_task_trains_on_cuda_as_on_cpu(cuda, task, cell):
    assert_same_run(run_task(task, "cuda", 2, cell=cell), run_task(task, "cpu", 2, cell=cell))


@pytest.mark.parametrize("task", ["captions", "dates"])
def test_decoder_tasks_train_with_cuda_graphs_as_without(cuda, task):
    """``--cuda-graphs`` on the tasks whose loss skips <pad> targets: the same run, to the last bit."""
    kw = dict(eval_every=3, sample_every=0, batch=3)
    assert run_task(task, "cuda", 6, cuda_graphs=True, **kw) == run_task(task, "cuda", 6, **kw)


def test_cuda_runs_save_and_resume(cuda, tmp_path):
    """A cuda run stopped at step 2 and resumed to 3 is the CPU's 3-step run; so is a CPU run's
    checkpoint resumed on cuda (checkpoints hold NumPy arrays, whatever the device)."""
    want = run_task("adding", "cpu", 3, eval_every=1, sample_every=0)
    gpu_dir = str(tmp_path / "gpu")
    first = run_task("adding", "cuda", 2, out=gpu_dir, eval_every=1, sample_every=0)
    assert os.path.exists(os.path.join(gpu_dir, "checkpoint.npz"))
    rest = run_task("adding", "cuda", 3, out=gpu_dir, resume=True, eval_every=1, sample_every=0)
    assert_same_run(tuple(a + b for a, b in zip(first, rest)), want)

    cpu_dir = str(tmp_path / "cpu")
    first = run_task("dates", "cpu", 2, out=cpu_dir, eval_every=1, sample_every=0)
    rest = run_task("dates", "cuda", 3, out=cpu_dir, resume=True, eval_every=1, sample_every=0)
    assert_same_run(tuple(a + b for a, b in zip(first, rest)), run_task("dates", "cpu", 3, eval_every=1,
                                                                          sample_every=0))


def test_cli_trains_adding_on_cuda(cuda, tmp_path, capsys):
    from rnnjit.cli import main
    args = ["train", "--task", "adding", "--length", "3", "--hidden", "3", "--layers", "1", "--batch", "2",
            "--steps", "2", "--eval-every", "2", "--eval-batches", "1", "--sample-every", "0", "--threads", "1",
            "--json"]
    metrics = {}
    for device in ("cpu", "cuda"):
        assert main(args + ["--device", device, "--out", str(tmp_path / device)]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        metrics[device] = [(e["loss"], e["grad_norm"]) for e in events if e["event"] == "step"], \
            [e["metrics"]["mse"] for e in events if e["event"] == "eval"]
    np.testing.assert_allclose(metrics["cuda"][0], metrics["cpu"][0], **F32)
    np.testing.assert_allclose(metrics["cuda"][1], metrics["cpu"][1], **F32)


# ---- no GPU needed -----------------------------------------------------------------------------



def test_model_kernels_compile_for_a_gpu():
    """The simulator accepts code the CUDA compiler rejects: compile the kernels the models added
    to kernels/cuda/dense.py to PTX for sm_90 (numba-cuda's NVVM, no GPU), and check that the
    float32 ones do float32 arithmetic only (a literal 1 or 2.0 would promote them to float64)."""
    words = compile_ptx("""
        from rnnjit.kernels.cuda import dense as dn
        n, f64_in_f32 = 0, []
        for F in (t.float32, t.float64):
            v, m, i64, b = F[::1], F[:, ::1], t.int64[::1], t.boolean
            for kernel, sig in [(dn._squared_error, (v, v, v, v, F, b)), (dn._tanh, (v, v)),
                                (dn._tanh_backward, (v, v, v, F)), (dn._argmax_rows, (m, i64))]:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                n += 1
                if F == t.float32 and ".f64" in ptx:
                    f64_in_f32.append(kernel.py_func.__name__)
            d = t.float64[::1]           # the cross-entropies sum in float64 on purpose, as on the CPU
            for kernel, sig in [(dn._softmax_xent_rows, (m, i64, d, m, b)), (dn._not_pad, (i64, t.int64, d)),
                                (dn._masked_softmax_xent_rows, (m, i64, t.int64, d, d, m, b)), (dn._divide, (d, d))]:
                cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                n += 1
        print("COMPILED", n, "F64", ",".join(f64_in_f32) or "none")
        """)
    assert words == ["COMPILED", "16", "F64", "none"]


def test_models_on_cuda_without_cuda_are_one_line():
    """Without CUDA (and without the simulator), a model on cuda and ``rnnjit train --task X
    --device cuda`` are require_cuda's one line, which says how to use the simulator."""
    out = run_clean("""
        import rnnjit.kernels.cuda as kc
        if kc.is_available():
            print("AVAILABLE")
        else:
            from rnnjit.models import ConditionedGenerator, Seq2Seq, SequenceClassifier
            for make in (lambda: SequenceClassifier(2, 1, device="cuda"), lambda: Seq2Seq(5, 5, device="cuda"),
                         lambda: ConditionedGenerator(3, 5, device="cuda")):
                try:
                    make()
                except RuntimeError as e:
                    print("ERR", e)
            from rnnjit.cli import main
            print("RC", main(["train", "--task", "dates", "--device", "cuda", "--steps", "1", "--out", "/nonexistent/x"]))
        """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    if lines == ["AVAILABLE"]:
        return
    assert len(lines) == 4 and all(ln.startswith("ERR") and "NUMBA_ENABLE_CUDASIM" in ln for ln in lines[:3])
    assert lines[3] == "RC 2"
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "NUMBA_ENABLE_CUDASIM" in err[0]


# ---- CUDA graphs (kernels/cuda/graphs.py, models/graphed.py) ------------------------------------

@pytest.mark.parametrize("cell,dropout,inputs", [("lstm", 0.0, "embedding"), ("gru", 0.0, "embedding"),
                                                 ("rnn", 0.0, "embedding"), ("lstm", 0.5, "embedding"),
                                                 ("gru", 0.0, "onehot")])
def test_graphed_charlm_steps_are_the_eager_steps(cuda, cell, dropout, inputs):
    """A CharLM with ``cuda_graphs=True`` against the same model without: six Adam steps with
    clipping, the state carried from step to step and reset once (new zero arrays). The first
    step runs eagerly, the second captures, the rest replay; every loss, per-step norm of
    dL/dh_t, gradient and parameter is the same to the last bit (the same kernels in the same
    order; with dropout, the same masks: each replay draws its seeds as an eager step does),
    and the state handed back is a copy, never the graph's own buffer."""
    from rnnjit.models import CharLM
    from rnnjit.train.optim import Adam, clip_gradients, gradients
    T, B, V = 3, 2, 5
    runs = []
    for graphed in (False, True):
        model = CharLM(V, 3, 2, cell, dropout=dropout, input=inputs, seed=1, device="cuda", cuda_graphs=graphed)
        opt, grads = Adam(model.parameters(), lr=1e-2), gradients(model.parameters())
        rng, state, seen = np.random.default_rng(0), model.initial_state(B), []
        for step in range(6):
            if step == 4:
                state = model.initial_state(B)
            loss, state = model.forward_backward(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)), state)
            norm, _ = clip_gradients(grads, 0.5, "norm")
            seen.append((loss, norm, model.hidden_grad_norms.copy(), [host(g) for _, _, g in model.parameters()]))
            opt.step()
        runs.append((model, seen, [host(s) for s in (state if isinstance(state, tuple) else (state,))]))
    (eager, want, want_state), (graphed, have, have_state) = runs
    step_graphs = graphed._graphed.graphs
    assert graphed._graphed.failed is None and len(step_graphs) == 1
    (graph, buffers, state_in, *_), = step_graphs.values()
    assert len(graph) > 10                                    # the step's launches and copies
    assert len(graph.draws) == (1 if dropout else 0)          # one mask between the two layers
    for (l0, n0, h0, g0), (l1, n1, h1, g1) in zip(want, have):
        assert l0 == l1 and n0 == n1
        np.testing.assert_array_equal(h0, h1)
        for a, b in zip(g0, g1):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(want_state, have_state):
        np.testing.assert_array_equal(a, b)
    for k, v in eager.state_dict().items():
        np.testing.assert_array_equal(graphed.state_dict()[k], v)


@pytest.mark.parametrize("cell,bi,loss", [("lstm", False, "mse"), ("gru", True, "ce")])
def test_graphed_classifier_steps_are_the_eager_steps(cuda, cell, bi, loss):
    """The adding task's model (``SequenceClassifier``) with ``cuda_graphs=True`` against the same
    model without, over five Adam steps: losses, per-step norms, dL/dx, gradients, parameters
    equal to the last bit; ``input_grad`` stays the graph's and is a device array."""
    from rnnjit.models import SequenceClassifier
    from rnnjit.train.optim import Adam, clip_gradients, gradients
    T, B, I, O = 4, 3, 2, (1 if loss == "mse" else 3)
    runs = []
    for graphed in (False, True):
        model = SequenceClassifier(I, O, 3, 2, cell, bidirectional=bi, loss=loss, seed=2, device="cuda",
                                   cuda_graphs=graphed)
        opt, grads = Adam(model.parameters(), lr=1e-2), gradients(model.parameters())
        rng, seen = np.random.default_rng(0), []
        for _ in range(5):
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            y = rng.standard_normal((B, O)) if loss == "mse" else rng.integers(0, O, B)
            value = model.forward_backward(x, y)
            norm, _ = clip_gradients(grads, 0.5, "norm")
            seen.append((value, norm, model.hidden_grad_norms.copy(), host(model.input_grad),
                         [host(g) for _, _, g in model.parameters()]))
            opt.step()
        runs.append((model, seen))
    (eager, want), (graphed, have) = runs
    assert graphed._graphed.failed is None and len(graphed._graphed.graphs) == 1
    for (l0, n0, h0, d0, g0), (l1, n1, h1, d1, g1) in zip(want, have):
        assert l0 == l1 and n0 == n1
        for a, b in zip([h0, d0] + g0, [h1, d1] + g1):
            np.testing.assert_array_equal(a, b)
    for k, v in eager.state_dict().items():
        np.testing.assert_array_equal(graphed.state_dict()[k], v)


@pytest.mark.parametrize("model", ["generator", "seq2seq"])
def test_graphed_decoder_steps_are_the_eager_steps(cuda, model):
    """The captions task's model (``ConditionedGenerator``) and the dates task's (``Seq2Seq``)
    with ``cuda_graphs=True`` against the same model without, over six Adam steps on batches of
    two shapes in turn, each with its own <pad> rows: the loss over the non-<pad> targets is
    counted on the device, so a batch's shape is all a graph depends on. One graph per shape;
    losses, norms, per-step norms, gradients (and the generator's dL/dv) equal to the last bit."""
    from rnnjit.models import ConditionedGenerator, Seq2Seq
    from rnnjit.train.optim import Adam, clip_gradients, gradients
    B, V, pad, eos = 2, 6, 0, 2
    rng = np.random.default_rng(7)
    batches = []
    for step in range(6):
        T = 3 if step % 2 else 4
        y = rng.integers(3, V, (T, B))
        for b, n in enumerate(rng.integers(1, T + 1, B)):   # n real targets, then <eos>, then <pad>
            y[n - 1, b], y[n:, b] = eos, pad
        first = rng.standard_normal((B, 4)).astype(np.float32) if model == "generator" else rng.integers(1, 7, (T + 1, B))
        batches.append((first, y))
    runs = []
    for graphed in (False, True):
        kw = dict(hidden_size=3, num_layers=2, cell="gru" if model == "generator" else "lstm", seed=8,
                  device="cuda", cuda_graphs=graphed)
        m = ConditionedGenerator(4, V, **kw) if model == "generator" else Seq2Seq(7, V, **kw)
        opt, grads = Adam(m.parameters(), lr=1e-2), gradients(m.parameters())
        seen = []
        for first, y in batches:
            value = m.forward_backward(first, y)
            norm, _ = clip_gradients(grads, 0.5, "norm")
            extra = [host(m.input_grad)] if model == "generator" else []
            seen.append((value, norm, [m.hidden_grad_norms.copy()] + extra + [host(g) for _, _, g in m.parameters()]))
            opt.step()
        runs.append((m, seen))
    (eager, want), (graphed, have) = runs
    assert graphed._graphed.failed is None and len(graphed._graphed.graphs) == 2
    for (l0, n0, a0), (l1, n1, a1) in zip(want, have):
        assert l0 == l1 and n0 == n1
        for a, b in zip(a0, a1):
            np.testing.assert_array_equal(a, b)
    for k, v in eager.state_dict().items():
        np.testing.assert_array_equal(graphed.state_dict()[k], v)


def test_a_graphed_charlm_step_is_one_launch_from_the_host(cuda):
    """What a graphed CharLM step asks of the host (benchmarks/step_counts.py --cuda-graphs):
    one graph launch for the forward and backward; outside it only the step's own work (the
    zero state it asks for, the norm's two passes, Adam), the two id arrays in, the carried
    state copied in and out, the loss and the norm back."""
    if not SIM:
        pytest.skip("counts the simulator's launches")
    counts = _step_counts()
    from rnnjit.models import CharLM
    from rnnjit.train.optim import Adam, clip_gradients, gradients
    model = CharLM(5, 2, 2, "lstm", seed=0, device="cuda", cuda_graphs=True)
    opt, grads = Adam(model.parameters(), lr=1e-3), gradients(model.parameters())
    rng = np.random.default_rng(0)

    def step():
        loss, _ = model.forward_backward(rng.integers(0, 5, (3, 2)), rng.integers(0, 5, (3, 2)), model.initial_state(2))
        clip_gradients(grads, 1.0, "norm")
        opt.step()
        return loss
    step(), step()
    seen = counts.count(step, cuda)
    assert seen["replays"] == 1
    assert sum(seen["launches"].values()) == 5 and seen["launches"]["_adam"] == 1
    assert seen["h2d"] == 2 and seen["d2h"] == 2 and seen["d2d"] == 4 and seen["views"] <= 2


def test_a_capture_refuses_what_a_graph_cannot_hold(cuda):
    """While capturing, a host-to-device copy, a kernel launched past ``graphs.queue``, a copy
    into a device array past ``graphs.copy`` and reading an element back each raise
    CaptureError, and afterwards everything works as before; a capture records without running."""
    if not SIM:
        pytest.skip("the simulator's own checks (on a GPU the driver refuses these)")
    from rnnjit.kernels.cuda import elementwise, graphs
    a = cuda.to_device(np.zeros(4, np.float32))
    b = cuda.to_device(np.ones(4, np.float32))
    refused = [lambda: cuda.to_device(np.zeros(3)),
               lambda: elementwise._fill[1, 4](a, np.float32(1)),
               lambda: a.copy_to_device(b),
               lambda: a.copy_to_host(),
               lambda: float(a[0])]
    for fn in refused:
        with pytest.raises(graphs.CaptureError):
            graphs.capture(fn)
        assert not graphs.capturing()
    graph, _ = graphs.capture(lambda: (elementwise.fill(a, 2.0), graphs.copy(b, a)))
    assert len(graph) == 2 and not host(a).any() and (host(b) == 1).all()   # recorded, not run
    graph.replay()
    assert (host(a) == 2).all() and (host(b) == 2).all()
    elementwise._fill[1, 4](a, np.float32(3))                                 # the rules are lifted
    assert float(a[0]) == 3.0


def test_a_graph_is_kept_per_mode_and_a_failed_capture_runs_eagerly(cuda):
    """A graph captured in training mode (with dropout masks) is not replayed in eval mode,
    which gets a graph of its own and the eval-mode numbers. A step whose capture fails warns
    once and runs eagerly from then on, with the same results."""
    from rnnjit.models import CharLM
    from rnnjit.models.graphed import GraphedStep
    models = [CharLM(5, 3, 2, "gru", dropout=0.5, seed=0, device="cuda", cuda_graphs=g) for g in (False, True)]
    x = np.arange(6).reshape(3, 2) % 5
    losses = []
    for model in models:
        seen = [model.forward_backward(x, x, model.initial_state(2))[0] for _ in range(3)]
        model.eval()
        seen += [model.forward_backward(x, x, model.initial_state(2))[0] for _ in range(3)]
        losses.append(seen)
    assert losses[0] == losses[1] and len(set(losses[1][3:])) == 1 and losses[1][2] != losses[1][3]
    assert len(models[1]._graphed.graphs) == 2

    calls = []

    def fn(inputs, state):       # reads its input back: a graph cannot
        calls.append(host(inputs[0]).sum())
        return inputs[0], state

    step = GraphedStep(fn, [], model.xp)
    ones = np.ones((1,), np.float64)
    assert step([ones], None)[0] == 1.0
    with pytest.warns(RuntimeWarning, match="without CUDA graphs"):
        assert step([2 * ones], None)[0] == 2.0
    assert step([3 * ones], None)[0] == 3.0 and step.failed and step.graphs == {}


def test_cli_trains_the_charlm_with_cuda_graphs(cuda, tmp_path, capsys):
    """``rnnjit train --device cuda --cuda-graphs`` on a small corpus: the same step losses,
    gradient norms, per-step norms of dL/dh_t and validation loss as without graphs; and the
    option is refused without --device cuda."""
    from rnnjit.cli import main
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 4)
    args = ["train", "--corpus", str(corpus), "--hidden", "3", "--layers", "2", "--batch", "2", "--seq-len", "3",
            "--steps", "4", "--eval-every", "4", "--eval-batches", "1", "--sample-every", "0", "--threads", "1",
            "--device", "cuda", "--json"]
    runs = {}
    for graphed in ([], ["--cuda-graphs"]):     # the default on cuda: graphs; [] runs --no-cuda-graphs
        assert main(args + (graphed or ["--no-cuda-graphs"]) + ["--out", str(tmp_path / ("g" if graphed else "e"))]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        runs[bool(graphed)] = ([(e["loss"], e["grad_norm"], e["hidden_grad_norms"]) for e in events
                                if e["event"] == "step"], [e["val_loss"] for e in events if e["event"] == "eval"])
    assert len(runs[True][0]) == 4 and runs[True] == runs[False]
    assert main(["train", "--corpus", str(corpus), "--cuda-graphs", "--steps", "1"]) == 2
    assert "--cuda-graphs needs --device cuda" in capsys.readouterr().err
