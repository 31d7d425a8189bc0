"""Hostile clients against a real scoring server, over raw sockets on 127.0.0.1.

Every test ends by checking that the worker took no harm: the same worker process
(nothing killed it, no restart counted) and its memory within a few MB of before.
The limits are small here so that each case is quick; their defaults are in settings.py.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterable

import psutil
import pytest
import requests

KEY = "hostile-test-key"
AUTH = f"Authorization: Bearer {KEY}\r\n".encode()
LIMITS = {
    "auth_enabled": True,
    "primary_key": KEY,
    "secondary_key": "second-key",
    "max_body_bytes": 1_000_000,
    "max_buffered_bytes": 2_500_000,
    "max_url_bytes": 8192,
    "max_header_line_bytes": 8192,
    "max_header_bytes": 32768,
    "max_headers": 100,
    "header_timeout_s": 2,
    "body_min_rate": 50_000,
    "body_grace_s": 1,
    "send_timeout_s": 3,
    "keep_alive_s": 30,
    "max_connections": 12,
    "max_pending_bytes": 300_000,
}
SCRIPT = """
import json, sys, time

def init():
    pass

def run(raw_data):
    data = json.loads(raw_data) if raw_data else {}
    if not isinstance(data, dict):
        return "not a dict"
    if data.get("raise") == "SystemExit":
        sys.exit(3)
    if data.get("raise") == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if data.get("raise") == "recursion":
        def deeper(n):
            return deeper(n + 1)
        deeper(0)
    time.sleep(data.get("sleep", 0))
    return {"n": data.get("n"), "size": len(raw_data), "reply": "r" * data.get("reply", 0)}
"""
SCHEMA_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", StandardPythonParameterType([[1.0, 2.0]]))
@output_schema(StandardPythonParameterType([1.0]))
def run(data):
    return [sum(row) for row in data]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_serve, app_with):
    return module_serve(app_with(tmp_path_factory.mktemp("hostile"), SCRIPT), config=LIMITS)


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory, module_serve, app_with):
    return module_serve(app_with(tmp_path_factory.mktemp("hostile-schema"), SCHEMA_SCRIPT), config={"max_body_bytes": 100_000})


class Unharmed:
    """Before and after a hostile exchange: the same worker, no restart, memory within `slack` bytes."""

    def __init__(self, server, slack: int = 6 * 1024 * 1024) -> None:
        self.server, self.slack = server, slack
        [self.pid] = server.worker_pids()
        self.rss = psutil.Process(self.pid).memory_info().rss

    def check(self) -> None:
        assert self.server.worker_pids() == [self.pid], "the worker was not replaced"
        grown = psutil.Process(self.pid).memory_info().rss - self.rss
        assert grown < self.slack, f"worker RSS grew by {grown / 1e6:.1f} MB"
        metrics = requests.get(self.server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        restarts = [line for line in metrics.text.splitlines() if line.startswith("mlmagics_worker_restarts_total")]
        assert restarts in ([], ["mlmagics_worker_restarts_total 0.0"]), restarts
        ok = requests.post(self.server.url + "/score", json={"n": 1}, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["n"] == 1, "the worker still scores"


@pytest.fixture
def unharmed(server):
    guard = Unharmed(server)
    yield guard
    guard.check()


def _head(path="/score", method="POST", headers=b"", length=None) -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: x\r\n%s" % (method.encode(), path.encode(), headers)
    if length is not None:
        head += b"Content-Length: %d\r\nContent-Type: application/json\r\n" % length
    return head + b"\r\n"


@pytest.fixture(scope="session")
def answer_within(read_responses):
    """`answer_within(sock, seconds)`: the next answer on the connection, which must come within `seconds`."""

    def answer(sock: socket.socket, seconds: float) -> tuple[int, dict[str, str], bytes]:
        sock.settimeout(seconds)
        answers = read_responses(sock, 1)
        assert answers, "the server closed the connection without an answer"
        return answers[0]

    return answer


def _send_more_then_closed(sock: socket.socket, chunk: bytes, times: int) -> None:
    """After its answer, the client goes on sending: the server drains it and closes the connection."""
    try:
        for _ in range(times):
            sock.sendall(chunk)
    except OSError:
        pass
    assert _closed(sock)


def _closed(sock: socket.socket, within: float = 5.0) -> bool:
    """Whether the server closes the connection (reading and dropping whatever it still sends)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# -- input that used to end a worker --------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["text", "schema"])
