"""Run a real, public v1 notebook (tests/notebooks/v1/, MIT, Azure/MachineLearningNotebooks) the way the
migration contract says a user runs it: `mlmagics migrate` rewrites its imports and nothing else; one first
cell creates what the notebook assumed existed (a workspace config.json); papermill runs it in a folder that
holds its helper files, as its own folder did.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from mlmagics.migrate import migrate_notebook

V1 = Path(__file__).resolve().parent / "v1"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "notebooks" / "v1"
CONFIG_CELL = """\
# Added by the test (the only cell that is not the notebook's): the workspace config v1 notebooks expect.
import json
json.dump({"subscription_id": "sub-local", "resource_group": "rg-local", "workspace_name": "v1-notebooks",
           "path": "ws"}, open("config.json", "w"))
"""


@dataclass
class Executed:
    notebook: Any  # the executed notebook
    error: str | None  # the failing cell's error (ename: evalue), None when every cell ran
    failed_cell: int | None  # its number in the notebook as published (1-based; the added first cell not counted)

    def text(self, cell: int) -> str:
        """Everything cell `cell` (numbered as published) printed or returned."""
        out = []
        for output in self.notebook.cells[cell].get("outputs", []):  # cells[0] is the added cell: numbering matches
            if output.get("output_type") == "stream":
                out.append(output.get("text", ""))
            elif "data" in output:
                out.append(output["data"].get("text/plain", ""))
            elif output.get("output_type") == "error":
                out.append(f"{output['ename']}: {output['evalue']}")
        return "".join(out)

    def find(self, needle: str) -> int:
        """The number of the first code cell whose (migrated) source contains `needle`."""
        for number, cell in enumerate(self.notebook.cells[1:], start=1):
            if cell.cell_type == "code" and needle in cell.source:
                return number
        raise AssertionError(f"no cell contains {needle!r}")


def run_v1_notebook(relative: str, work: Path, timeout: float = 900, setup: str = "") -> Executed:
    """Migrate and run tests/notebooks/v1/<relative> in `work` (its folder's files copied there first);
    `setup`: more of the added first cell (what else the notebook assumed existed)."""
    import papermill as pm

    source = V1 / relative
    work.mkdir(parents=True, exist_ok=True)
    for item in source.parent.iterdir():
        if item.suffix != ".ipynb" and item.is_file():
            shutil.copy(item, work / item.name)
    notebook = nbformat.read(source, as_version=4)
    migration = migrate_notebook(notebook)
    assert migration.changes, f"{relative}: nothing to migrate?"
    first = nbformat.v4.new_code_cell(CONFIG_CELL + setup)
    if notebook.nbformat_minor < 5:  # cell ids came with format 4.5; these notebooks are 4.2
        del first["id"]
    notebook.cells.insert(0, first)
    migrated = work / source.name
    nbformat.write(notebook, migrated)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / source.name
    error = failed = None
    try:
        pm.execute_notebook(str(migrated), str(out), kernel_name="python3", cwd=str(work), progress_bar=False,
                            start_timeout=120, execution_timeout=timeout)  # fmt: skip
    except pm.PapermillExecutionError as e:
        error, failed = f"{e.ename}: {e.evalue}", e.cell_index  # cell_index counts the added cell: the published number
    executed = nbformat.read(out, as_version=4)
    # papermill marks a failure with cells of its own; without them, cell i is the notebook's cell i again
    executed.cells = [c for c in executed.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    return Executed(executed, error, failed)
