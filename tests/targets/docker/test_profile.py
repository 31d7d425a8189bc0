"""Model.profile on the Docker engine: the container gets the cpu and memory asked for, and is measured through the engine."""

from __future__ import annotations

import json

import joblib
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from mlmagics import Environment, InferenceConfig, Model, Webservice

SCORE = """import json, os, joblib, numpy as np
def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "ridge.pkl"))
def run(data):
    return model.predict(np.array(json.loads(data)["data"])).tolist()
"""


@pytest.mark.slow  # builds an image
def test_a_docker_profile_runs_at_the_size_asked_for(docker_ws, docker_client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(X, y), "ridge.pkl")
    (tmp_path / "score.py").write_text(SCORE)
    env = Environment("profile-env")
    env.python.conda_dependencies.add_pip_package("scikit-learn")
    env.python.conda_dependencies.add_pip_package("joblib")
    rows = [json.dumps({"data": X[i : i + 1].tolist()}) for i in range(10)]
    model = Model.register(docker_ws, "ridge.pkl", "ridge")
    config = InferenceConfig(entry_script="score.py", environment=env)
    profile = Model.profile(docker_ws, "ridge-docker", [model], config, rows, cpu=0.5, memory_in_gb=0.5)
    profile.duration_s = 3
    seen = {}
    original = Webservice.deploy_from_image

    def record(*args, **kwargs):  # the configuration the profile deploys with, as the engine will get it
        service = original(*args, **kwargs)
        seen["limits"] = service.container.attrs["HostConfig"]["NanoCpus"], service.container.attrs["HostConfig"]["Memory"]
        return service

    monkeypatch.setattr(Webservice, "deploy_from_image", staticmethod(record))
    profile.wait_for_completion()
    details = profile.get_details()

    assert profile.state == "Succeeded" and profile.target == "docker", profile.error
    assert seen["limits"] == (500_000_000, 512 * 1024**2), "cpu and memory_in_gb enforced by the engine"
    assert details["successQueries"] == details["totalQueries"] >= len(rows)
    assert 0 < details["maxUtilizedCpu"] and 0.01 < details["maxUtilizedMemoryInGB"] < 0.5, "read from the engine's stats"
    assert details["recommendedMemoryInGB"] >= 0.1 and details["recommendedCpu"] >= 0.1
    assert not Webservice.list(docker_ws), "the profiling container is removed afterwards"
