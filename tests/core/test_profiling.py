"""Model.profile measures a real deployment: requests sent, latency percentiles, CPU and memory, a recommendation."""

from __future__ import annotations

import json

import joblib
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from mlmagics import Environment, InferenceConfig, Model, UserError, Webservice

SCORE = """
import json, os, joblib, numpy as np
def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "ridge.pkl"))
def run(data):
    return model.predict(np.array(json.loads(data)["data"])).tolist()
"""


@pytest.fixture
def setup(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(X, y), "ridge.pkl")
    (tmp_path / "score.py").write_text(SCORE)
    env = Environment("ridge-env")
    env.python.conda_dependencies.add_pip_package("scikit-learn")
    rows = [json.dumps({"data": X[i : i + 1].tolist()}) for i in range(20)]
    return Model.register(ws, "ridge.pkl", "ridge"), InferenceConfig(entry_script="score.py", environment=env), rows


def test_a_local_profile_measures_and_recommends(ws, setup, capsys):
    model, config, rows = setup
    profile = Model.profile(ws, "ridge-profile", [model], config, rows, description="sizing")
    profile.target, profile.duration_s = "local", 3
    profile.wait_for_completion(show_output=True)
    details = profile.get_details()

    assert profile.state == "Succeeded", profile.error
    assert details["successQueries"] == details["totalQueries"] >= len(rows), "every row sent, at least once"
    assert details["successRate"] == 100.0
    assert 0 < details["latencyPercentile50InMs"] <= details["latencyPercentile99InMs"] <= details["latencyPercentile999InMs"]
    assert details["measuredQueriesPerSecond"] > 0
    assert details["maxUtilizedMemoryInGB"] > 0.01, "a Python server with scikit-learn loaded uses tens of MB"
    assert details["recommendedMemoryInGB"] >= round(details["maxUtilizedMemoryInGB"] * 1.25, 1) >= 0.1
    assert details["recommendedCpu"] >= 0.1 and profile.recommended_cpu == details["recommendedCpu"]
    assert "does not enforce cpu and memory_in_gb" in capsys.readouterr().out, "the stand-in is said"
    assert not Webservice.list(ws), "the profiling deployment is removed afterwards"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile_name": ""}, "profile_name cannot be None or empty."),
        ({"cpu": 4}, "Expected cpu value is between 0.1 and 3.5. Provided: 4"),
        ({"memory_in_gb": 0.05}, "Expected memory value is between 0.1 and 15.0. Provided: 0.05"),
        ({"input_dataset": None}, "Dataset not provided. Profiling required a dataset with sample input data."),
        ({"input_dataset": []}, "Empty Dataset."),
    ],
)
def test_v1_checks(ws, setup, kwargs, message):
    model, config, rows = setup
    arguments = {"profile_name": "p", "input_dataset": rows, **kwargs}
    with pytest.raises(UserError) as raised:
        Model.profile(ws, models=[model], inference_config=config, **arguments)
    assert str(raised.value).startswith(message)


def test_a_text_file_is_one_request_per_line(ws, setup, tmp_path):
    model, config, rows = setup
    (tmp_path / "requests.txt").write_text("\n".join(rows) + "\n\n")
    profile = Model.profile(ws, "from-file", [model], config, str(tmp_path / "requests.txt"))
    assert profile.rows == rows


def test_the_request_bodies_are_bounded_and_a_bad_file_is_one_line(tmp_path, monkeypatch):
    from mlmagics.core import profiling

    monkeypatch.setattr(profiling, "MAX_ROW_BYTES", 100)
    monkeypatch.setattr(profiling, "MAX_TOTAL_BYTES", 1000)
    monkeypatch.setattr(profiling, "MAX_REQUESTS", 50)
    assert len(profiling.requests_from(["x"] * 80)) == 50, "rows beyond MAX_REQUESTS are not kept"
    with pytest.raises(UserError, match="row 2 is 101 bytes"):
        profiling.requests_from(["ok", "y" * 101])
    with pytest.raises(UserError, match="more than 0 MiB of requests"):
        profiling.requests_from(["z" * 90] * 20)
    big = tmp_path / "big.txt"
    big.write_text("a\n" * 600)
    with pytest.raises(UserError, match="is larger than"):
        profiling.requests_from(str(big))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="cannot read input_dataset"):
        profiling.requests_from(binary)
