"""The CUDA kernels (rnnjit.kernels.cuda) compute what the CPU kernels compute.

The kernel tests run on a real GPU, or without one in Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py

(the variable must be set before Python starts, so run this module in its own process).
Otherwise they skip. Three tests need neither: the package imports nothing from numba.cuda until
asked, asking without CUDA gives a one-line error that says what to do, and the training-step
kernels compile for a real GPU (to PTX, with numba-cuda's NVVM).

Besides the kernels: training on the device (a CharLM with an optimizer and clipping follows
the CPU run step for step), the transfers of a training step (only ids in, only metrics out),
device arrays through the layers, dropout masks, sampling and the engine on a cuda model.
"""

import numpy as np
import pytest
from cuda_support import SIM, compile_ptx, cuda_or_skip, run_clean

from rnnjit.kernels import CELLS


@pytest.fixture(scope="module")
def cuda():
    yield from cuda_or_skip("tests/test_cuda.py", "the CUDA kernels")


# ---- no GPU needed -----------------------------------------------------------------------------



def test_import_is_lazy_and_errors_say_what_to_do():
    out = run_clean("""
        import sys
        import rnnjit, rnnjit.kernels, rnnjit.kernels.cuda as kc
        loaded = [m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda"))]
        print("LOADED", loaded)

        # numba-cuda missing
        sys.modules["numba_cuda"] = None
        try:
            kc.require_cuda()
        except RuntimeError as e:
            print("MISSING", e)
        del sys.modules["numba_cuda"]

        # numba-cuda present, no GPU
        try:
            import numba_cuda  # noqa: F401
            from numba import cuda
        except ImportError:
            print("NOGPU skipped")
        else:
            cuda.is_available = lambda: False
            try:
                kc.CUDA_CELLS
            except RuntimeError as e:
                print("NOGPU", e)
        """)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["LOADED"] == "[]"
    assert 'pip install "rnnjit[cuda]"' in lines["MISSING"] and "NUMBA_ENABLE_CUDASIM=1" in lines["MISSING"]
    if lines["NOGPU"] != "skipped":
        assert "no CUDA GPU" in lines["NOGPU"] and "NUMBA_ENABLE_CUDASIM=1" in lines["NOGPU"]
    assert all("\n" not in msg for msg in lines.values())


def test_training_kernels_compile_for_a_gpu():
    """The simulator runs kernels as Python, so it accepts code the CUDA compiler rejects (a
    NumPy ufunc, say). Compile the training-step kernels to PTX for sm_90 instead: that needs
    numba-cuda's NVVM, not a GPU; skipped where NVVM is missing."""
    words = compile_ptx("""
        from rnnjit.kernels.cuda import dense as dn, elementwise as ew, gemm as gm, optim as op, reduce as rd
        n = 0
        for F in (t.float32, t.float64):
            v, m, m3 = F[::1], F[:, ::1], F[:, :, ::1]
            i64, f64, f64m3, i, b = t.int64[::1], t.float64[::1], t.float64[:, :, ::1], t.int64, t.boolean
            cases = [
                (ew._fill, (v, F)), (ew._multiply, (v, v, v)), (ew._add, (v, v, v)),
                (ew._copy_columns, (m, i, m, i, i)), (ew._swap01, (m3, m3)), (ew._dropout_mask, (v, i, t.float64)),
                (ew._dropout_mask_drawn, (v, t.uint64[::1], t.float64)),
                (rd._partial_sums, (v, b, t.float64, f64m3, i)), (rd._finish, (f64m3, t.float64, f64)),
                (dn._gather_rows, (m, i64, m)), (dn._one_hot, (i64, m)), (dn._scatter_add_rows, (m, i64, m)),
                (dn._add_bias_rows, (m, v)), (dn._softmax_xent_rows, (m, i64, f64, m, b)),
                (op._sgd, (v, v, v, F, F)), (op._adagrad, (v, v, v, F, F)), (op._rmsprop, (v, v, v, F, F, F)),
                (op._adam, (v, v, v, v, F, F, F, F, F, F)), (op._scale, (v, F)), (op._clip_values, (v, F)),
                (gm.sum_first_axis, (m, v, v)), (gm.column_sums_partial, (m, i, m)), (gm.transpose_kernel, (m, m)),
            ]
            for kernel, sig in cases:
                cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                n += 1
        print("COMPILED", n)
        """)
    assert words == ["COMPILED", "46"]