def test_deeply_nested_json_in_a_query_is_a_400_not_a_dead_worker(server, schema_server, style):
    target = server if style == "text" else schema_server
    guard = Unharmed(target)
    nested = "[" * 1200 + "]" * 1200  # 2.4 KB: deeper than the interpreter's recursion limit
    auth = {"Authorization": f"Bearer {KEY}"} if target is server else {}
    answer = requests.get(f"{target.url}/score?data={nested}", headers=auth, timeout=10)
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["message"]
    swagger = requests.get(f"{target.url}/swagger.json?version={nested}", headers=auth, timeout=10)
    assert swagger.status_code == 400
    if style == "schema":
        body = requests.post(f"{target.url}/score", data='{"data": ' + nested + "}", timeout=10,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert body.status_code == 400 and "nested too deeply" in body.json()["message"]
    else:
        guard.check()
    assert target.worker_pids() == [guard.pid]


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "recursion"])
def test_a_run_that_exits_or_recurses_gets_500_and_the_worker_goes_on(server, unharmed, kind):
    answer = requests.post(server.url + "/score", json={"raise": kind}, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert answer.status_code == 500 and answer.headers["x-ms-run-function-failed"] == "True"


# -- work done before the body is read ------------------------------------------------------------------------------
def test_a_client_without_a_key_gets_401_before_sending_its_body(server, unharmed, connect, answer_within):
    for _ in range(3):
        with connect(server) as sock:
            sock.sendall(_head(length=94_000_000))
            status, headers, body = answer_within(sock, 2)
            assert (status, headers["connection"]) == (401, "close")
            _send_more_then_closed(sock, b"x" * 65536, 40)  # what it sends anyway is drained, never kept


def test_a_body_over_the_limit_gets_413_before_it_is_sent(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(_head(headers=AUTH, length=200_000_000))
        status, headers, body = answer_within(sock, 2)
    assert status == 413 and headers["connection"] == "close" and b"1000000 bytes" in body


def test_expect_100_continue_is_answered_only_when_the_body_will_be_accepted(server, unharmed, connect, answer_within):
    expect = b"Expect: 100-continue\r\n"
    for headers, length, wanted in ((AUTH + expect, 200_000_000, 413), (expect, 100, 401)):
        with connect(server) as sock:
            sock.sendall(_head(headers=headers, length=length))
            status, _, _ = answer_within(sock, 2)
            assert status == wanted, "a final answer instead of 100 Continue"
    with connect(server) as sock:
        body = json.dumps({"n": 7}).encode()
        sock.sendall(_head(headers=AUTH + expect, length=len(body)))
        sock.settimeout(2)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = answer_within(sock, 5)
        assert status == 200 and json.loads(answer)["n"] == 7


def test_a_chunked_body_is_cut_at_the_limit(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 100_000
        status = None
        for _ in range(30):  # 3 MB offered, the limit is 1 MB
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
        status, headers, _ = answer_within(sock, 3)
    assert status == 413 and headers["connection"] == "close"


def test_routes_and_methods_answer_v1s_texts_before_the_body(server, unharmed, connect, answer_within):
    cases = [("/predict", "POST", 404, "The requested URL was not found on the server."),
             ("/score", "PUT", 405, "The method is not allowed for the requested URL."),
             ("/", "POST", 405, "The method is not allowed for the requested URL.")]  # fmt: skip
    for path, method, status, text in cases:
        with connect(server) as sock:
            sock.sendall(_head(path, method, AUTH, length=5_000_000))
            got, headers, body = answer_within(sock, 2)
            assert (got, headers["connection"]) == (status, "close") and json.loads(body)["message"].startswith(text)
    hints = [r.get("hint", "") for r in server.log_records() if r.get("logger") == "access" and r.get("status") in (404, 405)]
    assert any("no route /predict" in h for h in hints) and any("/score takes GET, POST" in h for h in hints)


def test_swagger_metrics_and_readiness_details_need_the_key(server, unharmed):
    for path in ("/swagger.json", "/metrics"):
        assert requests.get(server.url + path, timeout=5).status_code == 401
        assert requests.get(server.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=5).status_code == 200
    open_ready = requests.get(server.url + "/ready", timeout=5)
    assert open_ready.status_code == 200 and set(open_ready.json()) == {"status", "details"}, "probes see the status only"
    keyed = requests.get(server.url + "/ready", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    assert keyed["status"] == "Ready" and "input" in keyed
    assert requests.get(server.url + "/", timeout=5).text == "Healthy"


# -- limits while bytes arrive --------------------------------------------------------------------------------------
def test_a_url_that_never_ends_gets_414_at_the_limit(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(b"GET /score?" + b"a" * 10_000)
        status, headers, body = answer_within(sock, 2)
        assert status == 414 and b"8192 bytes" in body
        _send_more_then_closed(sock, b"a" * 65536, 50)  # 3 MB more of the same URL: drained, never kept


def test_a_header_line_that_never_ends_gets_431(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        status = None
        try:
            for _ in range(50):  # 3 MB of one header value, in reads httptools would keep
                sock.sendall(b"b" * 65536)
        except OSError:
            pass
        status, _, body = answer_within(sock, 3)
    assert status == 431


def test_a_long_unfinished_header_line_in_one_read_gets_431_at_once(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"c" * 200_000)  # never finished
        status, _, _ = answer_within(sock, 2)  # not the head timeout's 408
    assert status == 431


def test_too_many_header_lines_get_431(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(60_000)))
        except OSError:
            pass
        status, _, body = answer_within(sock, 3)
    assert status == 431 and b"more than 100 header lines" in body


def test_headers_over_the_total_size_get_431(server, unharmed, connect, answer_within):
    with connect(server) as sock:  # ten lines under the 8 KB line limit, 40 KB against 32 KB in all
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(10)))
        status, _, body = answer_within(sock, 2)
    assert status == 431 and b"larger than 32768 bytes" in body


def _dribble(sock: socket.socket, pieces: Iterable[bytes], wait_s: float) -> int | None:
    """Send `pieces` one at a time, waiting up to `wait_s` for an answer after each: the answer's status, or None
    when the server closed the connection or the pieces ran out first."""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            return None
        sock.settimeout(wait_s)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        return int(data.split()[1]) if data else None
    return None


def test_a_slow_head_gets_408(server, unharmed, connect):
    with connect(server) as sock:
        started = time.monotonic()
        status = _dribble(sock, (bytes([b]) for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n"), 0.3)
        assert status == 408 and time.monotonic() - started < 2 + 2.5, "closed after header_timeout_s (+ the 1 s clock)"


def test_a_slow_body_gets_408(server, unharmed, connect):
    with connect(server) as sock:
        sock.sendall(_head(headers=AUTH, length=100_000))
        started = time.monotonic()
        pieces = itertools.takewhile(lambda _: time.monotonic() - started < 6, itertools.repeat(b" " * 1000))
        status = _dribble(sock, pieces, 0.2)  # 5 KB/s against a minimum of 50 KB/s after 1 s
    assert status == 408


def test_http_1_1_without_host_is_a_400(server, unharmed, connect, answer_within):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        status, _, body = answer_within(sock, 2)
    assert status == 400 and b"Host header" in body


def test_a_bad_request_after_good_ones_is_answered_after_them(server, unharmed, connect, read_responses):
    good = _head(headers=AUTH, length=len(b'{"n": 1}')) + b'{"n": 1}'
    with connect(server) as sock:
        sock.sendall(good + good.replace(b'"n": 1', b'"n": 2') + b"NOT HTTP AT ALL\r\n\r\n")
        sock.settimeout(5)
        answers = read_responses(sock, 3)
    assert [a[0] for a in answers] == [200, 200, 400]
    assert [json.loads(a[2])["n"] for a in answers[:2]] == [1, 2]


def test_the_bodies_a_worker_holds_are_capped(server, unharmed, connect, read_responses):
    socks = [connect(server) for _ in range(3)]
    try:
        for sock in socks:  # three bodies of 0.9 MB, each under the 1 MB limit, 2.7 MB against 2.5 MB in all
            sock.sendall(_head(headers=AUTH, length=1_000_000) + b" " * 900_000)
        time.sleep(0.3)
        answers = []
        for sock in socks:
            sock.settimeout(0.5)
            try:
                answers += [a[0] for a in read_responses(sock, 1)]
            except TimeoutError:
                pass
        assert answers == [503], "the body that crossed the line is refused, the others wait for their last bytes"
    finally:
        for sock in socks:
            sock.close()


def test_pipelined_requests_stop_being_read_when_their_answers_pile_up(server, unharmed, connect, read_responses):
    body = b'{"n": 1, "pad": "' + b"p" * 20_000 + b'"}'
    request = _head(headers=AUTH, length=len(body)) + body
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        sock.settimeout(0.5)
        try:
            for _ in range(2000):  # 40 MB offered without reading a single answer
                sock.sendall(request)
                sent += 1
        except (TimeoutError, OSError):
            pass
        assert sent < 2000, "the server stopped reading the connection"
        sock.settimeout(20)
        answers = read_responses(sock, 10)
        assert [a[0] for a in answers] == [200] * 10


def test_a_client_that_never_reads_its_answers_is_disconnected(server, unharmed):
    body = b'{"n": 1, "reply": 100000}'
    request = _head(headers=AUTH, length=len(body)) + body
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(0.5)
    try:
        for _ in range(400):  # 40 MB of answers asked for, none read
            sock.sendall(request)
    except (TimeoutError, OSError):
        pass
    time.sleep(3 + 2.5)  # send_timeout_s + the 1 s clock (keep_alive_s is 30 s here)
    closed = _closed(sock)
    sock.close()
    assert closed


def test_open_connections_are_capped_per_worker(server, unharmed, connect, answer_within):
    busy = [connect(server) for _ in range(12)]  # each one mid-head: none is idle
    try:
        for sock in busy:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        with connect(server) as extra:
            status, headers, body = answer_within(extra, 2)
            assert status == 503 and headers["retry-after"] == "1" and b"max_connections" in body
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.2)
    idle = [connect(server) for _ in range(12)]  # connected, nothing sent: idle ones make room for a newcomer
    try:
        time.sleep(0.2)
        answer = requests.get(server.url + "/", timeout=5)
        assert answer.status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_flood_of_refused_requests_leaves_the_workers_memory_where_it_was(server, connect):
    """Each refused request held its read (up to 256 KiB) in a connection <-> parser reference cycle until the
    cyclic GC ran: a few thousand of them took a worker from 120 MiB to over 1 GiB."""
    guard = Unharmed(server, slack=12 * 1024 * 1024)
    floods = [
        b"GET /" + b"a" * 200_000,  # 414
        _head(length=94_000_000) + b"x" * 65536,  # 401 before the body
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 200_000,  # 431
    ]
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 6:  # bounded: about 1000 refusals of each kind on this machine
        for data in floods:
            with connect(server) as sock:
                try:
                    sock.sendall(data)
                    sock.recv(4096)
                except OSError:
                    pass
            sent += 1
    assert sent > 300
    guard.check()


def test_mlmagics_serve_without_a_config_has_the_targets_bounded_queue(tmp_path, serve, app_with):
    app = app_with(tmp_path, SCRIPT)
    server = serve(app)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(server.post, json_body={"sleep": 1.0}) for _ in range(4)]
        statuses = sorted(f.result().status_code for f in futures)
    assert statuses[0] == 200 and 503 in statuses, statuses
