"""Adaptive batching (mlmagics/serving/batching.py): concurrent requests' rows in one run() call, each request
answered on its own — on real servers over HTTP on 127.0.0.1, with bounded loads."""

from __future__ import annotations

import concurrent.futures as cf
import json
import queue
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from mlmagics.core import LocalWebservice
from mlmagics.core.configs import InvalidConfiguration
from mlmagics.serving.batching import Batcher, CostModel, Item, Plan, Unsplittable

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

# each answer says which run() call served it; `key` (not rows) must be equal to share a call, `sleep` holds the worker
ORDER_SCRIPT = """
import itertools, time
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

CALLS = itertools.count()

def init():
    pass

@input_schema("sleep", StandardPythonParameterType(0.0))
@input_schema("key", StandardPythonParameterType("a"))
@input_schema("data", StandardPythonParameterType([1]))
def run(data, key="a", sleep=0.0):
    time.sleep(sleep)
    call = next(CALLS)
    return [call] * len(data)
"""


JSON_HEADERS = {"Content-Type": "application/json"}


def _post_many(url: str, bodies: list, workers: int = 32) -> list[requests.Response]:
    with requests.Session() as session, cf.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: session.post(url + "/score", data=json.dumps(b), headers=JSON_HEADERS, timeout=30),
                             bodies))  # fmt: skip


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


def _send_in_order(calls: list) -> list[requests.Response]:
    """Each call in a thread of its own, 30 ms after the one before: they reach the server in this order."""
    answers: list = [None] * len(calls)

    def send(i: int) -> None:
        answers[i] = calls[i]()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
        time.sleep(0.03)
    for thread in threads:
        thread.join(60)
    return answers


def test_the_dispatcher_takes_requests_oldest_first_and_never_groups_past_one(server_of):
    """Keys a a b a b b a a a queue behind a long call: FIFO gives the calls [a a] [b] [a] [b b] [a a] [a] (at most two
    rows each), never all the a's first — the b behind them would wait for every a that came after it."""
    server = server_of(ORDER_SCRIPT, max_batch_size=2, max_request_wait_time=30_000)
    keys = "aababbaaa"

    def score(body: dict):
        return lambda: requests.post(server.url + "/score", json=body, timeout=60)

    answers = _send_in_order([score({"data": [0], "key": "block", "sleep": 1.5})]
                             + [score({"data": [i], "key": k}) for i, k in enumerate(keys)])  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 10
    calls = [a.json()[0] for a in answers[1:]]
    groups = [[i for i, c in enumerate(calls) if c == call] for call in sorted(set(calls))]
    assert groups == [[0, 1], [2], [3], [4, 5], [6, 7], [8]], calls


def test_under_batching_a_request_that_waits_too_long_gets_503_and_retry_after_in_its_protocol(server_of):
    """max_request_wait_time bounds the queue with batching on as without: refused when the wait limit passes, not
    when the worker frees up — on each protocol, in its own error form."""
    server = server_of(ORDER_SCRIPT, max_batch_size=64, max_request_wait_time=300, service_name="iris")
    url = server.url

    def timed(method: str, route: str, body: dict):
        def call():
            started = time.monotonic()
            answer = requests.request(method, url + route, json=body, timeout=30)
            answer.waited = time.monotonic() - started
            return answer

        return call

    v2 = {"inputs": [{"name": "data", "shape": [1], "datatype": "INT64", "data": [1]}]}
    answers = _send_in_order([timed("POST", "/score", {"data": [0], "sleep": 2.0}), timed("POST", "/score", {"data": [1]}),
                              timed("POST", "/invocations", {"instances": [1]}), timed("POST", "/v2/models/iris/infer", v2),
                              timed("POST", "/score", {"data": [2]})])  # fmt: skip
    blocker, *refused = answers
    assert blocker.status_code == 200
    for answer in refused:
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "1"), answer.text
        assert 0.25 < answer.waited < 1.5, "refused when its wait limit passed, not when the worker freed up"
    assert refused[0].json()["message"].startswith("Too many requests for service iris (overloaded)")
    assert refused[1].json()["error_code"] == "TEMPORARILY_UNAVAILABLE" and "overloaded" in refused[1].json()["message"]
    assert "overloaded" in refused[2].json()["error"]
    assert requests.post(url + "/score", json={"data": [3]}, timeout=10).status_code == 200


def test_requests_that_cannot_share_a_call_are_served_alone_and_answered_on_their_own(batching_server):
    server = batching_server(NUMPY_SCRIPT)
    bodies = [{"data": []} if i % 7 == 0 else {"data": [[i, 1.0]]} for i in range(70)]  # no rows: served alone
    answers = _post_many(server.url, bodies)
    for i, answer in enumerate(answers):
        if i % 7 == 0:
            assert answer.status_code == 500 and "x-mlmagics-batch-rows" not in answer.headers  # run() fails on no rows
        else:
            assert answer.json()["sum"] == [i + 1.0]


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


def test_each_batching_setting_is_the_services_when_set_else_the_batched_scripts_own_else_10_ms():
    from mlmagics.serving.batching import batched
    from mlmagics.serving.scorer import Scorer

    @batched(max_batch_size=8, max_batch_latency_ms=50)
    def run(items):
        return items

    script = SimpleNamespace(run=run, params=["items"])

    def batcher(**settings):
        made = Scorer(script, 1000, None, "svc", metrics=None, **settings)._batcher()
        return made.max_rows, round(made.max_wait_s * 1000, 6)

    assert batcher() == (8, 50)
    assert batcher(max_batch_size=4) == (4, 50)  # the service's rows, the script's wait
    assert batcher(max_batch_latency_ms=0) == (8, 0)  # 0 is a setting, not "unset"
    batched(run, max_batch_size=8)  # marked again, without a wait of its own
    assert batcher() == (8, 10)


