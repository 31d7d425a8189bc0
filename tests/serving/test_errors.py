"""Bad input of every kind gets one clear JSON error with v1's status, and the server stays up."""

from __future__ import annotations

import threading
import time

import pytest
import requests

PRIMARY, SECONDARY = "primary-key-0123456789", "secondary-key-9876543210"
CONFIG = {
    "auth_enabled": True,
    "primary_key": PRIMARY,
    "secondary_key": SECONDARY,
    "scoring_timeout_ms": 1000,
    "max_body_bytes": 1000,
}
AUTH = {"Authorization": f"Bearer {PRIMARY}"}

TEXT_SCRIPT = """
import json, time

def init():
    pass

def run(raw_data):
    d = json.loads(raw_data)
    if "sleep" in d:
        time.sleep(d["sleep"])
    if d.get("raise"):
        raise RuntimeError("scripted failure")
    return {"echo": d}
"""

SCHEMA_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]])))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType({"type": "ndarray", "dtype": "float64", "sum": 6.0}))
def run(data, scale=1.0):
    return {"type": type(data).__name__, "dtype": str(data.dtype), "sum": float(data.sum() * scale)}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory, module_serve, app_with):
    text = module_serve(app_with(tmp_path_factory.mktemp("text"), TEXT_SCRIPT), config=CONFIG, ready=False)
    schema = module_serve(app_with(tmp_path_factory.mktemp("schema"), SCHEMA_SCRIPT), config=CONFIG, ready=False)
    text.wait_ready()
    schema.wait_ready()
    return {"text": text, "schema": schema}


def test_schema_script_gets_converted_keyword_arguments(servers):
    r = servers["schema"].post(json_body={"data": [[1, 2, 3], [4, 5, 6]], "scale": 2}, headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"type": "ndarray", "dtype": "float64", "sum": 42.0}
    r = servers["schema"].post(json_body={"data": [[1, 2, 3]]}, headers=AUTH)  # scale falls back to run's default
    assert r.json()["sum"] == 6.0


def test_schema_script_reads_get_query_parameters_as_json(servers):
    r = servers["schema"].get("/score?data=[[1,1,1]]&scale=3", headers=AUTH)
    assert (r.status_code, r.json()["sum"]) == (200, 9.0)


def test_undecorated_run_gets_query_parameters_as_a_json_string_on_get(servers):
    r = servers["text"].get("/score?a=1&b=[1,2]&c=x&c=y", headers=AUTH)
    assert r.json() == {"echo": {"a": 1, "b": [1, 2], "c": ["x", "y"]}}


def _post(body=None, json_body=None, headers=AUTH, path="/score", method="POST"):
    def send(server) -> requests.Response:
        return requests.request(method, server.url + path, data=body, json=json_body, headers=headers, timeout=30)

    return send


