"""The protocols other clients already speak (mlmagics/serving/protocols.py), tested with clients nobody here wrote:
Triton's `tritonclient[http]` against the Open Inference Protocol (KServe v2), MLflow's own `ScoringServerClient`
against `/invocations` — on real servers over HTTP on 127.0.0.1, next to v1's /score."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from tritonclient.utils import InferenceServerException

SCHEMA_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("scale", StandardPythonParameterType(1.0))
@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
@output_schema(NumpyParameterType(np.array([3.0])))
def run(data, scale=1.0):
    if (data < 0).any():
        raise ValueError("negative input")
    return (data.sum(axis=1) * scale).tolist()
"""

TEXT_SCRIPT = """
import json

def init():
    pass

def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return json.dumps([sum(r) for r in rows])  # v1's double encoding
"""

ECHO_SCRIPT = """
import json
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", StandardPythonParameterType([1]))
def run(data):
    return {"echo": json.dumps(data)}  # what run() got, as one BYTES output
"""

SHAPES_SCRIPT = """
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

ANSWERS = {"pairs": [(1, 2), (3, 4)], "ragged": [[1], [2, 3], []], "mixed": [[1, 2], 3], "scalar": 2.5}

def init():
    pass

@input_schema("kind", StandardPythonParameterType("pairs"))
def run(kind):
    return {"out": ANSWERS[kind]}
"""

FAILING_INIT = """
def init():
    raise RuntimeError("the model file is corrupt")

def run(raw_data):
    return raw_data
"""


@pytest.fixture
def server_of(server_of):
    """conftest.py's, serving the model the v2 protocol calls "iris" (the service's name)."""
    return lambda source, ready=True, **config: server_of(source, ready, **{"service_name": "iris", **config})


