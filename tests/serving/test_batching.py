"""Adaptive batching (mlmagics/serving/batching.py): concurrent requests' rows in one run() call, each request
answered on its own — on real servers over HTTP on 127.0.0.1, with bounded loads."""

from __future__ import annotations

import concurrent.futures as cf
import json

import pytest
import requests

from mlmagics.core import LocalWebservice
from mlmagics.core.configs import InvalidConfiguration
from mlmagics.serving.batching import CostModel, Plan, Unsplittable

# run() reports how many rows its call had, so a test sees the batching from the answers alone
NUMPY_SCRIPT = """
import os, time
import numpy as np
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("scale", StandardPythonParameterType(1.0))
@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
def run(data, scale=1.0):
    time.sleep(0.003)  # a model's fixed cost per call
    if (data < 0).any():
        raise ValueError("negative input")
    return {"sum": (data.sum(axis=1) * scale).tolist(), "call_rows": [int(len(data))] * len(data)}
"""

JSON_STRING_SCRIPT = """
import json
import numpy as np
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
def run(data):
    return json.dumps(data.sum(axis=1).tolist())  # v1's double encoding
"""

SCALAR_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
def run(data):
    return float(data.sum())  # one number per call: cannot be split by rows
"""

LISTWISE_SCRIPT = """
import json, time
from mlmagics.serving.batching import batched

def init():
    pass

@batched(max_batch_size=16)
def run(inputs):
    time.sleep(0.003)
    out = []
    for text in inputs:
        x = json.loads(text)["x"]
        out.append({"double": 2 * x, "call_size": len(inputs)})
    if any(json.loads(t)["x"] == "short" for t in inputs):
        return out[:-1]  # one answer short: a broken @batched run
    return out
"""

TEXT_SCRIPT = """
def init():
    pass

def run(raw):
    return raw
