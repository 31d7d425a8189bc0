"""Run a notebook from notebooks/ as a user runs it (papermill, a real kernel) and read what it reported.

Each notebook ends with a cell tagged `summary` that prints one JSON object; tests assert on it.
Executed copies are kept in .artifacts/notebooks/ for inspection when something fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
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


def scoring_scripts(notebook: Path) -> list[tuple[str, str]]:
    """The scoring scripts a notebook writes, as (file name, source): `%%score_script` and `%%writefile`
    cells, and `Path("x.py").write_text("...")` calls, that define `run`."""
    import ast

    scripts = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        source = cell.source
        if cell.cell_type != "code" or "def run" not in source:
            continue
        first, _, body = source.partition("\n")
        if first.startswith(("%%score_script", "%%writefile")):
            scripts.append((first.split()[1], body))
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "write_text"
                and isinstance(node.func.value, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and "def run" in node.args[0].value
            ):
                scripts.append((node.func.value.args[0].value, node.args[0].value))
    return scripts