BAD_INPUT = [
    # id, server, request, status, message (exact, or the start of it when it ends with "…")
    (
        "malformed_json",
        "schema",
        _post(b"{not json", headers={**AUTH, "Content-Type": "application/json"}),
        400,
        "POST body could not be decoded as JSON: …",
    ),
    (
        "empty_body",
        "schema",
        _post(b"", headers={**AUTH, "Content-Type": "application/json"}),
        400,
        "POST body is empty. Expecting a JSON dictionary.",
    ),
    ("body_not_an_object", "schema", _post(json_body=[1, 2]), 400, "POST body should be a JSON dictionary."),
    (
        "wrong_content_type",
        "schema",
        _post(b'{"data": [[1,2,3]]}', headers={**AUTH, "Content-Type": "text/plain"}),
        415,
        "Expects Content-Type to be application/json",
    ),
    ("missing_parameter", "schema", _post(json_body={"scale": 1}), 400, "A value is not provided for the 'data' parameter."),
    (
        "schema_mismatch",
        "schema",
        _post(json_body={"data": [[1, 2]]}),
        500,
        "An unexpected error occurred in scoring script. Check the logs for more info.",
    ),
    (
        "oversize_body",
        "text",
        _post(b'{"x": "' + b"a" * 2000 + b'"}'),
        413,
        "Request body is larger than the service's limit of 1000 bytes",
    ),
    ("invalid_utf8", "text", _post(b"\xff\xfe\xfd"), 400, "Input cannot be decoded as UTF-8: …"),
    ("unknown_route", "text", _post(path="/nope", method="GET"), 404, "The requested URL was not found on the server. …"),
    ("wrong_method", "text", _post(method="PUT"), 405, "The method is not allowed for the requested URL."),
    ("post_to_unknown_route", "text", _post(path="/predict"), 404, "The requested URL was not found on the server. …"),
    ("missing_key", "text", _post(json_body={"a": 1}, headers={}), 401, "Unauthorized: …"),
    ("wrong_key", "text", _post(json_body={"a": 1}, headers={"Authorization": "Bearer nope"}), 401, "Unauthorized: …"),
    ("wrong_scheme", "text", _post(json_body={"a": 1}, headers={"Authorization": f"Basic {PRIMARY}"}), 401, "Unauthorized: …"),
    (
        "script_exception",
        "text",
        _post(json_body={"raise": True}),
        500,
        "An unexpected error occurred in scoring script. Check the logs for more info.",
    ),
    ("timeout", "text", _post(json_body={"sleep": 5}), 500, "Scoring timeout after 1000 ms"),
    (
        "request_id_too_long",
        "text",
        _post(json_body={"a": 1}, headers={**AUTH, "x-request-id": "r" * 101}),
        431,
        "x-request-id must not exceed 100 characters",
    ),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_clear_json_error_and_the_server_stays_up(servers, case):
    _, which, send, status, message = case
    server = servers[which]
    started = time.monotonic()
    r = send(server)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"message"}
    if message.endswith("…"):
        assert body["message"].startswith(message[:-1]), body["message"]
    else:
        assert body["message"] == message
    if status != 431:
        assert r.headers["x-request-id"]
    assert time.monotonic() - started < 3, "an error must come fast (the timeout case takes 1 s)"
    # still serving
    assert server.get("/").text == "Healthy"
    ok = server.post(json_body={"data": [[1, 2, 3]]} if which == "schema" else {"ok": 1}, headers=AUTH)
    assert ok.status_code == 200


def test_unauthorized_answers_do_not_say_which_part_failed(servers):
    answers = {
        requests.post(servers["text"].url + "/score", json={}, headers=h, timeout=10).text
        for h in (
            {},
            {"Authorization": "Bearer x"},
            {"Authorization": f"Basic {PRIMARY}"},
            {"Authorization": f"Bearer {PRIMARY[:-1]}"},
        )
    }
    assert len(answers) == 1


def test_secondary_key_is_accepted(servers):
    r = servers["text"].post(json_body={"a": 1}, headers={"Authorization": f"Bearer {SECONDARY}"})
    assert r.status_code == 200


def test_script_exception_is_logged_with_its_traceback(servers):
    servers["text"].post(json_body={"raise": True}, headers=AUTH)
    errors = [r for r in servers["text"].log_records() if r["level"] == "ERROR" and "scripted failure" in r["msg"]]
    assert errors and 'raise RuntimeError("scripted failure")' in errors[-1]["traceback"]
    frames = [line for line in errors[-1]["traceback"].splitlines() if line.strip().startswith('File "')]
    assert frames and all("mlmagics/serving" not in f for f in frames), "the script's frames, not the server's"


def test_overload_answers_503_with_retry_after_within_the_wait_limit(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, TEXT_SCRIPT), config={"max_request_wait_time": 300})
    slow = threading.Thread(target=server.post, kwargs={"json_body": {"sleep": 1.5}})
    slow.start()
    time.sleep(0.3)  # the slow request holds the only worker
    started = time.monotonic()
    r = server.post(json_body={"a": 1})
    waited = time.monotonic() - started
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["message"].startswith("Too many requests for service ML service (overloaded)")
    assert 0.25 < waited < 1.0, "refused when the wait limit passed, not when the worker freed up"
    slow.join()
    assert server.post(json_body={"a": 1}).status_code == 200


def test_the_keys_never_reach_the_log(servers):
    for headers in (AUTH, {"Authorization": f"Bearer {SECONDARY}"}, {"Authorization": f"Basic {PRIMARY}x"}):
        servers["text"].post(json_body={"raise": True}, headers=headers)
    time.sleep(0.15)  # the server flushes its log every 50 ms
    log = servers["text"].log()
    assert "scripted failure" in log
    assert PRIMARY not in log and SECONDARY not in log