"""


JSON_HEADERS = {"Content-Type": "application/json"}


def _post_many(url: str, bodies: list, workers: int = 32) -> list[requests.Response]:
    with requests.Session() as session, cf.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: session.post(url + "/score", data=json.dumps(b), headers=JSON_HEADERS, timeout=30),
                             bodies))  # fmt: skip


@pytest.fixture
def server_of(serve, app_with, tmp_path):
    """`server_of(script, **config)`: a scoring server of `script` (each in a folder of its own)."""
    count = iter(range(100))

    def start(script: str, **config):
        return serve(app_with(tmp_path / f"s{next(count)}", script), config=config)

    return start


@pytest.fixture
def batching_server(server_of):
    return lambda script, **config: server_of(script, **{"max_batch_size": 64, "max_batch_latency_ms": 10, **config})


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows(batching_server):
    server = batching_server(NUMPY_SCRIPT)
    bodies = [{"data": [[i, 1.0]] * (1 + i % 3)} for i in range(300)]
    answers = _post_many(server.url, bodies)
    assert [a.status_code for a in answers] == [200] * 300
    for i, answer in enumerate(answers):
        assert answer.json()["sum"] == [i + 1.0] * (1 + i % 3), f"request {i} got another request's rows"
    rows_per_call = [a.json()["call_rows"][0] for a in answers]
    assert max(rows_per_call) > 3, "no call held more than one request's rows"
    assert max(rows_per_call) <= 64
    for answer, rows in zip(answers, rows_per_call, strict=True):  # a batched answer says its call's rows
        assert int(answer.headers.get("x-mlmagics-batch-rows", rows)) == rows
    assert sum("x-mlmagics-batch-rows" in a.headers for a in answers) > 0
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert "mlmagics_batch_rows_count" in metrics and "mlmagics_batch_wait_seconds_count" in metrics
    assert "batching up to 64 rows" in server.log()


def test_one_bad_request_fails_alone_and_the_others_are_answered(batching_server):
    server = batching_server(NUMPY_SCRIPT)
    bodies = [{"data": [[-1.0, 0.0]]} if i % 10 == 3 else {"data": [[i, 0.0]]} for i in range(100)]
    bodies[50] = {"dat": [[1.0, 2.0]]}  # a missing parameter: v1's 400, before any batch
    answers = _post_many(server.url, bodies)
    for i, answer in enumerate(answers):
        if i == 50:
            assert answer.status_code == 400
        elif i % 10 == 3:
            assert answer.status_code == 500 and answer.headers["x-ms-run-function-failed"] == "True"
        else:
            assert (answer.status_code, answer.json()["sum"]) == (200, [float(i)])


def test_a_request_larger_than_the_batch_is_served_alone_and_whole(batching_server):
    server = batching_server(NUMPY_SCRIPT, max_batch_size=8)
    big = {"data": [[1.0, 1.0]] * 50}
    answers = _post_many(server.url, [big] + [{"data": [[i, 0.0]]} for i in range(40)])
    assert answers[0].status_code == 200 and answers[0].json()["sum"] == [2.0] * 50
    assert answers[0].json()["call_rows"][0] == 50
    assert all(a.status_code == 200 and a.json()["call_rows"][0] <= 8 for a in answers[1:])


def test_requests_with_other_non_row_arguments_do_not_share_a_call(batching_server):
    server = batching_server(NUMPY_SCRIPT)
    bodies = [{"data": [[1.0, 1.0]], "scale": 1 + i % 2} for i in range(120)]
    answers = _post_many(server.url, bodies)
    assert [a.json()["sum"] for a in answers] == [[2.0 * (1 + i % 2)] for i in range(120)]


def test_a_json_string_answer_is_split_and_encoded_as_without_batching(batching_server, server_of):
    batched = batching_server(JSON_STRING_SCRIPT)
    plain = server_of(JSON_STRING_SCRIPT)
    bodies = [{"data": [[i, 1.0], [i, 2.0]]} for i in range(60)]
    assert [a.content for a in _post_many(batched.url, bodies)] == [a.content for a in _post_many(plain.url, bodies)]


def test_an_answer_that_cannot_be_split_turns_batching_off_and_every_answer_stays_right(batching_server):
    server = batching_server(SCALAR_SCRIPT)
    answers = _post_many(server.url, [{"data": [[i, 1.0]]} for i in range(80)])
    assert [a.json() for a in answers] == [i + 1.0 for i in range(80)]
    assert "batching turned off for this worker" in server.log()


def test_a_batched_script_takes_a_list_with_or_without_the_setting(batching_server, server_of):
    server = batching_server(LISTWISE_SCRIPT, max_batch_size=0)  # the decorator's own max_batch_size=16 applies
    answers = _post_many(server.url, [{"x": i} for i in range(100)])
    assert [a.json()["double"] for a in answers] == [2 * i for i in range(100)]
    assert 1 < max(a.json()["call_size"] for a in answers) <= 16
    alone = server_of(LISTWISE_SCRIPT, max_batch_size=1)
    answer = requests.post(alone.url + "/score", json={"x": 21}, timeout=10)
    assert answer.json() == {"double": 42, "call_size": 1}
    short = requests.post(alone.url + "/score", json={"x": "short"}, timeout=10)
    assert short.status_code == 500 and "must return one answer per input" in alone.log()


def test_a_script_that_cannot_batch_says_so_and_serves_as_before(batching_server):
    server = batching_server(TEXT_SCRIPT)
    assert requests.post(server.url + "/score", data="hello", timeout=10).json() == "hello"
    assert "max_batch_size=64 has no effect: run() is neither inference-schema decorated nor @batched" in server.log()


# -- the pieces --------------------------------------------------------------------------------------------------
def test_the_cost_model_learns_the_fixed_part_of_a_call():
    model = CostModel()
    assert model.fixed == 0.0, "nothing learned: dispatch at once"
    for rows in (1, 4, 16, 64, 2, 32) * 3:
        model.observe(rows, 0.004 + 0.0001 * rows)
    assert model.fixed == pytest.approx(0.004, rel=0.05)


def test_split_cuts_lists_dicts_and_json_strings_by_rows_and_refuses_the_rest():
    plan = Plan(["data"], listwise=False)
    assert plan.split([1, 2, 3, 4, 5], [2, 3]) == [[1, 2], [3, 4, 5]]
    assert plan.split({"a": [1, 2, 3], "b": [4, 5, 6]}, [1, 2]) == [{"a": [1], "b": [4]}, {"a": [2, 3], "b": [5, 6]}]
    assert plan.split("[1, 2, 3]", [2, 1]) == ["[1, 2]", "[3]"]
    for value in (7, [1, 2], "not json", {"a": [1]}):
        with pytest.raises(Unsplittable):
            plan.split(value, [2, 1])


def test_the_deploy_configuration_carries_the_batching_settings():
    config = LocalWebservice.deploy_configuration(max_batch_size=32, max_batch_latency_ms=5)
    settings = config.runtime_settings("svc", "/keys.json")
    assert (settings["max_batch_size"], settings["max_batch_latency_ms"]) == (32, 5.0)
    assert "max_batch_size" not in LocalWebservice.deploy_configuration().runtime_settings("svc", "/keys.json")
    with pytest.raises(InvalidConfiguration, match="max_batch_size must be greater than zero"):
        LocalWebservice.deploy_configuration(max_batch_size=0)
    with pytest.raises(InvalidConfiguration, match=r"max_batch_latency_ms must be a number of milliseconds in \[0, 60000\]"):
        LocalWebservice.deploy_configuration(max_batch_latency_ms=-1)
    with pytest.raises(InvalidConfiguration, match="max_batch_size must be a whole number of rows up to 100000"):
        LocalWebservice.deploy_configuration(max_batch_size=10**9)


def test_the_bench_summary_says_which_batch_sizes_answered():
    from mlmagics.display import BenchResult

    result = BenchResult("svc", [1.0, 2.0, 3.0], 0, 1.0, 8, batch_rows=[4, 8, 8])
    assert result.summary().endswith("; batched: 3 answers from calls of 4–8 rows (median 8)")
    assert "batched" not in BenchResult("svc", [1.0], 0, 1.0, 1).summary()
