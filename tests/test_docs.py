"""The documentation cannot rot: every Python block of the README and docs/ runs, and the site builds strictly.

Blocks of one page run in order, in one namespace, in a fresh working folder (so ``out/...`` paths are the page's
own). A block preceded by ``<!-- not run: REASON -->`` is skipped (the network, a GPU, a model the tests cannot
have); the reason must be given. A page whose blocks take long (training) is marked ``<!-- docs: slow -->`` and
runs with the slow tests (in the default run and CI; not in the quick tier).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
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
    module = types.ModuleType("__docs__")  # a real module: dataclasses and pickle look classes up by module name
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
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


def _mkdocs(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIGC_RECORD_STORE=str(tmp_path / "record-store"), OMP_NUM_THREADS="1",
               NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


def test_site_builds_strictly(tmp_path: Path) -> None:
    """No broken link, no missing reference, no docstring mkdocstrings cannot render, every page and the API
    reference there. The notebook is rendered as it is stored (``test_notebook`` executes it; the heavy test below
    builds the site as published, with the notebook executed)."""
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(ROOT / "docs")
    config["hooks"] = [str(ROOT / h) for h in config.get("hooks", [])]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocs-jupyter" in plugin:
            plugin["mkdocs-jupyter"]["execute"] = False
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "src")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = _mkdocs(tmp_path, tmp_path / "mkdocs.yml")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "concepts/provenance/index.html", "reference/api/index.html",
                 "reference/provenance/index.html", "examples/image_generation/index.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "aigc.replay" in api and "aigc.verify" in api and "Regenerate a saved output" in api


@pytest.mark.heavy  # the notebook's execution is test_notebook's (slow); this adds only mkdocs-jupyter's run of it
def test_published_site_builds_with_the_notebook_executed(tmp_path: Path) -> None:
    out = _mkdocs(tmp_path, ROOT / "mkdocs.yml")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    notebook = (tmp_path / "site" / "examples" / "image_generation" / "index.html").read_text(encoding="utf-8")
    assert "an ankle boot" in notebook and "data:image/png;base64" in notebook  # executed: its grids are there