def _triton(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def _tensor(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "FP64")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_infers_and_reads_health_and_metadata(server_of, binary):
    client = _triton(server_of(SCHEMA_SCRIPT))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1.0")
    assert client.get_server_metadata()["name"] == "mlmagics"
    metadata = client.get_model_metadata("iris")
    assert metadata["inputs"][0] == {"name": "data", "datatype": "FP64", "shape": [-1, -1]}
    assert [i["name"] for i in metadata["inputs"]] == ["data", "scale"]
    data = np.array([[1.0, 2.0], [3.0, 4.5]])
    outputs = [triton.InferRequestedOutput("output0", binary_data=binary)]
    result = client.infer("iris", [_tensor("data", data, binary)], outputs=outputs, request_id="req-42")
    np.testing.assert_allclose(result.as_numpy("output0"), [3.0, 7.5])
    assert result.get_response()["id"] == "req-42" and result.get_response()["model_name"] == "iris"
    versioned = client.infer("iris", [_tensor("data", data, binary)], model_version="1.0")
    np.testing.assert_allclose(versioned.as_numpy("output0"), [3.0, 7.5])


def test_open_inference_errors_are_its_own(server_of):
    server = server_of(SCHEMA_SCRIPT)
    client = _triton(server)
    data = np.array([[1.0, 2.0]])
    with pytest.raises(InferenceServerException, match=r"\[404\] Model 'nope' is not served here"):
        client.infer("nope", [_tensor("data", data, False)])
    with pytest.raises(InferenceServerException, match=r"\[404\]"):
        client.infer("iris", [_tensor("data", data, False)], model_version="7")
    with pytest.raises(InferenceServerException, match=r"\[500\] An unexpected error occurred in scoring script"):
        client.infer("iris", [_tensor("data", -data, False)])
    url = server.url + "/v2/models/iris/infer"
    cases = {
        json.dumps({"inputs": [{"name": "data", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]}): "holds 4 elements",
        json.dumps({"inputs": [{"name": "other", "shape": [1], "datatype": "FP64", "data": [1]}]}): "unexpected inference input",
        json.dumps({"inputs": []}): "needs 'inputs'",
        json.dumps({"inputs": [{"name": "data", "shape": [10**9, 10**9], "datatype": "FP64", "data": []}]}): "too large",
        "not json": "not JSON",
    }
    for body, message in cases.items():
        answer = requests.post(url, data=body, timeout=10)
        assert answer.status_code == 400 and message in answer.json()["error"], (body, answer.text)
    assert requests.post(server.url + "/score", json={"data": [[1.0, 2.0]]}, timeout=10).json() == [3.0], "v1 unchanged"


def test_a_script_that_failed_is_not_ready_on_every_protocol(server_of):
    server = server_of(FAILING_INIT, ready=False)
    server.wait_ready()
    assert requests.get(server.url + "/v2/health/live", timeout=5).status_code == 200
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 503
    assert requests.get(server.url + "/ping", timeout=5).status_code == 404  # MLflow's answer
    infer = requests.post(server.url + "/v2/models/iris/infer", json={"inputs": []}, timeout=5)
    assert infer.status_code == 503 and "could not start" in infer.json()["error"]
    invocation = requests.post(server.url + "/invocations", json={"instances": [[1]]}, timeout=5)
    assert invocation.status_code == 503 and invocation.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_mlflows_client_scores_dataframes_and_arrays(server_of):
    server = server_of(SCHEMA_SCRIPT)
    host, port = server.url.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=10)
    assert client.get_version() == __import__("mlmagics").VERSION
    frame = pd.DataFrame([[1.0, 2.0], [5.0, 6.0]], columns=["a", "b"])
    assert client.invoke(frame).get_predictions(predictions_format="ndarray").tolist() == [3.0, 11.0]
    assert client.invoke(np.array([[1.0, 2.0]])).get_predictions(predictions_format="ndarray").tolist() == [3.0]
    assert client.invoke(np.array([[1.0, 2.0]]), params={"scale": 10.0}).get_predictions(
        predictions_format="ndarray").tolist() == [30.0]  # fmt: skip
    records = requests.post(server.url + "/invocations", json={"dataframe_records": [{"a": 1, "b": 2}]}, timeout=10)
    assert records.json() == {"predictions": [3.0]}
    csv = requests.post(server.url + "/invocations", data="a,b\n1,2\n3,4\n", headers={"Content-Type": "text/csv"}, timeout=10)
    assert csv.json() == {"predictions": [3.0, 7.0]}


def test_mlflows_errors_are_its_own(server_of):
    server = server_of(SCHEMA_SCRIPT)
    url = server.url + "/invocations"
    two = requests.post(url, json={"instances": [[1, 2]], "inputs": [[1, 2]]}, timeout=10)
    assert two.status_code == 400 and two.json()["error_code"] == "BAD_REQUEST"
    assert "exactly one of the input fields" in two.json()["message"]
    xml = requests.post(url, data="<a/>", headers={"Content-Type": "application/xml"}, timeout=10)
    assert xml.status_code == 415 and "only supports the following content types" in xml.json()["message"]
    failing = requests.post(url, json={"instances": [[-1.0, 0.0]]}, timeout=10)
    assert failing.status_code == 500 and failing.json()["error_code"] == "INTERNAL_ERROR"


def test_a_plain_v1_script_answers_mlflow_clients_with_its_data_rows(server_of):
    server = server_of(TEXT_SCRIPT)
    frame = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}
    answer = requests.post(server.url + "/invocations", json=frame, timeout=10)
    assert answer.json() == {"predictions": [3, 7]}, "run() got {'data': rows}; its JSON string answer is decoded"
    tensors = requests.post(server.url + "/v2/models/iris/infer", json={"inputs": [{"name": "raw_data", "shape": [1],
                            "datatype": "BYTES", "data": ["x"]}]}, timeout=10)  # fmt: skip
    assert tensors.status_code == 400 and "not named tensors: POST it to /score" in tensors.json()["error"]


def test_key_auth_covers_the_other_protocols_and_leaves_their_probes_open(server_of):
    server = server_of(SCHEMA_SCRIPT, auth_enabled=True, primary_key="k-primary-1", secondary_key="k-secondary-1")
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    for method, route in (("POST", "/v2/models/iris/infer"), ("GET", "/v2/models/iris"), ("POST", "/invocations")):
        assert requests.request(method, server.url + route, json={}, timeout=5).status_code == 401, route
    keyed = requests.post(server.url + "/invocations", json={"instances": [[1.0, 2.0]]},
                          headers={"Authorization": "Bearer k-primary-1"}, timeout=5)  # fmt: skip
    assert keyed.json() == {"predictions": [3.0]}


