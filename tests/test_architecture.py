"""Arrows point down: the headless package never imports a UI library."""

import subprocess
import sys


def test_headless_modules_do_not_import_textual_or_rich():
    code = ("import sys, rnnjit, rnnjit.kernels, rnnjit.nn, rnnjit.models, rnnjit.data, rnnjit.train, "
            "rnnjit.train.engine; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'rnnjit_tui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rnnjit_never_imports_textual():
    code = "import sys, rnnjit.cli; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists packages by hand (tui/ installs as rnnjit_tui): none may be forgotten."""
    import pathlib
    import tomllib
    root = pathlib.Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("rnnjit", "rnnjit"), ("tui", "rnnjit_tui")):
        for init in (root / top).rglob("__init__.py"):
            rel = init.parent.relative_to(root / top).parts
            found.add(".".join((name,) + rel))
    assert found == listed