def test_persistent_kernels_compile_for_a_gpu():
    """Every cell's persistent forward and backward kernel, with the weights read every step
    (KN = 0) and kept by the threads (KN = 4: H = 128 forward with 32 k-slices), compile to PTX
    for sm_90 in both dtypes, with GPU-sized tiles, and so do both tiles of the GEMM, loading
    the next slab before or after the products, for each pair of transposes the cells use; and no thread array spills to local memory:
    the kept weights, the partial sums, the row indices and the GEMM's accumulators and
    prefetched slabs all live in registers."""
    words = compile_ptx("""
        import re
        from rnnjit.kernels.cuda import gemm, gru, lstm, rnn
        n, spills = 0, []
        for F in (t.float32, t.float64):
            v, m, m3, b, i = F[::1], F[:, ::1], F[:, :, ::1], t.boolean, t.int64
            f64m, f64v = t.float64[:, ::1], t.float64[::1]
            sigs = [(lstm._forward_kernel, (m3, v, v, m, m3, m3, m, m, b, i, i)),
                    (lstm._backward_kernel, (m3, m3, m, m3, m, m, m3, m, f64m, f64v, b, i, i)),
                    (gru._forward_kernel, (m3, m3, v, v, m, m3, m, b, i, i)),
                    (gru._backward_kernel, (m3, m3, m3, m, m3, m, m, m3, m3, m, f64m, f64v, b, i, i)),
                    (rnn._forward_kernel, (m3, v, v, m, m3, m, b, b, i, i)),
                    (rnn._backward_kernel, (m3, m, m3, m, m3, m, f64m, f64v, b, b, i, i))]
            for make, sig in sigs:
                for KN in (0, 4):
                    kernel = make(8, 32, 8, KN)
                    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                    n += 1
                    if re.search(r"__local_depot", ptx):
                        spills.append(f"{kernel.py_func.__name__}/{KN}/{F}")
                if make not in (gru._forward_kernel, gru._backward_kernel):   # staged operands
                    kernel = make(8, 32, 8, 4, 16)
                    cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                    n += 1
            for kernel, sig in ((lstm._forward_gemm_kernel(16, 16, 4, 16), (m3, v, v, m, m3, m3, m, m, b, i, i)),
                                (lstm._backward_gemm_kernel(16, 16, 4, 16),     # the large-batch steps
                                 (m3, m3, m, m3, m, m, m3, m, f64m, f64v, b, i, i)),
                                (gru._forward_gemm_kernel(16, 16, 4, 16), (m3, m3, v, v, m, m3, m, b, i, i)),
                                (gru._backward_gemm_kernel(16, 16, 4, 16),
                                 (m3, m3, m3, m, m3, m, m, m3, m3, m, f64m, f64v, b, i, i)),
                                (rnn._forward_gemm_kernel(16, 16, 4, 16), (m3, v, v, m, m3, m, b, b, i, i)),
                                (rnn._backward_gemm_kernel(16, 16, 4, 16),
                                 (m3, m, m3, m, m3, m, f64m, f64v, b, b, i, i))):
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                n += 1
                if re.search(r"__local_depot", ptx):
                    spills.append(f"{kernel.py_func.__name__}/{F}")
            for tile in (gemm.TILE_64, gemm.TILE_128):   # the tiled GEMM, both ways of loading slabs,
                for prefetch in (False, True):           # for the three products the cells make
                    for ta, tb in ((False, True), (False, False), (True, False)):
                        kernel = gemm.gemm_kernel(*tile, prefetch, ta, tb)
                        ptx, _ = cuda.compile_ptx(kernel.py_func, (m, m, m3, i), cc=(9, 0))
                        n += 1
                        if re.search(r"__local_depot", ptx):
                            spills.append(f"gemm{tile}/{prefetch}/{ta}{tb}/{F}")
        print("COMPILED", n, "SPILLS", ",".join(spills) or "none")
        """)
    assert words == ["COMPILED", "68", "SPILLS", "none"]


def test_the_measured_rules_that_choose_kernels(monkeypatch):
    """Two choices encode what an H200 measured (benchmarks/README.md), checked here without a
    GPU: every cell runs its steps as tiled GEMMs when their tiles fill the multiprocessors
    (B=256, H=1024: yes; B=256, H=128, B=64, H=512 and B=1: no); threads keep up to 128 W_hh
    values when the batch is one tile, 64 otherwise."""
    launch = pytest.importorskip("rnnjit.kernels.cuda.launch")
    monkeypatch.setattr(launch, "simulating", lambda: False)
    monkeypatch.setattr(launch, "sm_count", lambda: 132)
    with launch.tuning(step_gemm=None, step_gemm_tile=(16, 16, 4, 16)):
        assert launch.use_step_gemm(256, 1024)
        assert not any(launch.use_step_gemm(B, H) for B, H in ((256, 128), (64, 512), (1, 1024), (32, 512)))
    with launch.tuning(step_gemm=True):
        assert launch.use_step_gemm(1, 4)
    with launch.tuning(step_gemm=False):
        assert not launch.use_step_gemm(256, 1024)
    one_tile, batched = launch.Plan(8, 32, 1, 128, 1), launch.Plan(8, 32, 8, 128, 32)
    assert launch.own_weights(one_tile, 1024, 4) == 32      # 4 gates x 32 values: kept at B = 1
    assert launch.own_weights(batched, 1024, 4) == 0        # B = 256: read every step, as measured faster
    assert launch.own_weights(batched, 512, 4) == 16


