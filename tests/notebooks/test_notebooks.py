"""Every notebook in notebooks/ runs top to bottom with papermill, as a user runs it, and does what it says.

Each notebook ends with a cell tagged `summary` that prints one JSON object; the checks below
assert on it (the service answered, with what) and on the files the notebook wrote
(notebook_helpers.py runs them, through the `run_notebook` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-5]-*.ipynb"))


@pytest.fixture
def execute(run_notebook):
    """`execute(notebook, tmp_path, **parameters)`: the summary the executed notebook printed."""

    def summary(notebook: Path, tmp_path: Path, **parameters) -> dict:
        return run_notebook(notebook, tmp_path, **parameters)[0]

    return summary


def test_every_notebook_is_clean_and_parameterised():
    assert [n.name for n in NOTEBOOKS][:5] == [
        "01-quickstart.ipynb",
        "02-schema-and-swagger.ipynb",
        "03-binary-data-rawhttp.ipynb",
        "04-python-api.ipynb",
        "05-autoscale-planning.ipynb",
    ]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: commit without outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no parameters cell"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{path.name}: starts with a title"


def test_01_quickstart(tmp_path, execute):
    summary = execute(ROOT / "notebooks" / "01-quickstart.ipynb", tmp_path, service_name="nb-quickstart")
    assert summary["first_status"] == 200
    assert summary["first_answer"] == summary["labels"] == [0, 1, 2, 3, 4]
    assert [row["digit"] for row in summary["second_answer"]] == summary["labels"], "the update is live"
    assert all(0 < row["probability"] <= 1 for row in summary["second_answer"])
    assert (tmp_path / "score.py").exists() and (tmp_path / "outputs" / "digits.pkl").exists()
    from mlmagics.core import Model, Webservice, Workspace

    ws = Workspace(tmp_path / "ws")
    assert Webservice.list(ws) == [] and Model.list(ws) == [], "the notebook cleaned up"


def test_02_schema_and_swagger(tmp_path, execute):
    summary = execute(ROOT / "notebooks" / "02-schema-and-swagger.ipynb", tmp_path, service_name="nb-schema")
    assert summary["good"] == summary["expected"]
    assert summary["missing"] == [400, "A value is not provided for the 'data' parameter."]
    assert summary["wrong_shape"][0] == 500
    assert summary["swagger_input"] == ["data", "scale"] == summary["form_fields"]
    assert isinstance(summary["form_answer"], list) and len(summary["form_answer"]) == 1
    assert "names a parameter that run(raw_data) does not have" in summary["seed_lint"][0]


def test_03_binary_data_rawhttp(tmp_path, execute):
    summary = execute(ROOT / "notebooks" / "03-binary-data-rawhttp.ipynb", tmp_path, service_name="nb-rawhttp")
    assert bytes.fromhex(summary["reversed"]) == b"\x00\x01binary\xff"[::-1]
    assert summary["get_path"] == "/score?x=1&y=2"
    assert summary["content_type"] == "text/html; charset=utf-8", "AMLResponse's default, as in v1"
    assert summary["upload"] == {"name": "blob.bin", "bytes": 16384, "sha256": summary["expected_sha256"], "label": "demo"}
    assert summary["upload_header"] == "16384"
    assert summary["refused"] == [400, {"error": "POST a file in the form field 'file'"}]


def test_04_python_api(tmp_path, execute):
    summary = execute(ROOT / "notebooks" / "04-python-api.ipynb", tmp_path, service_name="nb-python-api")
    assert isinstance(summary["prediction"], str), "v1's double encoding"
    assert json.loads(summary["prediction"]) == summary["expected"] == json.loads(summary["second"])
    assert summary["state"] == "Deleting"
    assert any("sklearn.externals.joblib" in w for w in summary["warnings"])
    assert summary["left"] == [0, 0, 0]


def test_05_autoscale_planning(tmp_path, execute):
    summary = execute(ROOT / "notebooks" / "05-autoscale-planning.ipynb", tmp_path, service_name="nb-autoscale")
    assert summary["seed_replicas"] == 286, "20 req/s x 10 s / 0.7 = 285.7 -> 286"
    assert summary["figure"] and (tmp_path / "replicas.png").stat().st_size > 1000
    assert summary["measured_p99_ms"] > 0
    seconds = summary["measured_p99_ms"] / 1000
    import math

    for row in summary["plan"]:
        assert row["replicas_at_70%"] == max(1, math.ceil(row["target_rps"] * seconds / 0.7 - 1e-9))
        assert row["replicas_at_30%"] >= row["replicas_at_70%"]
