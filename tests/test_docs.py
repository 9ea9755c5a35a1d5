"""The documentation cannot rot: every Python block of the README and docs/ runs, and the site builds strictly.

Blocks of one page run in order, in one namespace, in a fresh working folder (so ``out/...`` paths are the page's
own). A block preceded by ``<!-- not run: REASON -->`` is skipped (the network, a GPU, a model the tests cannot
have); the reason must be given. A page whose blocks take long (training) is marked ``<!-- docs: slow -->`` and
runs with the slow tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_SKIP = re.compile(r"<!--\s*not run:\s*(\S[^>]*?)\s*-->\s*$")
_SLOW = "<!-- docs: slow -->"


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line, code, reason it is not run or None) of each ```python block."""
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        previous = before[-1] if before else ""
        skip = _SKIP.search(previous)
        blocks.append((len(before) + 1, m.group(1), skip.group(1) if skip else None))
    return blocks


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _params() -> list[object]:
    params = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        if not any(reason is None for _, _, reason in python_blocks(text)):
            continue
        marks = [pytest.mark.slow] if _SLOW in text else []
        params.append(pytest.param(page, id=_page_id(page), marks=marks))
    return params


@pytest.mark.parametrize("page", _params())
def test_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIGC_RECORD_STORE", str(tmp_path / "record-store"))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for line, code, reason in python_blocks(page.read_text(encoding="utf-8")):
        if reason is not None:
            continue
        try:
            exec(compile(code, f"{_page_id(page)}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{_page_id(page)}, the block at line {line} failed: {type(e).__name__}: {e}") from e


def test_skipped_blocks_say_why() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "<!-- not run -->" not in text, f"{_page_id(page)}: say why a block is not run"
        for line, _, reason in python_blocks(text):
            assert reason is None or len(reason) > 5, f"{_page_id(page)}:{line}: a reason of a few words"


def test_block_parser() -> None:
    text = "intro\n```python\nx = 1\n```\n<!-- not run: needs the network -->\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n", None), (6, "y = 2\n", "needs the network")]


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install 'aigc[docs]')")
def test_site_builds_strictly(tmp_path: Path) -> None:
    """No broken link, no missing reference, no docstring mkdocstrings cannot render; the notebook renders."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = dict(os.environ, AIGC_RECORD_STORE=str(tmp_path / "record-store"), OMP_NUM_THREADS="1")
    out = subprocess.run([str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()
    notebook = (tmp_path / "site" / "examples" / "image_generation" / "index.html").read_text(encoding="utf-8")
    assert "an ankle boot" in notebook and "data:image/png;base64" in notebook  # executed: its grids are there