def test_the_measured_staging_rule(monkeypatch):
    """launch.stage_slabs encodes what an H200 measured (benchmarks/README.md): a split-K kernel
    stages its operand when each thread runs 16 k values or more and a tile holds 8 rows. On a
    132-SM GPU: B = 32, H = 512 stages every direction; B = 256, H = 128 only the LSTM's backward
    (4H = 512 values of k); B = 1, B = 32 at H = 128 (2-row tiles) and float64 (4-row tiles) never;
    forcing it either way wins."""
    launch = pytest.importorskip("rnnjit.kernels.cuda.launch")
    monkeypatch.setattr(launch, "simulating", lambda: False)
    monkeypatch.setattr(launch, "sm_count", lambda: 132)
    with launch.tuning(stage=None, stage_kc=16, threads=256):
        def kc(B, H, length, dtype=np.float32):
            return launch.stage_slabs(launch.plan(B, H, dtype), length)
        assert kc(32, 512, 512) == kc(32, 512, 4 * 512) == 16
        assert kc(256, 128, 4 * 128) == 16 and kc(256, 128, 128) == 0
        assert kc(1, 1024, 4 * 1024) == kc(32, 128, 4 * 128) == kc(32, 512, 4 * 512, np.float64) == 0
    with launch.tuning(stage=True, stage_kc=2):
        assert launch.stage_slabs(launch.Plan(2, 4, 1, 1, 1), 3) == 2
    with launch.tuning(stage=False):
        assert launch.stage_slabs(launch.Plan(8, 32, 8, 64, 4), 2048) == 0


# ---- the kernels against the CPU ---------------------------------------------------------------

def _case(cell, dtype, T=4, B=2, I=3, H=5, seed=0):
    rng = np.random.default_rng(seed)
    G, lstm = CELLS[cell].gates, CELLS[cell].has_cell_state
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype) if lstm else None
    weights = [rng.uniform(-0.5, 0.5, s).astype(dtype) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    dc_n = rng.standard_normal((B, H)).astype(dtype) if lstm else None
    return x, h0, c0, weights, dout, dh_n, dc_n


NAMES = ("out", "h_n", "c_n", "dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh", "norms")


def _compare(cell, nl, reverse, dtype, **shape):
    from rnnjit.kernels.cuda import to_device, to_host
    from rnnjit.kernels.cuda.cells import CUDA_CELLS

    def dev(a):
        return None if a is None else to_device(a)

    x, h0, c0, weights, dout, dh_n, dc_n = _case(cell, dtype, **shape)
    cpu, gpu = CELLS[cell], CUDA_CELLS[cell]
    ref_f = cpu.forward(x, h0, c0, *weights, reverse, nl)
    ref_b = cpu.backward(ref_f[3], dout, dh_n, dc_n)
    got_f = gpu.forward(dev(x), dev(h0), dev(c0), *map(dev, weights), reverse, nl)
    got_b = gpu.backward(got_f[3], dev(dout), dev(dh_n), dev(dc_n))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for name, ref, got in zip(NAMES, ref_f[:3] + tuple(ref_b), got_f[:3] + tuple(got_b)):
        if ref is None:
            assert got is None, name
            continue
        got = to_host(got)
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 0.1, err_msg=f"{cell} {nl} {name}")


CELL_CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell,nl", CELL_CASES)
def test_cuda_cells_match_cpu(cuda, cell, nl, reverse, dtype):
    """Outputs, final states, every gradient and the norms, through the CUDA_CELLS adapters."""
    _compare(cell, nl, reverse, dtype)


@pytest.mark.parametrize("cell,nl", CELL_CASES)
def test_several_tiles_and_ragged_edges(cuda, cell, nl):
    """Several tiles along both axes with ragged last tiles (6 units in tiles of 4, 5 rows in
    tiles of 4), more tiles than blocks (the simulator's cooperative grid has one block)."""
    from rnnjit.kernels.cuda.launch import tuning
    with tuning(jt=4, ks=4, bt=4, threads=16):
        _compare(cell, nl, True, np.float32, T=3, B=5, I=2, H=6)