def test_the_openapi_document_lists_every_route_and_v1s_swagger_stays_v1s(server_of):
    server = server_of(SCHEMA_SCRIPT)
    openapi = requests.get(server.url + "/swagger.json?version=3", timeout=5).json()
    assert {"/v2/models/iris/infer", "/v2/health/ready", "/invocations", "/ping", "/score"} <= set(openapi["paths"])
    assert set(requests.get(server.url + "/swagger.json", timeout=5).json()["paths"]) == {"/", "/score", "/swagger.json"}


def test_batching_serves_every_protocol_in_the_same_calls(server_of):
    import concurrent.futures as cf

    server = server_of(SCHEMA_SCRIPT, max_batch_size=64)

    def call(i: int) -> list[float]:
        if i % 3 == 0:
            return requests.post(server.url + "/score", json={"data": [[i, 1.0]]}, timeout=30).json()
        if i % 3 == 1:
            return requests.post(server.url + "/invocations", json={"instances": [[i, 1.0]]}, timeout=30).json()["predictions"]
        body = {"inputs": [{"name": "data", "shape": [1, 2], "datatype": "FP64", "data": [i, 1.0]}]}
        return requests.post(server.url + "/v2/models/iris/infer", json=body, timeout=30).json()["outputs"][0]["data"]

    with cf.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(call, range(150)))
    assert answers == [[i + 1.0] for i in range(150)]


