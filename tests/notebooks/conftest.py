"""The notebooks in notebooks/ run as a user runs them: papermill, a real kernel (notebook_helpers.py)."""

from __future__ import annotations

import pytest

from .notebook_helpers import run_notebook as _run_notebook


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test in this folder is a notebook test (pytest calls this hook with the conftest files of the test's own
    folder, so it marks this folder's tests only)."""
    item.add_marker(pytest.mark.notebook)


@pytest.fixture(scope="session")
def run_notebook():
    """`run_notebook(notebook, tmp_path, timeout=300, **parameters)`: execute the notebook in tmp_path with its own
    workspace and the given values in its parameters cell; returns (its summary, the executed notebook)."""
    return _run_notebook
