"""The migration contract, as a tool: a v1 notebook runs after its `azureml` imports name mlmagics.

    mlmagics migrate deploy-to-local.ipynb            # writes deploy-to-local.mlmagics.ipynb
    mlmagics migrate score_notebook.py -o migrated.py

Exactly three rewrites, in code cells (and `.py` files), nothing else:

    from azureml.<anything> import X, Y     ->  from mlmagics import X, Y
    import azureml.core                      ->  import mlmagics
    azureml.core.VERSION                     ->  mlmagics.VERSION

Scoring scripts a cell writes (`%%writefile score.py`) are left as they are: they run inside the
service, where the runtime provides `azureml.core.model.Model` and `azureml.contrib.services`, as v1's did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

_FROM = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+azureml(?:\.[A-Za-z_][\w.]*)?[ \t]+import[ \t]+", re.MULTILINE)
_IMPORT = re.compile(r"^(?P<indent>[ \t]*)import[ \t]+azureml\.core(?:[ \t]+as[ \t]+(?P<alias>\w+))?[ \t]*$", re.MULTILINE)
_VERSION = re.compile(r"\bazureml\.core\.VERSION\b")
_WRITES_A_FILE = re.compile(r"^\s*%%writefile\b")


@dataclass
class Migration:
    """What a rewrite changed: (cell number or 0 for a .py file, old line, new line) for each line."""

    changes: list[tuple[int, str, str]] = field(default_factory=list)
    scripts_left: list[int] = field(default_factory=list)  # %%writefile cells, kept as written


def rewrite_source(source: str) -> str:
    """The three rewrites on Python source text."""
    source = _FROM.sub(lambda m: f"{m.group('indent')}from mlmagics import ", source)
    source = _IMPORT.sub(
        lambda m: f"{m.group('indent')}import mlmagics" + (f" as {m.group('alias')}" if m.group("alias") else ""), source
    )
    return _VERSION.sub("mlmagics.VERSION", source)


def _changed_lines(cell: int, before: str, after: str) -> list[tuple[int, str, str]]:
    return [(cell, a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]


def migrate_notebook(notebook: nbformat.NotebookNode) -> Migration:
    """Rewrite `notebook`'s code cells in place; returns what changed."""
    migration = Migration()
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        if _WRITES_A_FILE.match(cell.source):
            migration.scripts_left.append(number)
            continue
        new = rewrite_source(cell.source)
        migration.changes += _changed_lines(number, cell.source, new)
        cell.source = new
    return migration


def migrate_file(path: str | Path, output: str | Path | None = None) -> tuple[Path, Migration]:
    """Rewrite a notebook (`.ipynb`) or a Python file; the result goes to `output`, by default next to it
    as `<name>.mlmagics<suffix>` (the original is never overwritten unless `output` names it)."""
    source = Path(path)
    target = Path(output) if output else source.with_name(f"{source.stem}.mlmagics{source.suffix}")
    if source.suffix == ".ipynb":
        notebook = nbformat.read(source, as_version=4)
        migration = migrate_notebook(notebook)
        nbformat.write(notebook, target)
    else:
        text = source.read_text()
        new = rewrite_source(text)
        migration = Migration(_changed_lines(0, text, new))
        target.write_text(new)
    return target, migration