def test_requests_the_fuzzer_found_are_answered_and_end_no_worker(server_of):
    """Found by schemathesis (tests/serving/test_fuzz.py): each one once ended the worker that read it."""
    server = server_of(TEXT_SCRIPT)
    pids = server.worker_pids()
    found = [
        ("/invocations", {"dataframe_split": {"columns": [], "data": [None]}}, "a list of rows"),
        ("/invocations", {"dataframe_split": {"columns": [[1]], "data": [[1]]}}, "a list of column names"),
    ]
    for route, body, message in found:
        answer = requests.post(server.url + route, json=body, timeout=10)
        assert answer.status_code == 400 and message in answer.json()["message"], answer.text
    schema = server_of(SCHEMA_SCRIPT)
    for body in ({"inputs": [{"name": "data", "shape": [1, 2], "datatype": "FP64", "data": [1, 2], "parameters": []}]},
                 {"inputs": [{"name": "data", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "outputs": 7},
                 {"inputs": [{"name": "data", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "parameters": [1]}):
        answer = requests.post(schema.url + "/v2/models/iris/infer", json=body, timeout=10)
        assert answer.status_code == 400 and "error" in answer.json(), answer.text
    assert server.worker_pids() == pids


def _binary(inputs: list[dict], raw: bytes) -> tuple[bytes, dict[str, str]]:
    """A v2 request in the binary tensor extension: the JSON header, then `raw`."""
    header = json.dumps({"inputs": inputs}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def _data(**tensor) -> dict:
    return {"name": "data", "datatype": "FP64", **tensor}


def test_hostile_tensors_and_csv_get_a_clear_400_at_once(server_of):
    """Each once cost the worker minutes of CPU or gigabytes (a shape multiplied out, a binary tensor unpacked before
    its size was checked), ended in an unexpected exception logged CRITICAL, or was taken for what it was not."""
    server = server_of(SCHEMA_SCRIPT)
    pids = server.worker_pids()
    length = {"Inference-Header-Content-Length": "1"}
    v2 = [
        # 10**6 dimensions: multiplied out, a number of 10**6 bits — ~50 s of the worker's CPU, then a ValueError
        (json.dumps({"inputs": [_data(shape=[2] * 10**6, data=[1])]}), {}, "dimensions is too many (at most 32)"),
        (json.dumps({"inputs": [_data(shape=[10**9, 0], data=[])]}), {}, "the shape is too large"),  # 10**9 empty lists
        # 30 MB of UINT8 for a shape of one: checked before 30 million ints are made
        _binary([_data(shape=[1], datatype="UINT8", parameters={"binary_data_size": 30_000_000})], b"\0" * 30_000_000)
        + ("the shape's 1 UINT8 elements are 1",),
        _binary([_data(shape=[1, 2], parameters={"binary_data_size": 16})], b"\0" * 40) + ("24 bytes of the body follow",),
        _binary([_data(shape=[1, 2], parameters={"binary_data_size": True})], b"\0" * 16)
        + ("binary_data_size does not match",),
        _binary([_data(shape=[1], datatype="BYTES", parameters={"binary_data_size": 8})], b"\xe8\x03\0\0abcd")
        + ("BYTES element 0 runs past binary_data_size",),  # an element that claims 1000 bytes
        _binary([_data(shape=[1], datatype="BYTES", parameters={"binary_data_size": 7})], b"\1\0\0\0abc")
        + ("holds more than the shape's 1 BYTES elements",),
        (json.dumps({"inputs": [_data(shape=[1, 2], data=[1, 2])] * 2}), {}, "input 'data' is given twice"),
        # Inference-Header-Content-Length: '²' passes str.isdigit(), 5000 digits pass it too; int() refused both
        ('{"inputs": []}', {"Inference-Header-Content-Length": "\xb2"}, "Inference-Header-Content-Length does not match"),
        ('{"inputs": []}', {"Inference-Header-Content-Length": "9" * 5000}, "Inference-Header-Content-Length does not"),
        ('{"inputs": []}', {**length, "Inference-Header-Content-Length": "-1"}, "Inference-Header-Content-Length does not"),
    ]
    for body, headers, message in v2:
        started = time.monotonic()
        answer = requests.post(server.url + "/v2/models/iris/infer", data=body, headers=headers, timeout=60)
        assert (answer.status_code, message in answer.json().get("error", "")) == (400, True), (message, answer.text[:300])
        assert time.monotonic() - started < 5, message
    csv_errors = {
        b"": "the body is empty (it needs a header row)",
        b"a,b\n\xff,1\n": "'utf-8' codec can't decode",
        b"a,b\n" + b"1" * 200_000 + b",2\n": "field larger than field limit",
    }
    for body, message in csv_errors.items():
        answer = requests.post(server.url + "/invocations", data=body, headers={"Content-Type": "text/csv"}, timeout=10)
        assert answer.status_code == 400 and answer.json()["error_code"] == "BAD_REQUEST", answer.text[:300]
        assert answer.json()["message"].startswith("Failed to parse input as CSV: ") and message in answer.json()["message"]
    assert server.worker_pids() == pids
    assert not [r for r in server.log_records() if r["level"] == "CRITICAL"], "nothing unforeseen"


def test_shapes_with_zeros_and_csv_cells_are_read_as_written(server_of):
    server = server_of(ECHO_SCRIPT)
    url = server.url + "/v2/models/iris/infer"

    def echoed(shape: list[int], data: list) -> object:
        answer = requests.post(url, json={"inputs": [{"name": "data", "shape": shape, "datatype": "BYTES", "data": data}]},
                               timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text
        return json.loads(answer.json()["outputs"][0]["data"][0])

    assert echoed([2, 0], []) == [[], []], "it was [], which lost the 2"
    assert echoed([0, 2], []) == []
    assert echoed([1, 2, 3, 0], []) == [[[[], [], []], [[], [], []]]]
    assert echoed([2, 2], [1, 2, 3, 4]) == [[1, 2], [3, 4]]
    binary = _binary([{"name": "data", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}}],
                     b"\1\0\0\0a\2\0\0\0bc")  # fmt: skip
    answer = requests.post(url, data=binary[0], headers=binary[1], timeout=10)
    assert json.loads(answer.json()["outputs"][0]["data"][0]) == ["a", "bc"]
    cells = b"i,f,e,n,t,u,s\n1, 2.5 ,1e3,nan,text,1_000,-7\n"
    answer = requests.post(server.url + "/invocations", data=cells, headers={"Content-Type": "text/csv"}, timeout=10)
    row = json.loads(answer.json()["predictions"]["echo"])[0]
    assert row[:3] == [1, 2.5, 1000.0] and row[3] != row[3] and row[4:] == ["text", "1_000", -7], "as pandas reads them"


def test_a_v2_answer_says_its_real_shape_or_that_it_has_none(server_of):
    url = server_of(SHAPES_SCRIPT).url + "/v2/models/iris/infer"

    def infer(kind: str) -> requests.Response:
        return requests.post(url, json={"inputs": [{"name": "kind", "shape": [], "datatype": "BYTES", "data": [kind]}]},
                             timeout=10)  # fmt: skip

    assert infer("pairs").json()["outputs"] == [{"name": "out", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}]
    assert infer("scalar").json()["outputs"] == [{"name": "out", "shape": [], "datatype": "FP64", "data": [2.5]}]
    for kind in ("ragged", "mixed"):  # ragged was answered as shape [3, 1] holding [1, 2, 3]
        answer = infer(kind)
        assert answer.status_code == 500 and "its lists are ragged" in answer.json()["error"], answer.text


def test_refusals_answer_in_each_protocols_own_form(server_of):
    """A refusal before run() (key, method, size) is the protocol's error too, not v1's {"message": ...}."""
    server = server_of(SCHEMA_SCRIPT, auth_enabled=True, primary_key="k-primary-1", max_body_bytes=1024 * 1024)
    key = {"Authorization": "Bearer k-primary-1"}
    infer, invocations = server.url + "/v2/models/iris/infer", server.url + "/invocations"
    refused = requests.post(infer, json={}, timeout=5)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert set(refused.json()) == {"error"} and refused.json()["error"].startswith("Unauthorized")
    refused = requests.post(invocations, json={}, timeout=5)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "UNAUTHENTICATED")
    wrong_method = requests.get(infer, headers=key, timeout=5)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    too_large = requests.post(invocations, data=b"x" * (2 * 1024 * 1024), headers={**key, "Content-Type": "text/csv"},
                              timeout=10)  # fmt: skip
    assert (too_large.status_code, too_large.json()["error_code"]) == (413, "BAD_REQUEST")
    assert "larger than the service's limit" in too_large.json()["message"]
    unknown = requests.post(server.url + "/v2/models/other/infer", json={}, headers=key, timeout=5)
    assert unknown.status_code == 404 and "is not served here" in unknown.json()["error"]
    v1 = requests.post(server.url + "/score", json={}, timeout=5)
    assert v1.status_code == 401 and set(v1.json()) == {"message"}, "v1's own, unchanged"


def test_the_health_port_answers_every_protocols_probes_and_nothing_else(server_of, free_port):
    """The platform probes a KServe or MLflow client's service on the health port too, without a key."""
    port = free_port()
    server = server_of(SCHEMA_SCRIPT, auth_enabled=True, primary_key="k-primary-1", health_port=port)
    health = f"http://127.0.0.1:{port}"
    assert requests.get(health + "/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(health + "/v2/health/ready", timeout=5).json() == {"ready": True}
    assert [requests.get(health + route, timeout=5).status_code for route in ("/ping", "/health", "/", "/ready")] == [200] * 4
    key = {"Authorization": "Bearer k-primary-1"}
    infer = requests.post(health + "/v2/models/iris/infer", json={"inputs": []}, headers=key, timeout=5)
    assert infer.status_code == 404 and "error" in infer.json(), "scoring is on the main port only"
    invocation = requests.post(health + "/invocations", json={"instances": [[1.0, 2.0]]}, headers=key, timeout=5)
    assert (invocation.status_code, invocation.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    for route in ("/v2", "/v2/models/iris", "/v2/models/iris/ready", "/version"):  # metadata: the main port, with the key
        assert requests.get(health + route, headers=key, timeout=5).status_code == 404, route
    assert requests.get(server.url + "/v2/models/iris/ready", headers=key, timeout=5).status_code == 200
    assert any("score on port" in r.get("hint", "") and "/v2/health/ready" in r["hint"] for r in server.log_records())
