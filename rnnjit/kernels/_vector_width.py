"""Let LLVM vectorise rnnjit's loops 512 bits wide on every AVX-512 CPU, not only on AMD's.

Numba compiles for the host CPU, and LLVM's model of most Intel CPUs with AVX-512 (Skylake-SP,
Ice Lake, Sapphire Rapids, Rocket Lake...) carries the tuning flag ``prefer-256-bit``: the loop
and SLP vectorisers then use 256-bit ymm registers, half an AVX-512 register, because early
AVX-512 chips lowered their clock for 512-bit work. AMD's Zen 4 and Zen 5 have no such flag. So
the same micro-kernel (``_smallgemm.py``: 16 accumulators of 16 float32 each) ran at full width
on the Zen 5 it was written on and at half width on an Intel Xeon (Sapphire Rapids class, one
thread, LSTM B=32 T=100 H=512, float32): a training step took 288 ms against 201 ms with the full
width, the forward 96 ms against 58 (``rnnjit bench``, same run for torch: 197 and 51 ms).

The per-function LLVM attribute ``"prefer-vector-width"="512"`` overrides the CPU's preference,
function by function, as clang's ``-mprefer-vector-width=512`` does. Numba has no option for
function attributes, so ``install()`` wraps the code library's ``add_ir_module`` (the step where
Numba hands the IR of a compiled function to LLVM) and adds the attribute to the functions whose
mangled names start with ``_ZN6rnnjit``: rnnjit's own, and nobody else's (the user's Numba code
keeps LLVM's choice). Numba-inlined callees (``inline="always"``) are lowered into their caller
and so carry its attribute; separately compiled ones carry their own.

Why not ``NUMBA_CPU_FEATURES=...,-prefer-256-bit``: that changes the whole process's code
generation, for every Numba user in it, and only if it is set before Numba's first compile.

Only where the host has AVX-512 (elsewhere the vectorisers cannot go wider than the registers
anyway), and never against the user's own choice: ``RNNJIT_VECTOR_WIDTH=256`` (or any width)
sets another value, ``RNNJIT_VECTOR_WIDTH=0`` leaves LLVM's default. The width is part of
Numba's cache key only through the code it produces, so a cache written with another width is
reused as it is; delete ``__pycache__/*.nbi`` and ``*.nbc`` to recompile. It is a speed setting
only: the results are the same code's results, summed in vector lanes of another width
(float32 sums can differ in their last bits, as between any two CPUs).
"""

import os
import warnings

PREFIX = "_ZN6rnnjit"          # Numba's mangled names of functions defined in rnnjit's modules
_ATTRIBUTE = '"prefer-vector-width"="{}"'
_installed = None              # the width installed, None before install(), 0 when none


def host_has_avx512() -> bool:
    import llvmlite.binding as ll
    try:
        return "+avx512f" in ll.get_host_cpu_features().flatten().split(",")
    except RuntimeError:         # LLVM cannot read this CPU's features
        return False


def host_cpu_name() -> str:
    """The CPU LLVM compiles for ("" where it cannot tell): a label for benchmarks."""
    import llvmlite.binding as ll
    try:
        return ll.get_host_cpu_name()
    except RuntimeError:
        return ""


def chosen_width() -> int:
    """The width to ask for: RNNJIT_VECTOR_WIDTH if set, else 512 on AVX-512 hosts, else 0.
    A value that is not a whole number of bits >= 0 is warned about and ignored (it is read at
    import, where an exception would break every use of rnnjit over a speed setting)."""
    value = os.environ.get("RNNJIT_VECTOR_WIDTH", "").strip()
    if value:
        if value.isdigit():
            return int(value)
        warnings.warn(f"RNNJIT_VECTOR_WIDTH={value!r} is not a number of bits (128, 256, 512; 0 for "
                      "LLVM's default): ignored", RuntimeWarning, stacklevel=2)
    return 512 if host_has_avx512() else 0


def tag(ir_module, width: int) -> int:
    """Add the attribute to the functions of ``ir_module`` (a llvmlite.ir.Module) that rnnjit
    defines; returns how many it tagged."""
    attribute = _ATTRIBUTE.format(width)
    count = 0
    for fn in ir_module.functions:
        if fn.name.startswith(PREFIX) and not fn.is_declaration:
            # llvmlite's FunctionAttributes accepts only the attribute names it knows (no
            # "key"="value" ones), but it writes each entry as it is: add past its check.
            set.add(fn.attributes, attribute)
            count += 1
    return count


def install() -> int:
    """Wrap Numba's ``add_ir_module`` once; returns the width in force (0: none)."""
    global _installed
    if _installed is not None:
        return _installed
    width = chosen_width()
    _installed = width
    if not width:
        return 0
    from numba.core import codegen
    library = codegen.CPUCodeLibrary
    original = library.add_ir_module
    if getattr(original, "rnnjit_width", None) is not None:
        return width

    def add_ir_module(self, ir_module):
        global _installed
        if _installed:
            try:
                tag(ir_module, width)
            except Exception as exc:   # noqa: BLE001 (a Numba/llvmlite this was not written for)
                _installed = 0          # a speed setting must never cost a compile: stop tagging
                warnings.warn(f"rnnjit cannot set the vector width with this Numba/llvmlite ({exc!r}); "
                              "compiling with LLVM's default", RuntimeWarning, stacklevel=2)
        return original(self, ir_module)

    add_ir_module.rnnjit_width = width
    library.add_ir_module = add_ir_module
    return width


def installed_width() -> int:
    """The width rnnjit's functions are compiled with (0: LLVM's choice for this CPU)."""
    return install()
