"""What the core must never lose or leak: artifacts under crashes, concurrency and a full disk;
model folders that link out, loop or block; names that are not names."""

from __future__ import annotations

import pytest
from core_helpers import write

from mlmagics.core import Image, Model, UserError, Workspace
from mlmagics.serving.compat.azureml.core.model import InvalidModelName
from mlmagics.serving.compat.azureml.core.model import Model as ScoringModel


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


# -- names and paths -----------------------------------------------------------------------------------------
def test_names_are_checked_as_whole_strings(ws, tmp_path):
    file = write(tmp_path / "m.pkl", "x")
    with pytest.raises(UserError, match="model name 'm\\\\n' is not valid"):
        Model.register(ws, file, "m\n")
    with pytest.raises(UserError, match="image name 'img\\\\n' is not valid"):
        Image.create(ws, "img\n", [], None)
    from mlmagics.core.services import validate_service_name

    with pytest.raises(UserError, match="service name 'svc-a\\\\n' is not valid"):
        validate_service_name("svc-a\n")
    assert Model.list(ws) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../etc/passwd", "..", ""])
def test_get_model_path_refuses_names_that_leave_the_model_folder(tmp_path, monkeypatch, name):
    models = tmp_path / "app" / "azureml-models"
    write(models / "m" / "1" / "m.pkl", "x")
    monkeypatch.chdir(tmp_path / "app")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(models))
    with pytest.raises(InvalidModelName, match="cannot be absolute or leave the model folder"):
        ScoringModel.get_model_path(name)
    with pytest.raises(UserError, match="is not valid"):
        Model.get_model_path(name, _workspace=Workspace(tmp_path / "ws"))
    assert ScoringModel.get_model_path("m") == str(models / "m" / "1" / "m.pkl"), "a plain name still works"


