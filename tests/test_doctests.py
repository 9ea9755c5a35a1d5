"""Every docstring example in ``src/aigc`` runs (those marked ``# doctest: +SKIP`` need a model or a file the
example only names). Each example starts from ``import aigc`` and its module's own names, in a scratch folder."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import aigc

MODULES = sorted(m.name for m in pkgutil.walk_packages(aigc.__path__, "aigc.") if not m.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name, globs={"aigc": aigc, **vars(module)})
    return [t for t in tests if t.examples and t.name.startswith(name)]


def test_docstring_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failed: list[str] = []
    ran = 0
    for name in MODULES:
        for test in _examples(name):
            result = runner.run(test, out=lambda text: None, clear_globs=True)
            ran += result.attempted  # skipped examples are not attempted
            if result.failed:
                failed.append(f"{test.name} (line {test.lineno})")
    assert not failed, f"docstring examples that fail: {failed}"
    assert ran > 100  # the finder found the examples (a broken walk would find none)
