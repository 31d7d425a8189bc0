"""The HTTP layer over raw sockets: keep-alive, pipelining, chunked bodies, limits, protocol errors."""

from __future__ import annotations

import time

import pytest

SCRIPT = """
import json, time

def init():
    pass

def run(raw_data):
    d = json.loads(raw_data) if raw_data else {}
    time.sleep(d.get("sleep", 0))
    return d.get("n", "none")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_serve, app_with):
    return module_serve(app_with(tmp_path_factory.mktemp("http"), SCRIPT), config={"max_body_bytes": 4096})


def _post(n, extra: str = "") -> bytes:
    body = f'{{"n": {n}{extra}}}'.encode()
    return b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def test_keep_alive_serves_many_requests_on_one_connection(server, connect, read_responses):
    with connect(server) as sock:
        for i in range(5):
            sock.sendall(_post(i))
            [(status, headers, body)] = read_responses(sock, 1)
            assert (status, body) == (200, str(i).encode())
            assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order_even_when_cheap_ones_could_go_first(server, connect, read_responses):
    with connect(server) as sock:
        health, missing = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(_post(1, ', "sleep": 0.3') + health + _post(2) + missing)
        answers = read_responses(sock, 4)
    assert [(s, b) for s, _, b in answers[:3]] == [(200, b"1"), (200, b"Healthy"), (200, b"2")]
    assert answers[3][0] == 404


def test_chunked_request_body_is_reassembled(server, connect, read_responses):
    with connect(server) as sock:
        sock.sendall(b'POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"n"\r\n5\r\n: 42}\r\n0\r\n\r\n')
        [(status, _, body)] = read_responses(sock, 1)
    assert (status, body) == (200, b"42")


def test_expect_100_continue_is_answered_before_the_body(server, connect, read_responses):
    with connect(server) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b'{"n": 7}')
        [(status, _, body)] = read_responses(sock, 1)
    assert (status, body) == (200, b"7")


def test_expect_100_continue_with_an_oversize_body_gets_413_without_continue(server, connect):
    with connect(server) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n")
        first = sock.recv(12)
    assert first == b"HTTP/1.1 413" or not first.startswith(b"HTTP/1.1 100")
    assert first == b"HTTP/1.1 413", "the 413 itself, not just anything but 100 (a closed connection is b'')"


def test_http_1_0_and_connection_close_end_the_connection(server, connect, read_responses):
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        with connect(server) as sock:
            sock.sendall(request)
            [(status, headers, body)] = read_responses(sock, 1)
            assert (status, body, headers.get("connection")) == (200, b"Healthy", "close")
            assert sock.recv(10) == b"", "the server closed the connection"


def test_head_gets_headers_without_a_body(server, connect):
    with connect(server) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        data = sock.recv(65536)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.count(b"Healthy") == 1


def test_malformed_request_gets_400_and_the_connection_closes(server, connect, read_responses):
    with connect(server) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        [(status, headers, body)] = read_responses(sock, 1)
        assert status == 400 and body.startswith(b'{"message": "Malformed HTTP request')
        assert sock.recv(10) == b""
    assert server.get("/").text == "Healthy"


def test_oversize_headers_get_431(server, connect, read_responses):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        [(status, _, body)] = read_responses(sock, 1)
    assert status == 431 and b"longer than 8192 bytes" in body


def test_oversize_chunked_body_gets_413(server, connect, read_responses):
    with connect(server) as sock:
        chunk = b"a" * 3000
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
            + b"0\r\n\r\n"
        )
        [(status, headers, body)] = read_responses(sock, 1)
        assert status == 413 and headers["connection"] == "close"
        assert sock.recv(10) == b"", "the rest of the body is not read: the connection closes"


def test_health_is_answered_while_run_is_busy(server, connect, read_responses):
    with connect(server) as busy, connect(server) as probe:
        busy.sendall(_post(1, ', "sleep": 1.0'))
        time.sleep(0.2)
        started = time.monotonic()
        probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, body)] = read_responses(probe, 1)
        assert (status, body) == (200, b"Healthy")
        assert time.monotonic() - started < 0.5, "liveness does not wait for run()"
        assert read_responses(busy, 1)[0][2] == b"1"


def test_idle_keep_alive_connections_are_closed(server, connect, read_responses):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_responses(sock, 1)
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert 4 < time.monotonic() - started < 8
