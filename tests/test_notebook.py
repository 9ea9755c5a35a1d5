"""The example notebook runs top to bottom, and its outputs render (image grids as HTML/PNG)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "image_generation.ipynb"


@pytest.mark.slow
def test_image_notebook_executes(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    rich = [o["data"] for o in outputs if o.get("output_type") == "execute_result"]
    grids = [d for d in rich if "text/html" in d and "<img" in d["text/html"]]
    assert len(grids) == 2 and all("image/png" in d for d in grids)
    assert "an ankle boot" in grids[0]["text/html"] and "seed 10" in grids[0]["text/html"]
    assert rich[1]["text/plain"] in ("0", "1", "2")  # batch sample vs single run, in 1/255 steps