@pytest.mark.parametrize("own", [128, 0])
@pytest.mark.parametrize("cell,nl", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh")])
def test_staged_operands_give_the_same_bits(cuda, cell, nl, own):
    """The LSTM's and the RNN's kernels with each step's operand staged in shared memory
    (launch.stage_slabs, forced here; several slabs a step, a ragged last one, weights kept by
    the threads or read every step) match the CPU, and the kernels reading the operand from
    global memory to the last bit: the sums run in the same order."""
    from rnnjit.kernels.cuda import to_device, to_host
    from rnnjit.kernels.cuda.cells import CUDA_CELLS
    from rnnjit.kernels.cuda.launch import tuning

    def dev(a):
        return None if a is None else to_device(a)

    x, h0, c0, weights, dout, dh_n, dc_n = _case(cell, np.float32, T=3, B=3, I=2, H=7)
    gpu, results = CUDA_CELLS[cell], {}
    for stage in (False, True):
        with tuning(jt=2, ks=4, bt=4, threads=8, stage=stage, stage_kc=1, own_weights=own,
                    own_weights_batched=own):
            f = gpu.forward(dev(x), dev(h0), dev(c0), *map(dev, weights), True, nl)
            b = gpu.backward(f[3], dev(dout), dev(dh_n), dev(dc_n))
            results[stage] = [None if a is None else to_host(a) for a in f[:3] + tuple(b)]
    for name, direct, staged in zip(NAMES, results[False], results[True]):
        if direct is not None:
            np.testing.assert_array_equal(staged, direct, err_msg=f"{cell} {nl} {name}")
    with tuning(jt=2, ks=4, bt=4, threads=8, stage=True, stage_kc=1, own_weights=own, own_weights_batched=own):
        _compare(cell, nl, True, np.float32, T=3, B=3, I=2, H=7)


@pytest.mark.parametrize("cell,nl", CELL_CASES)
def test_backward_computes_into_the_given_arrays(cuda, cell, nl):
    """``into=``: dh0, dc0, the weight gradients and the norms land in the arrays handed in (a
    layer's own, views of one NaN-filled buffer here, so anything unwritten shows), which come
    back as themselves, with the CPU's values; a None among them is allocated as before."""
    from rnnjit.kernels.cuda import to_device, to_host
    from rnnjit.kernels.cuda.cells import CUDA_CELLS

    def dev(a):
        return None if a is None else to_device(a)

    x, h0, c0, weights, dout, dh_n, dc_n = _case(cell, np.float32)
    ref = CELLS[cell].backward(CELLS[cell].forward(x, h0, c0, *weights, False, nl)[3], dout, dh_n, dc_n)
    gpu = CUDA_CELLS[cell]
    cache = gpu.forward(dev(x), dev(h0), dev(c0), *map(dev, weights), False, nl)[3]
    shapes = [h0.shape, h0.shape if c0 is not None else None, *(w.shape for w in weights), (x.shape[0],)]
    sizes = [0 if s is None else int(np.prod(s)) for s in shapes]
    buf = to_device(np.full(sum(sizes[:-1]), np.nan, np.float32))
    norms = to_device(np.full(x.shape[0], np.nan))                  # the norms are float64
    views, at = [], 0
    for s, n in zip(shapes[:-1], sizes[:-1]):
        views.append(None if s is None else buf[at:at + n].reshape(s))
        at += n
    views[5] = None                                                  # db_hh: allocated
    views.append(norms)
    got = gpu.backward(cache, dev(dout), dev(dh_n), dev(dc_n), into=tuple(views))
    assert all(got[1 + i] is v for i, v in enumerate(views) if v is not None)
    for name, r, g in zip(NAMES[4:], ref[1:], got[1:]):
        if r is None:
            assert g is None, name
        else:
            np.testing.assert_allclose(to_host(g), r, rtol=1e-4, atol=1e-5, err_msg=f"{cell} {name}")
    host_buf = to_host(buf)
    written = np.ones(host_buf.size, bool)
    at5 = sum(sizes[:5])
    written[at5:at5 + sizes[5]] = False                            # the db_hh slot, not handed in
    assert np.isfinite(host_buf[written]).all() and np.isfinite(to_host(norms)).all()


@pytest.mark.parametrize("tile", [None, (4, 4, 2, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell,nl", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")])
def test_steps_as_gemms(cuda, cell, nl, reverse, dtype, tile, monkeypatch):
    """The large-batch kernels (each step a register-tiled GEMM, ``stepgemm.py``), forward and
    backward, against the CPU: ragged tiles along the units and the batch, ragged k-slabs,
    several tiles per block (the simulator's one-block grid); the simulator's tile and a larger
    one."""
    import importlib

    from rnnjit.kernels.cuda.launch import tuning
    module = importlib.import_module(f"rnnjit.kernels.cuda.{cell}")
    ran = []
    for name in ("_forward_gemm_kernel", "_backward_gemm_kernel"):
        monkeypatch.setattr(module, name, lambda *t, make=getattr(module, name), name=name: (ran.append((name, t)),
                                                                                          make(*t))[1])
    with tuning(step_gemm=True, step_gemm_tile=tile):
        _compare(cell, nl, reverse, dtype, T=3, B=5, I=3, H=5 if tile is None else 9)
    assert [name for name, _ in ran] == ["_forward_gemm_kernel", "_backward_gemm_kernel"]
    assert tile is None or all(t == tile for _, t in ran)


@pytest.mark.parametrize("cell,nl", CELL_CASES)
def test_threads_keep_their_weights(cuda, cell, nl, monkeypatch):
    """The kernel variants whose threads load their W_hh values once and keep them (KN > 0,
    launch.py) against the CPU, forward and backward, over several batch tiles and a ragged k
    axis (H = 3 over 2 k-slices); and the fallbacks: the weights read every step when
    ``own_weights`` is 0, or when the grid cannot be a multiple of the unit tiles (the
    simulator's one-block grid with 2 unit tiles; a GPU's cooperative grid holds many blocks, so
    there it is trimmed to a multiple of 2 and the kept variant runs)."""
    import importlib

    from rnnjit.kernels.cuda.launch import tuning
    module = importlib.import_module(f"rnnjit.kernels.cuda.{cell}")
    built, launch = [], module.launch_persistent

    def spy(make, p, kn, *args, **kw):
        return launch(lambda k: (built.append(k), make(k))[1], p, kn, *args, **kw)

    monkeypatch.setattr(module, "launch_persistent", spy)
    G = CELLS[cell].gates
    with tuning(jt=4, ks=2, bt=1):
        _compare(cell, nl, False, np.float32, T=3, B=3, I=2, H=3)
        assert built == [2, -(-3 * G // 2)]        # KN = ceil(H / KS) forward, ceil(G H / KS) backward
        built.clear()
        _compare(cell, nl, True, np.float64, T=3, B=2, I=2, H=6)   # 2 unit tiles: KN built, then 0 runs
        assert built == ([3, 0, -(-6 * G // 2), 0] if SIM else [3, -(-6 * G // 2)])
        built.clear()
        with tuning(own_weights=0):
            _compare(cell, nl, False, np.float32, T=3, B=3, I=2, H=3)
        assert built == [0, 0]


def test_gpu_sized_tiles(cuda):
    """The tile shape a GPU uses (32 units x 8 k-slices x 8 rows), on a small LSTM."""
    from rnnjit.kernels.cuda.launch import tuning
    with tuning(jt=32, ks=8, bt=8):
        _compare("lstm", "tanh", False, np.float32, T=2, B=3, I=2, H=4)


def test_direct_kernels_match_cpu(cuda):
    """The sequence kernels themselves (not the adapters): same names, arguments and results."""
    from rnnjit.kernels import gru as cpu_gru
    from rnnjit.kernels.cuda import gru as gpu_gru
    from rnnjit.kernels.cuda import to_device, to_host
    x, h0, _, (W_ih, W_hh, b_ih, b_hh), dout, dh_n, _ = _case("gru", np.float64)
    ref = cpu_gru.gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, False)
    dev = [to_device(a) for a in (x, h0, W_ih, W_hh, b_ih, b_hh)]
    got = gpu_gru.gru_forward(*dev, False)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(to_host(g), r, rtol=1e-10)
    ref_b = cpu_gru.gru_backward(x, W_ih, W_hh, *ref, dout, dh_n, False)
    got_b = gpu_gru.gru_backward(dev[0], dev[2], dev[3], *got, to_device(dout), to_device(dh_n), False)
    assert len(ref_b) == len(got_b) == 7
    for r, g in zip(ref_b, got_b):
        np.testing.assert_allclose(to_host(g), r, rtol=1e-10, atol=1e-12)


# ---- building blocks ---------------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [False, True])
def test_gemm_transposes_splits_and_tiles(cuda, prefetch):
    """Every transposition, split-K with a ragged last chunk, several slabs along k with a ragged
    last slab, both tile families, and a tile whose threads own two runs of rows and of columns
    (8 x 8 outputs, as on a GPU's 128 x 128 tiles); with the next slab loaded before
    (``prefetch``) or after the products of the current one."""
    from rnnjit.kernels.cuda import gemm as g
    from rnnjit.kernels.cuda.launch import tuning
    rng = np.random.default_rng(1)
    cases = [((7, 5, 9), None, None), ((9, 30, 4), None, 3), ((13, 6, 11), g.TILE_64, None),
             ((21, 9, 19), (16, 16, 4, 8, 8), None)]
    for (M, K, N), tile, splits in cases:
        for ta in (False, True):
            for tb in (False, True):
                A = rng.standard_normal((K, M) if ta else (M, K))
                B = rng.standard_normal((N, K) if tb else (K, N))
                with tuning(gemm_tile=tile, gemm_splits=splits, gemm_prefetch=prefetch):
                    got = g.gemm(cuda.to_device(A), cuda.to_device(B), ta, tb).copy_to_host()
                ref = (A.T if ta else A) @ (B.T if tb else B)
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=f"{M, K, N, ta, tb}")
    A = rng.standard_normal((11, 6)).astype(np.float32)
    np.testing.assert_allclose(g.column_sums(cuda.to_device(A)).copy_to_host(), A.sum(axis=0), rtol=1e-5)
    one, two = g.column_sums(cuda.to_device(A), pair=True)
    np.testing.assert_array_equal(one.copy_to_host(), two.copy_to_host())
    np.testing.assert_allclose(two.copy_to_host(), A.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(g.transpose(cuda.to_device(A)).copy_to_host(), A.T)


def test_simulated_shared_arrays_are_one_per_site_when_threads_race(cuda, monkeypatch):
    """The simulator's ``cuda.shared.array`` made two arrays for one call site when a second
    thread looked the site up while the first was still creating it (the block then computes
    garbage: seen as rare wrong results under load); launch.py puts a lock around it. Here the
    first thread is held inside the creation until the second has asked too."""
    if not SIM:
        pytest.skip("a fix to the simulator")
    import threading
    import time
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    from rnnjit.kernels.cuda import launch
    assert getattr(FakeCUDAShared.array, "rnnjit_locked", False), launch.__name__   # importing it installs the fix
    shared, release, got = FakeCUDAShared(0), threading.Event(), []
    empty = np.empty

    def held_empty(*args, **kw):
        release.wait(2.0)
        return empty(*args, **kw)

    def grab():
        got.append(shared.array((2,), np.float32))
    monkeypatch.setattr(np, "empty", held_empty)
    threads = [threading.Thread(target=grab) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert len(got) == 2 and got[0] is got[1]


def test_helpers_and_argument_errors(cuda):
    from rnnjit.kernels.cuda import is_available, require_cuda, to_device, to_host
    from rnnjit.kernels.cuda.lstm import lstm_forward
    require_cuda()
    assert is_available()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = to_device(a)
    assert to_device(d) is d
    np.testing.assert_array_equal(to_host(d), a)
    assert to_host(None) is None
    x, h0, c0, weights, *_ = _case("lstm", np.float32)
    with pytest.raises(TypeError, match="device arrays"):
        lstm_forward(x, h0, c0, *weights, False)  # NumPy arrays, not device arrays
    with pytest.raises(TypeError, match="mixed dtypes"):
        lstm_forward(to_device(x), to_device(h0.astype(np.float64)), to_device(c0), *map(to_device, weights), False)


@pytest.mark.parametrize("cell", list(CELLS))
def test_layers_on_cuda_match_cpu(cuda, cell):
    """device="cuda" on a 2-layer bidirectional layer gives the CPU layer's results."""
    from rnnjit.nn import LAYERS
    kw = dict(num_layers=2, bidirectional=True, dtype=np.float32, seed=0)
    cpu, gpu = LAYERS[cell](3, 4, **kw), LAYERS[cell](3, 4, device="cuda", **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    a, b = cpu(x), gpu(x)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-4, atol=1e-5)
    dout = rng.standard_normal(a[0].shape).astype(np.float32)
    da, db = cpu.backward(dout), gpu.backward(dout)
    np.testing.assert_allclose(db[0], da[0], rtol=1e-4, atol=1e-5)
    for k in cpu.grads:
        np.testing.assert_allclose(gpu.grads[k], cpu.grads[k], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(gpu.hidden_grad_norms, cpu.hidden_grad_norms, rtol=1e-4)


def test_device_cuda_without_cuda_is_one_line():
    out = run_clean("""
        import rnnjit.kernels.cuda as kc
        if kc.is_available():
            print("AVAILABLE")
        else:
            import rnnjit
            try:
                rnnjit.LSTM(3, 4, device="cuda")
            except RuntimeError as e:
                print("ERR", e)
        """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == ["AVAILABLE"] or (len(lines) == 1 and lines[0].startswith("ERR")
                                      and "NUMBA_ENABLE_CUDASIM" in lines[0])


# ---- training on the device: CharLM + optimizer + clipping ---------------------------------------

TRAIN_CASES = [  # cell, dtype, optimizer (and its options), clip, clip mode, input, layers
    ("lstm", np.float64, ("adam", {}), 0.2, "norm", "embedding", 2),
    ("gru", np.float32, ("sgd", {"momentum": 0.9}), 0.02, "value", "onehot", 1),
    ("rnn", np.float32, ("rmsprop", {}), 0.2, "norm", "embedding", 1),
    ("lstm", np.float32, ("adagrad", {}), 0.0, "norm", "embedding", 1),
]


def _train(device, cell, dtype, opt, clip, mode, input_kind, layers, steps, T=3, B=2, V=7):
    """A few steps of CharLM training as the engine runs them: forward + BPTT, clip, update."""
    from rnnjit.models import CharLM
    from rnnjit.train.optim import OPTIMIZERS, clip_gradients
    rng = np.random.default_rng(5)
    xs, ys = rng.integers(0, V, (steps, T, B)), rng.integers(0, V, (steps, T, B))
    E = 3 if input_kind == "embedding" else None     # one-hot vectors are V wide
    model = CharLM(V, 4, layers, cell, embedding_size=E, input=input_kind, dtype=dtype, seed=2, device=device)
    name, kw = opt
    optimizer = OPTIMIZERS[name](model.parameters(), lr=0.05, **kw)
    state, record = model.initial_state(B), []
    for x, y in zip(xs, ys):
        loss, state = model.forward_backward(x, y, state)
        norm, clipped = clip_gradients([g for _, _, g in model.parameters()], clip, mode)
        optimizer.step()
        record.append((loss, norm, clipped, model.hidden_grad_norms.copy()))
    return record, model, optimizer


@pytest.mark.parametrize("cell,dtype,opt,clip,mode,input_kind,layers", TRAIN_CASES)
def test_training_on_the_device_matches_cpu(cuda, cell, dtype, opt, clip, mode, input_kind, layers):
    """Losses, gradient norms (before clipping), whether clipping fired, the per-step norms of
    dL/dh_t, the final parameters and the optimizer state: the same on both devices."""
    steps = 3 if layers == 2 else 2
    ref, cpu_model, cpu_opt = _train("cpu", cell, dtype, opt, clip, mode, input_kind, layers, steps)
    got, gpu_model, gpu_opt = _train("cuda", cell, dtype, opt, clip, mode, input_kind, layers, steps)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for s, (r, g) in enumerate(zip(ref, got)):
        np.testing.assert_allclose(g[0], r[0], **tol, err_msg=f"loss, step {s}")
        np.testing.assert_allclose(g[1], r[1], **tol, err_msg=f"norm, step {s}")
        assert g[2] == r[2], f"clipped, step {s}"
        np.testing.assert_allclose(g[3], r[3], **tol, err_msg=f"hidden_grad_norms, step {s}")
    if clip:
        assert any(r[2] for r in ref), "the case should make clipping fire"
    want, have = cpu_model.state_dict(), gpu_model.state_dict()
    assert set(have) == set(want)
    for k in want:
        assert isinstance(have[k], np.ndarray) and have[k].dtype == want[k].dtype
        np.testing.assert_allclose(have[k], want[k], **tol, err_msg=k)
    want, have = cpu_opt.state_dict(), gpu_opt.state_dict()
    for k in want:
        np.testing.assert_allclose(have[k], want[k], **tol, err_msg=k)


class _Transfers:
    """Every copy between host and device while active: ``to_host`` and ``to_device`` lists of
    (shape, dtype). Counts ``cuda.to_device``, ``copy_to_host``, ``copy_to_device`` from a NumPy
    array, ``np.asarray`` of a device array, and (in the simulator) NumPy arrays handed straight
    to a kernel, which numba would copy both ways behind the caller's back."""

    def __init__(self, cuda, monkeypatch):
        self.to_host, self.to_device, self.implicit = [], [], []
        cls = type(cuda.device_array(1))
        to_device, copy_to_host, copy_to_device = cuda.to_device, cls.copy_to_host, cls.copy_to_device

        inside = []   # on a GPU, cuda.to_device copies through copy_to_device: count that once

        def counted_to_device(a, *args, **kw):
            self.to_device.append((np.shape(a), np.asarray(a).dtype))
            inside.append(1)
            try:
                return to_device(a, *args, **kw)
            finally:
                inside.pop()

        def counted_copy_to_host(arr, *args, **kw):
            self.to_host.append((tuple(arr.shape), arr.dtype))
            return copy_to_host(arr, *args, **kw)

        def counted_copy_to_device(arr, src, *args, **kw):
            if not (inside or hasattr(src, "copy_to_host")):
                self.to_device.append((np.shape(src), np.asarray(src).dtype))
            return copy_to_device(arr, src, *args, **kw)

        def counted_array(arr, dtype=None, copy=None):
            self.to_host.append((tuple(arr.shape), arr.dtype))
            out = copy_to_host(arr)
            return out if dtype is None else out.astype(dtype)

        monkeypatch.setattr(cuda, "to_device", counted_to_device)
        monkeypatch.setattr(cls, "copy_to_host", counted_copy_to_host)
        monkeypatch.setattr(cls, "copy_to_device", counted_copy_to_device)
        monkeypatch.setattr(cls, "__array__", counted_array, raising=False)
        if SIM:
            from numba.cuda.simulator import kernel as sim_kernel
            launch = sim_kernel.FakeCUDAKernel.__call__

            def checked_launch(kernel, *args):
                if not (kernel._device or sim_kernel._kernel_context):  # a launch from the host
                    self.implicit += [(kernel.fn.__name__, np.shape(a)) for a in args
                                      if isinstance(a, np.ndarray) and a.ndim > 0]
                return launch(kernel, *args)

            monkeypatch.setattr(sim_kernel.FakeCUDAKernel, "__call__", checked_launch)


def test_a_training_step_moves_only_ids_and_metrics(cuda, monkeypatch):
    """After the first step, a training step (dropout, forward, BPTT, clipping both ways, Adam,
    the per-step norms read as the engine reads them) sends the two (T, B) id arrays to the device
    and brings back three metrics: the loss (1 number), the norm and the clip count (2), the
    per-step norms of dL/dh_t (layers x T). No parameter, gradient or activation crosses."""
    from rnnjit.models import CharLM
    from rnnjit.train.optim import Adam, clip_gradients
    T, B, V, L = 3, 2, 7, 2
    model = CharLM(V, 4, L, "lstm", dropout=0.5, embedding_size=3, seed=0, device="cuda")
    opt = Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    state = model.initial_state(B)

    def step(mode):
        nonlocal state
        x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
        loss, state = model.forward_backward(x, y, state)
        norm, _ = clip_gradients([g for _, _, g in model.parameters()], 0.01, mode)
        opt.step()
        return loss, norm, model.hidden_grad_norms.tolist()

    step("norm")
    moved = _Transfers(cuda, monkeypatch)
    for mode in ("norm", "value"):
        loss, norm, hgn = step(mode)
        assert np.isfinite(loss) and norm > 0 and np.shape(hgn) == (L, T)
    assert moved.implicit == []
    assert sorted(moved.to_device) == [((T * B,), np.int64)] * 4
    assert sorted(moved.to_host, key=str) == sorted([((1,), np.float64), ((2,), np.float64), ((L, T), np.float64)] * 2,
                                                    key=str)


def test_layer_keeps_device_arrays_on_the_device(cuda):
    """Device arrays in, device arrays out (batch_first, bidirectional, unbatched), the same
    numbers as NumPy in and out; params and grads read as NumPy."""
    from rnnjit.kernels.cuda import to_device, to_host
    from rnnjit.nn import LSTM, GRU
    rng = np.random.default_rng(3)
    layer = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=1, device="cuda")
    x = rng.standard_normal((2, 3, 3)).astype(np.float32)        # (B, T, I)
    h0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    y, (h_n, c_n) = layer(x, (h0, np.zeros_like(h0)))
    dout = rng.standard_normal(y.shape).astype(np.float32)
    dx, (dh0, _) = layer.backward(dout)
    grads = {k: v for k, v in layer.grads.items()}
    y_d, (h_n_d, c_n_d) = layer(to_device(x), (to_device(h0), None))
    assert all(hasattr(a, "copy_to_host") for a in (y_d, h_n_d, c_n_d))
    dx_d, (dh0_d, dc0_d) = layer.backward(to_device(dout))
    assert all(hasattr(a, "copy_to_host") for a in (dx_d, dh0_d, dc0_d))
    for got, want in ((y_d, y), (h_n_d, h_n), (c_n_d, c_n), (dx_d, dx), (dh0_d, dh0)):
        np.testing.assert_allclose(to_host(got), want, rtol=1e-6, atol=1e-7)
    assert isinstance(layer.params["weight_hh_l1_reverse"], np.ndarray)
    for k, g in layer.grads.items():
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, grads[k], rtol=1e-6, atol=1e-7, err_msg=k)

    cpu = GRU(2, 3, seed=4)
    gpu = GRU(2, 3, seed=4, device="cuda")
    xu = rng.standard_normal((4, 2)).astype(np.float32)           # unbatched (T, I)
    (a, ha), (b, hb) = cpu(xu), gpu(to_device(xu))
    np.testing.assert_allclose(to_host(b), a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_host(hb), ha, rtol=1e-4, atol=1e-6)
    gpu.load_state_dict({k: v * 2 for k, v in cpu.state_dict().items()})
    gpu.params["bias_hh_l0"] = np.ones(9, np.float32)             # a HostView takes whole arrays
    np.testing.assert_array_equal(gpu.state_dict()["weight_ih_l0"], cpu.params["weight_ih_l0"] * 2)
    np.testing.assert_array_equal(gpu.state_dict()["bias_hh_l0"], np.ones(9, np.float32))


def test_dropout_masks_on_the_device(cuda):
    from rnnjit.kernels.cuda import to_host
    from rnnjit.kernels.cuda.elementwise import dropout_mask
    keep = 0.7
    m = to_host(dropout_mask((40, 50), np.float32, seed=11, keep=keep))
    assert set(np.unique(m)) <= {0.0, np.float32(1 / keep)}
    assert abs((m > 0).mean() - keep) < 0.05
    np.testing.assert_array_equal(m, to_host(dropout_mask((40, 50), np.float32, seed=11, keep=keep)))
    assert (m != to_host(dropout_mask((40, 50), np.float32, seed=12, keep=keep))).any()


def test_sampling_from_a_cuda_model(cuda):
    """The same text from the same weights and seed on both devices (float64: no near ties)."""
    from rnnjit.data import Vocab
    from rnnjit.models import CharLM, sample
    vocab = Vocab.from_text("abcdefg\n")
    cpu = CharLM(vocab.size, 4, 1, "gru", dtype=np.float64, seed=9)
    gpu = CharLM(vocab.size, 4, 1, "gru", dtype=np.float64, seed=9, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    for kw in (dict(seed=1, temperature=0.9), dict(argmax=True), dict(seed=2, top_k=3)):
        assert sample(gpu, vocab, 6, prime="ab", **kw) == sample(cpu, vocab, 6, prime="ab", **kw)


def test_engine_trains_on_the_device_and_resumes(cuda, tmp_path):
    """The engine, unchanged, runs a cuda CharLM (eval, sample, checkpoint, resume) with the
    CPU's losses and gradient norms."""
    from rnnjit.train import TrainConfig, Trainer
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 8, encoding="utf-8")

    def run(device, steps, resume=False):
        c = TrainConfig(corpus=str(corpus), hidden=4, layers=1, seq_len=3, batch=2, steps=steps, eval_every=2,
                        eval_batches=1, sample_every=2, sample_length=3, checkpoint_every=0, seed=1,
                        clip=0.5, device=device)
        events = list(Trainer(c, out_dir=str(tmp_path / device), resume=resume).run())
        return [(e.loss, e.grad_norm) for e in events if e.kind == "step"], events

    cpu, _ = run("cpu", 3)
    gpu, events = run("cuda", 2)
    assert {"eval", "sample", "checkpoint"} <= {e.kind for e in events}
    resumed, _ = run("cuda", 3, resume=True)
    np.testing.assert_allclose(gpu + resumed, cpu, rtol=1e-4)