def test_the_bench_summary_says_which_batch_sizes_answered():
    from mlmagics.display import BenchResult

    result = BenchResult("svc", [1.0, 2.0, 3.0], 0, 1.0, 8, batch_rows=[4, 8, 8])
    assert result.summary().endswith("; batched: 3 answers from calls of 4–8 rows (median 8)")
    assert "batched" not in BenchResult("svc", [1.0], 0, 1.0, 1).summary()


def _job(arrived: float | None = None):
    """What the dispatcher reads of a job: when it arrived, its claim, its connection."""
    return SimpleNamespace(request=SimpleNamespace(received=arrived or time.monotonic()), claim=threading.Lock(),
                           conn=SimpleNamespace(transport=object()))  # fmt: skip


def _taught(batcher: Batcher, fixed_s: float, gap_s: float) -> Batcher:
    """A batcher that learned calls cost `fixed_s` whatever their rows, and requests arrive `gap_s` apart."""
    for rows in (1, 2, 4):
        batcher.cost.observe(rows, fixed_s)
    batcher.gap_s = gap_s
    return batcher


def _take(batcher: Batcher, later: list[float]) -> tuple[list[Item], float]:
    """batcher.take() of a first request, while another arrives after each delay in `later`; (items, seconds taken)."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()

    def arrive() -> None:
        for delay in later:
            time.sleep(delay)
            jobs.put(_job())

    threading.Thread(target=arrive, daemon=True).start()
    started = time.monotonic()
    items, stop = batcher.take(Item(_job(), {"data": [1]}, 1), jobs, lambda job: Item(job, {"data": [1]}, 1))
    assert not stop
    return items, time.monotonic() - started


def test_the_dispatcher_waits_for_the_next_request_only_while_that_saves_a_calls_fixed_cost():
    plan = Plan(["data"], listwise=False)
    # calls cost 200 ms whatever their rows, requests come 40 ms apart: waiting ~60 ms for the next one pays
    items, _ = _take(_taught(Batcher(plan, max_rows=8, max_wait_s=1.0), 0.2, 0.04), [0.02])
    assert len(items) == 2, "it waited, and the request 20 ms later shares the call"
    # nothing learned yet: no wait
    items, _ = _take(Batcher(plan, max_rows=8, max_wait_s=1.0), [0.02])
    assert len(items) == 1
    # max_batch_latency_ms=0: no wait, whatever waiting would save
    items, _ = _take(_taught(Batcher(plan, max_rows=8, max_wait_s=0.0), 0.2, 0.04), [0.02])
    assert len(items) == 1
    # the same, but every client awaits its answer (no connection could send): no wait, the call goes at once
    waiting = _taught(Batcher(plan, max_rows=8, max_wait_s=1.0, could_send=lambda: 0), 0.2, 0.04)
    items, took = _take(waiting, [0.02])
    assert len(items) == 1 and took < 0.02, (len(items), took)
    # requests keep coming 20 ms apart: max_batch_latency_ms (150 ms) ends the wait, not the stream
    items, took = _take(_taught(Batcher(plan, max_rows=100, max_wait_s=0.15), 1.0, 0.02), [0.02] * 50)
    assert 2 <= len(items) < 50 and took < 0.15 + 0.1, (len(items), took)


class _HoldingApp:
    """The app a connection talks to, reduced to what the count needs: /hold is answered only when the test says."""

    def __init__(self) -> None:
        self.held: list = []

    def admit(self, conn, request, named):
        from mlmagics.serving.http import Job

        return Job(conn, request, "id", [], request.path)

    def dispatch(self, job) -> None:
        if job.route == "/hold":
            self.held.append(job)
        else:
            job.answer = (200, [], b"now")
            job.conn.flush()

    def write(self, job) -> None:
        job.conn.send(job.request, *job.answer)

    def release(self) -> None:
        for job in self.held:
            job.answer = (200, [], b"held")
            job.conn.flush()
        self.held.clear()


def test_the_server_counts_the_connections_that_could_send_a_request_now():
    """The dispatcher waits for more requests only while some client could send one (HttpServer.could_send): open
    connections minus those awaiting an answer — kept right through answers, pipelining and clients that leave."""
    import asyncio
    import socket

    from mlmagics.serving.http import HttpServer
    from mlmagics.serving.settings import Settings

    async def scenario() -> list[int]:
        app = _HoldingApp()
        server = HttpServer(app, Settings())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        await server.start(sock)
        port = sock.getsockname()[1]
        seen: list[int] = []

        async def settle() -> None:
            for _ in range(50):
                await asyncio.sleep(0.01)

        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await settle()
        seen.append(server.could_send())  # 3 open, none awaiting
        clients[0][1].write(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
        clients[1][1].write(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\nGET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
        clients[2][1].write(b"GET /now HTTP/1.1\r\nhost: x\r\n\r\n")
        await settle()
        seen.append(server.could_send())  # two await (one of them twice, pipelined); /now was answered
        clients[0][1].close()
        await settle()
        seen.append(server.could_send())  # a client that left awaits nothing
        app.release()
        await settle()
        seen.append(server.could_send())  # answered: the one left of those two could send again
        for _, writer in clients[1:]:
            writer.close()
        await settle()
        seen.append(server.could_send())
        seen.append(server.awaiting)
        server._server.close()
        return seen

    assert asyncio.run(scenario()) == [3, 1, 1, 2, 0, 0]

