"""The run-exploration notebook executes end to end on a finished demo run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pyogrio
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # executes the notebook on the demo run

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPLORE_RUN = NOTEBOOKS / "explore_run.ipynb"


def _tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if tag in c.metadata.get("tags", []))


def _text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed or displayed as text."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [out.get("data", {}).get(mime, "") for mime in ("text/plain", "text/html")]
    return "\n".join(parts)


def test_explore_run_notebook_runs_on_demo(demo_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(EXPLORE_RUN, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "commit the notebook with its outputs cleared"

    monkeypatch.setenv("EOLEADS_RUN", str(demo_run))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    lead_ids = pyogrio.read_dataframe(demo_run / "leads.gpkg", layer="leads", columns=["lead_id"],
                                      read_geometry=False).lead_id.tolist()
    assert lead_ids, "the demo run should produce leads"
    table = _text(_tagged(nb, "leads-table"))
    assert [i for i in lead_ids if i not in table] == [], "the leads table misses leads of leads.gpkg"
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert figures >= 3, "expected the map, the before/after chips and the probability raster"
    assert "recall" in _text(_tagged(nb, "evaluation")), "the demo has ground truth to score against"
