"""rnnjit's functions ask LLVM for 512-bit vectors on AVX-512 CPUs (``kernels/_vector_width.py``),
and nobody else's do."""

import os
import subprocess
import sys
import textwrap

import llvmlite.binding as ll
import pytest
from llvmlite import ir

from rnnjit.kernels import _vector_width


def _module():
    mod = ir.Module(name="m")
    fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType()])
    for name in ("_ZN6rnnjit7kernels4lstm1fEd", "_ZN5other1gEd"):
        fn = ir.Function(mod, fnty, name=name)
        b = ir.IRBuilder(fn.append_basic_block())
        b.ret(b.fadd(fn.args[0], fn.args[0]))
    ir.Function(mod, fnty, name="_ZN6rnnjit7kernels4lstm8declaredEd")     # a declaration
    return mod


def test_tag_marks_rnnjit_definitions_only_and_llvm_reads_it():
    mod = _module()
    assert _vector_width.tag(mod, 512) == 1
    parsed = str(ll.parse_assembly(str(mod)))
    defines = {line.split("@")[1].split("(")[0]: line for line in parsed.splitlines()
               if line.startswith("define")}
    groups = {line.split(" = ")[0]: line for line in parsed.splitlines() if line.startswith("attributes #")}

    def attributes(name):
        refs = [w for w in defines[name].split() if w.startswith("#")]
        return " ".join(groups[f"attributes {r}"] for r in refs) + defines[name]

    assert '"prefer-vector-width"="512"' in attributes("_ZN6rnnjit7kernels4lstm1fEd")
    assert "prefer-vector-width" not in attributes("_ZN5other1gEd")


def _run(code, tmp_path, **env):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_compiled_rnnjit_functions_carry_the_width_and_user_functions_do_not(tmp_path):
    res = _run("""
        import numba, numpy as np
        from rnnjit.kernels import _smallgemm, _vector_width
        assert _vector_width.installed_width() == 384, _vector_width.installed_width()
        _smallgemm.use_packed(32, 100, 4096)
        ours = "\\n".join(_smallgemm.use_packed.inspect_llvm().values())

        @numba.njit
        def users(x):
            return x + 1.0
        users(1.0)
        theirs = "\\n".join(users.inspect_llvm().values())
        print("ours", '"prefer-vector-width"="384"' in ours)
        print("theirs", "prefer-vector-width" in theirs)
        """, tmp_path, RNNJIT_VECTOR_WIDTH="384")
    assert res.returncode == 0, res.stderr
    assert "ours True" in res.stdout and "theirs False" in res.stdout, res.stdout


def test_zero_leaves_llvm_its_choice_and_garbage_is_a_warning(monkeypatch):
    monkeypatch.setenv("RNNJIT_VECTOR_WIDTH", "0")
    assert _vector_width.chosen_width() == 0
    monkeypatch.setenv("RNNJIT_VECTOR_WIDTH", "wide")
    with pytest.warns(RuntimeWarning, match="RNNJIT_VECTOR_WIDTH='wide' is not a number of bits"):
        width = _vector_width.chosen_width()
    assert width == (512 if _vector_width.host_has_avx512() else 0)


@pytest.mark.skipif(not _vector_width.host_has_avx512(), reason="the host has no AVX-512")
def test_the_recurrent_product_uses_zmm_registers_on_avx512_hosts(tmp_path):
    """The micro-kernel's 16 accumulators are zmm registers; with LLVM's preference on Intel
    CPUs (RNNJIT_VECTOR_WIDTH=0 there) they were pairs of ymm, half the FMA rate."""
    res = _run("""
        import numpy as np
        from rnnjit.kernels import _smallgemm
        W = np.ones((64, 40), np.float32)
        Wp = _smallgemm.pack_weights(W, False, True)
        A, C = np.ones((8, 64), np.float32), np.zeros((8, 40), np.float32)
        _smallgemm.recurrent_gemm(A, W, False, Wp, True, C, 0.0, 0, False)
        assert np.allclose(C, 64.0)
        asm = "\\n".join(_smallgemm.recurrent_gemm.inspect_asm().values())
        asm += "\\n".join(_smallgemm.smallgemm.inspect_asm().values())
        print("zmm", asm.count("zmm"))
        """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split("zmm")[1]) > 0, res.stdout


def test_a_failing_tag_warns_once_and_never_breaks_a_compile(tmp_path):
    """If a later llvmlite stores function attributes differently, the compile goes on untagged."""
    res = _run("""
        import warnings
        from rnnjit.kernels import _vector_width, _smallgemm
        def broken(ir_module, width):
            raise TypeError("attributes are not a set")
        _vector_width.tag = broken
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            print("use_packed", _smallgemm.use_packed(32, 100, 4096))
            print("panels", _smallgemm._panels(65))
        print("warnings", sum("cannot set the vector width" in str(w.message) for w in seen))
        print("width", _vector_width.installed_width())
        """, tmp_path, RNNJIT_VECTOR_WIDTH="512")
    assert res.returncode == 0, res.stderr
    assert "use_packed True" in res.stdout and "panels 4" in res.stdout, res.stdout
    assert "warnings 1" in res.stdout and "width 0" in res.stdout, res.stdout
