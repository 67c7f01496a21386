"""The README's Python examples run as written (a learner will paste them)."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code):
    exec(compile(code, "README.md", "exec"), {})


def test_readme_has_the_two_commands():
    assert 'python -m pip install . && rnnjit train' in README
    assert 'python -m pip install ".[test]" && python -m pytest' in README
