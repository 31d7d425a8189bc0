"""Run a notebook from notebooks/ as a user runs it (papermill, a real kernel) and read what it reported.

Each notebook ends with a cell tagged `summary` that prints one JSON object; tests assert on it.
Executed copies are kept in .artifacts/notebooks/ for inspection when something fails.

The tests reach it through the `run_notebook` fixture (conftest.py); it stays a plain module, importable
on its own, because docs/prepare_notebooks.py runs the notebooks for the docs through it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "notebooks"


def run_notebook(notebook: Path, tmp_path: Path, timeout: float = 300, **parameters: Any) -> tuple[dict, Any]:
    """Execute `notebook` in `tmp_path` with its own workspace; returns (summary, executed notebook)."""
    import papermill as pm

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / notebook.name
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters={"workspace": str(tmp_path / "ws"), "progress": "text", **parameters},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
        start_timeout=120,
        execution_timeout=timeout,
    )
    executed = nbformat.read(out, as_version=4)
    summary = [c for c in executed.cells if "summary" in c.metadata.get("tags", [])]
    assert summary, f"{notebook.name} has no cell tagged 'summary'"
    text = "".join(o.get("text", "") for o in summary[-1].outputs if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1]), executed
