"""Workspace, model registry and images: versions, content, concurrency, refusals, validation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmagics.core import (
    ConflictError,
    ContainerImage,
    Image,
    ImageException,
    Model,
    ModelNotFoundException,
    NotFoundError,
    UserError,
)


def test_register_a_file_and_a_folder_with_auto_incremented_versions(ws, tmp_path, write):
    file = write(tmp_path / "model.pkl", "abc")
    folder = tmp_path / "bundle"
    write(folder / "weights.bin", "w")
    write(folder / "sub" / "vocab.txt", "v")
    m1 = Model.register(ws, file, "m", tags={"key": "0.1"}, description="test")
    m2 = Model.register(ws, folder, "m")
    assert (m1.id, m2.id) == ("m:1", "m:2")
    assert Model(ws, "m").version == 2 and Model(ws, id="m:1").tags == {"key": "0.1"}
    assert m1.description == "test" and m1.size == 3
    assert (m2.path / "sub" / "vocab.txt").read_text() == "v"
    assert m1.source and m1.source.endswith("test_registry.py"), "records the calling file"


def test_registered_artifacts_are_read_only_and_stored_once_per_content(ws, tmp_path, write):
    file = write(tmp_path / "model.pkl", "same bytes")
    a, b = Model.register(ws, file, "a"), Model.register(ws, file, "b")
    assert a.path == b.path and a.digest == b.digest
    assert not os.stat(a.path).st_mode & 0o222
    a.delete()
    assert b.path.exists(), "still used by b"
    b.delete()
    assert not b.path.exists()


def test_download_copies_the_model_out(ws, tmp_path, write):
    m = Model.register(ws, write(tmp_path / "model.pkl", "abc"), "m")
    out = Path(m.download(tmp_path / "restored"))
    assert out.read_text() == "abc"
    with pytest.raises(ConflictError, match="already exists; pass exist_ok=True"):
        m.download(tmp_path / "restored")
    m.download(tmp_path / "restored", exist_ok=True)


def test_list_filters_by_name_tags_and_latest(ws, tmp_path, write):
    f = write(tmp_path / "m.pkl", "x")
    Model.register(ws, f, "a", tags={"stage": "dev"})
    Model.register(ws, f, "a", tags={"stage": "prod"})
    Model.register(ws, f, "b", tags={"stage": "prod"})
    assert [m.id for m in Model.list(ws)] == ["a:2", "a:1", "b:1"]
    assert [m.id for m in Model.list(ws, name="a")] == ["a:2", "a:1"]
    assert [m.id for m in Model.list(ws, tags=[["stage", "prod"]])] == ["a:2", "b:1"]
    assert [m.id for m in Model.list(ws, tags={"stage": "dev"})] == ["a:1"]
    assert [m.id for m in Model.list(ws, latest=True)] == ["a:2", "b:1"]


REGISTER = """
import sys
from mlmagics.core import Model, Workspace
ws = Workspace(sys.argv[1])
for _ in range(int(sys.argv[3])):
    print(Model.register(ws, sys.argv[2], "shared").version, flush=True)
