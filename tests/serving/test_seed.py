"""The seed document's three scoring scripts, served unchanged, answer as v1 answered them."""

from __future__ import annotations

import json

import numpy as np

SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def test_seed_json_script_predicts_with_double_encoded_answer(tmp_path, serve, sklearn_mnist, copy_seed, place_model):
    model_file, model = sklearn_mnist
    app = copy_seed(tmp_path, "score_json.py")
    server = serve(app, model_dir=str(place_model(app, model_file)))
    # the seed's client sends bytes of json.dumps(...), as service.run(input_data=...) does
    r = server.post(data=bytes(json.dumps(SAMPLE), encoding="utf8"), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert isinstance(answer, str), "v1 JSON-encodes the string run() returns: the double encoding"
    assert json.loads(answer) == model.predict(np.array(SAMPLE["data"])).tolist()
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert float(r.headers["x-ms-run-fn-exec-ms"]) > 0


def test_seed_json_script_runs_despite_removed_sklearn_externals_joblib(tmp_path, serve, sklearn_mnist, copy_seed, place_model):
    """scikit-learn 0.23 removed sklearn.externals.joblib; the shim maps it to joblib and says so."""
    import importlib.util

    assert importlib.util.find_spec("sklearn.externals.joblib") is None  # really gone in this environment
    model_file, _ = sklearn_mnist
    app = copy_seed(tmp_path, "score_json.py")
    server = serve(app, model_dir=str(place_model(app, model_file)))
    assert server.get("/ready").json()["status"] == "Ready"
    assert any("sklearn.externals.joblib" in rec.get("msg", "") for rec in server.log_records())


def test_seed_binary_script_reverses_post_body_and_echoes_get_path(tmp_path, serve, copy_seed):
    app = copy_seed(tmp_path, "score_binary.py")
    server = serve(app)
    r = server.post(data=b"abcdef")
    assert (r.status_code, r.content) == (200, b"fedcba")
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    r = server.get("/score?x=1&y=2")
    assert (r.status_code, r.text) == (200, "/score?x=1&y=2")
    messages = [rec["msg"] for rec in server.log_records() if rec.get("logger") == "print"]
    assert "This is init()" in messages and "This is run()" in messages
    assert any(m.startswith("Request: [<AMLRequest") for m in messages)


def test_seed_binary_script_handles_arbitrary_bytes(tmp_path, serve, copy_seed):
    app = copy_seed(tmp_path, "score_binary.py")
    server = serve(app)
    payload = bytes(range(256)) * 40
    r = server.post(data=payload, headers={"Content-Type": "application/octet-stream"})
    assert r.content == payload[::-1]


def test_seed_schema_script_answers_as_v1_and_is_linted(tmp_path, serve, copy_seed, place_model):
    """As printed, the seed decorates 'data' but run() takes 'raw_data': v1 answers 400 and 500."""
    app = copy_seed(tmp_path, "score_schema.py")
    model_file = tmp_path / "m.pkl"
    import joblib
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0]), model_file)
    server = serve(app, model_dir=str(place_model(app, model_file)))

    r = server.post(json_body={"data": [[1.8]]})
    assert r.status_code == 400
    assert r.json() == {"message": "A value is not provided for the 'raw_data' parameter."}

    r = server.post(json_body={"raw_data": json.dumps({"data": [[1.8]]})})
    assert r.status_code == 500
    assert r.json()["message"] == "An unexpected error occurred in scoring script. Check the logs for more info."
    assert r.headers["x-ms-run-function-failed"] == "True"

    ready = server.get("/ready").json()
    assert ready["input"] == "schema"
    assert "@input_schema('data', ...) names a parameter that run(raw_data) does not have" in ready["warnings"][0]
    assert any("Rename run's parameter to 'data'" in rec["msg"] for rec in server.log_records() if rec["level"] == "WARNING")

    definitions = server.get("/swagger.json").json()["definitions"]
    assert set(definitions["ServiceInput"]["properties"]) == {"raw_data", "data"}
    assert definitions["ServiceOutput"]["format"] == "numpy.ndarray"


def test_seed_scripts_are_the_seed_documents_code(seed_scripts):
    """Guard against 'fixing' the seed copies: they must keep the seed's quirks."""
    assert "from sklearn.externals import joblib" in (seed_scripts / "score_json.py").read_text()
    assert "def run(raw_data):" in (seed_scripts / "score_schema.py").read_text()
    assert "@input_schema('data', NumpyParameterType(input_sample))" in (seed_scripts / "score_schema.py").read_text()
