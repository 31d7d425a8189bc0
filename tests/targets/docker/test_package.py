"""Model.package on the Docker engine: an image built from an InferenceConfig, or its build context saved to a folder."""

from __future__ import annotations

import subprocess

import joblib
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from mlmagics import Environment, InferenceConfig, Model, WebserviceException

SCORE = """import os, joblib
def init():
    global m
    m = joblib.load(os.path.join(os.getenv('AZUREML_MODEL_DIR'), 'r.pkl'))
def run(data):
    return 'ok'
"""


@pytest.fixture
def packaged(docker_ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    joblib.dump(Ridge().fit(*load_diabetes(return_X_y=True)), "r.pkl")
    (tmp_path / "score.py").write_text(SCORE)
    env = Environment("pkg-env")
    env.python.conda_dependencies.add_pip_package("scikit-learn")
    env.python.conda_dependencies.add_pip_package("joblib")
    return Model.register(docker_ws, "r.pkl", "ridge"), InferenceConfig(entry_script="score.py", environment=env)


@pytest.mark.slow  # builds an image
def test_package_builds_an_image_in_the_engine(docker_ws, docker_client, packaged, capsys):
    model, config = packaged
    package = Model.package(docker_ws, [model], config, image_name="ridge-pkg")
    assert package.state == "NotStarted" and package.location is None, "v1: package() submits, wait_for_creation() waits"
    package.wait_for_creation(show_output=True)
    assert package.state == "Succeeded" and "Package creation Succeeded" in capsys.readouterr().out
    built = docker_client.images.get(package.location)
    assert built.labels["org.mlmagics.models"] == model.id
    assert package.serialize() == {"generateDockerfile": False, "state": "Succeeded", "location": package.location}
    with pytest.raises(WebserviceException, match="Docker images cannot be saved to a local directory. Use pull\\(\\) instead."):
        package.save("anywhere")


@pytest.mark.slow  # docker build of the saved context
def test_a_dockerfile_package_saves_a_context_that_builds(docker_ws, docker_client, packaged, tmp_path, image_repo):
    model, config = packaged
    package = Model.package(docker_ws, [model], config, generate_dockerfile=True)
    package.wait_for_creation()
    with pytest.raises(WebserviceException, match="A Dockerfile package cannot be pulled. Use save\\(\\) instead."):
        package.pull()
    package.save(tmp_path / "context")
    assert (tmp_path / "context" / "Dockerfile").read_text().startswith("# syntax") or "FROM " in (
        tmp_path / "context" / "Dockerfile").read_text()  # fmt: skip
    assert (tmp_path / "context" / "azureml-models" / "ridge" / str(model.version) / "r.pkl").is_file()
    tag = f"{image_repo}/saved-context:1"
    done = subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path / "context")], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