"""


def test_concurrent_registrations_from_8_processes_lose_and_repeat_no_version(ws, tmp_path, write):
    file = write(tmp_path / "m.pkl", "x")
    procs = [
        subprocess.Popen([sys.executable, "-c", REGISTER, str(ws.path), str(file), "5"], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    versions = [int(v) for p in procs for v in p.communicate(timeout=120)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(versions) == list(range(1, 41))
    assert sorted(m.version for m in Model.list(ws, name="shared")) == list(range(1, 41))


def test_versions_are_never_reused_after_a_delete(ws, tmp_path, write):
    file = write(tmp_path / "m.pkl", "x")
    Model.register(ws, file, "m")
    Model.register(ws, file, "m").delete()
    assert Model.register(ws, file, "m").version == 3


def test_model_delete_is_refused_while_an_image_uses_it(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    with pytest.raises(ConflictError, match=r"model tiny:1 is used by image echo:1; delete that image first"):
        image.models[0].delete()
    image.delete()
    image.models  # noqa: B018 - the reference list stays readable
    Model(ws, "tiny").delete()
    with pytest.raises(ModelNotFoundException, match="model tiny is not registered"):
        Model(ws, "tiny")


def test_image_versions_snapshot_the_script_and_pin_the_environment(ws, tmp_path, echo_image):
    app = tmp_path / "app"
    first = echo_image(ws, app, version="v1")
    second = echo_image(ws, app, version="v2")
    assert (first.id, second.id) == ("echo:1", "echo:2")
    assert "VERSION = 'v1'" in (first.app_dir / "score.py").read_text(), "the snapshot does not follow later edits"
    assert Image(ws, id="echo:1").model_ids == ["tiny:1"]
    assert first.environment.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert not os.stat(first.app_dir / "score.py").st_mode & 0o222


def test_environment_pins_requirements_to_the_versions_installed_here(ws, tmp_path, monkeypatch, write):
    import joblib
    import numpy
    import sklearn
    from sklearn.linear_model import LinearRegression

    monkeypatch.chdir(tmp_path)
    joblib.dump(LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0]), tmp_path / "lr.pkl")
    model = Model.register(ws, tmp_path / "lr.pkl", "lr")
    write(tmp_path / "score.py", "import joblib, numpy\ndef init(): pass\ndef run(x): return x\n")
    inferred = Image.create(ws, "lr", [model], ContainerImage.image_configuration("score.py"))
    assert f"numpy=={numpy.__version__}" in inferred.environment.requirements
    assert f"scikit-learn=={sklearn.__version__}" in inferred.environment.requirements, "read from the pickle"
    write(tmp_path / "requirements.txt", "numpy\njoblib\nazureml-defaults\n")
    declared = ContainerImage.image_configuration("score.py", requirements="requirements.txt")
    with pytest.raises(
        ImageException,
        match=r"the model pickles need scikit-learn, which the image's requirements do not "
        rf"list; add 'scikit-learn=={sklearn.__version__}'",
    ):
        Image.create(ws, "lr", [model], declared)
    write(tmp_path / "requirements.txt", "numpy\njoblib\nscikit-learn\nazureml-defaults\n")
    image = Image.create(ws, "lr", [model], declared)
    assert image.environment.requirements == [
        f"numpy=={numpy.__version__}",
        f"joblib=={joblib.__version__}",
        f"scikit-learn=={sklearn.__version__}",
    ]
    assert image.environment.dropped == ["azureml-defaults"], "the runtime provides what azureml-defaults did"


def test_conda_file_becomes_pip_requirements(ws, tmp_path, monkeypatch, write):
    import numpy

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "score.py", "import numpy\ndef init(): pass\ndef run(x): return x\n")
    write(
        tmp_path / "myenv.yml",
        """\
        name: project_environment
        dependencies:
          - python=3.6.2
          - numpy
          - pip:
            - azureml-defaults
            - inference-schema[numpy-support]
        """,
    )
    image = Image.create(ws, "conda", [], ContainerImage.image_configuration("score.py", conda_file="myenv.yml"))
    env = image.environment
    assert env.source == "conda" and env.python == "3.6"
    assert env.requirements[0] == f"numpy=={numpy.__version__}"
    assert env.requirements[1].startswith("inference-schema[numpy-support]==")


def test_preflight_fails_image_creation_in_seconds_with_the_reasons(ws, tmp_path, monkeypatch, write):
    monkeypatch.chdir(tmp_path)
    cases = {
        "def init(:\n": "syntax error",
        "def init(): pass\n": "has no run() function",
        "def init(): pass\ndef run(*a): pass\n": "run() cannot accept positional-only arguments, *args, or **kwargs.",
        "import no_such_module_here\ndef init(): pass\ndef run(x): pass\n": "imports .no_such_module_here., which is not",
        "from azureml.core import Workspace\ndef init(): pass\ndef run(x): pass\n": "the scoring runtime offers only Model there",
        (
            "from inference_schema.schema_decorators import input_schema\n"
            "from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType\n"
            "def init(): pass\n@input_schema('data', StandardPythonParameterType(1))\ndef run(raw_data): pass\n"
        ): "@input_schema('data', ...) names a parameter that run(raw_data) does not have",
    }
    for source, reason in cases.items():
        write(tmp_path / "score.py", source)
        started = time.monotonic()
        with pytest.raises(ImageException, match=reason.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
            Image.create(ws, "bad", [], ContainerImage.image_configuration("score.py"))
        assert time.monotonic() - started < 3
    assert Image.list(ws) == [], "no version allocated for a failed image"


def test_image_config_validation_messages(tmp_path, monkeypatch, write):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "score.py", "def init(): pass\ndef run(x): pass\n")
    write(tmp_path / "my-script.py", "")
    write(tmp_path / "req.txt", "numpy\n")
    write(tmp_path / "env.yml", "dependencies: []\n")
    bad = [
        ({"execution_script": "/abs/score.py"}, "must be a relative path inside the current directory"),
        ({"execution_script": "missing.py"}, "execution_script 'missing.py' does not exist"),
        ({"execution_script": "req.txt"}, "must be a .py file"),
        ({"execution_script": "my-script.py"}, "must be a valid Python module name"),
        ({"execution_script": "score.py", "runtime": "java"}, "runtime 'java' is not supported"),
        (
            {"execution_script": "score.py", "conda_file": "env.yml", "requirements": "req.txt"},
            "give conda_file or requirements, not both",
        ),
        ({"execution_script": "score.py", "conda_file": "nope.yml"}, "conda_file 'nope.yml' does not exist"),
        ({"execution_script": "score.py", "dependencies": ["nope"]}, "dependency 'nope' does not exist"),
        ({"execution_script": "score.py", "runtime": "spark-py", "base_image": "x"}, "custom base_image is only supported"),
        ({"execution_script": "score.py", "cuda_version": "8.0"}, "cuda_version must be one of 10.0, 9.0, 9.1"),
    ]
    for kwargs, message in bad:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ContainerImage.image_configuration(**kwargs)


def test_names_are_validated(ws, tmp_path, write):
    file = write(tmp_path / "m.pkl", "x")
    with pytest.raises(UserError, match="model name 'bad name' is not valid"):
        Model.register(ws, file, "bad name")
    with pytest.raises(UserError, match="model path 'nope.pkl' does not exist"):
        Model.register(ws, "nope.pkl", "m")
    with pytest.raises(UserError, match="tags must be a dict"):
        Model.register(ws, file, "m", tags=["a"])
    with pytest.raises(UserError, match="image name 'My_Image' is not valid"):
        Image.create(ws, "My_Image", [], None)
    with pytest.raises(NotFoundError, match=r"image nope:3 does not exist .* \(versions of nope: none\)"):
        Image(ws, id="nope:3")
    with pytest.raises(UserError, match="must look like name:version"):
        Model(ws, id="m:latest")


def test_who_made_a_model_is_recorded_bounded_and_shown_as_one_line(ws, tmp_path, write, monkeypatch):
    monkeypatch.setenv("MLMAGICS_SOURCE", "train.ipynb" + "x" * 1_000_000)  # the environment has no bound of its own
    monkeypatch.setenv("MLMAGICS_CI_JOB", "nightly job 7")
    model = Model.register(ws, write(tmp_path / "m.txt", "w"), "m")
    again = Model(ws, "m")
    assert again.created_by["source"].startswith("train.ipynb") and len(again.created_by["source"]) == 500
    assert len(again.source) == 500
    assert again.serialize()["createdByText"] == f"{again.created_by['user']}@{again.created_by['host']} (nightly job 7)"
    assert model.created_by == again.created_by
