"""Plain HTTP probes against 127.0.0.1: one request, the v1 answer decoding, cold start timing."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any

from benchkit import BenchError

from servebench.procs import Spawned, log_tail


class ServerFailed(RuntimeError):
    """A server did not start or answered wrongly; the message says what and where to look."""


# How serving_bench.py and batching_bench.py end on a failure (benchkit.ends_in_one_line): exit code, words before it.
FAILURES = {BenchError: (2, ""), ServerFailed: (1, "server failed: ")}


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Send one request to 127.0.0.1:``port``; return (status, body). Raises OSError if unreachable."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def decode_answer(wire: bytes) -> Any:
    """Decode a v1 answer: ``run()`` returned a JSON string, which the server JSON-encodes again."""
    value = json.loads(wire)
    return json.loads(value) if isinstance(value, str) else value


def score_wire(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """POST ``body`` to /score and return the response body as sent; ServerFailed unless 200."""
    status, wire = request(port, "POST", "/score", body, {"Content-Type": "application/json", **headers})
    if status != 200:
        raise ServerFailed(f"POST /score answered {status}: {wire[:300]!r}")
    return wire


def score(port: int, body: bytes, headers: dict[str, str]) -> Any:
    """POST ``body`` to /score and return the decoded answer; ServerFailed unless 200."""
    return decode_answer(score_wire(port, body, headers))


@dataclass
class ColdStart:
    """Seconds from spawn to the first 200 on GET / and to the first correct POST /score."""

    get_s: float
    score_s: float


def poll(spawned: Spawned, attempt: Any, what: str, timeout: float) -> float:
    """Call ``attempt()`` until it returns True; return seconds since spawn. Fails if the server dies."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        code = spawned.exited()
        if code is not None:
            raise ServerFailed(
                f"{spawned.name} server exited with code {code} before {what}; "
                f"log {spawned.log_path}, last lines:\n{log_tail(spawned.log_path)}"
            )
        try:
            if attempt():
                return time.monotonic() - spawned.started
        except (OSError, http.client.HTTPException, ServerFailed, ValueError) as err:
            last_error = f"{type(err).__name__}: {err}"
        time.sleep(0.01)
    raise ServerFailed(
        f"{spawned.name} server gave no {what} within {timeout:.0f} s (last: {last_error}); "
        f"log {spawned.log_path}, last lines:\n{log_tail(spawned.log_path)}"
    )


def wait_ready(
    spawned: Spawned,
    port: int,
    body: bytes,
    expected: Any,
    headers: dict[str, str],
    timeout: float = 120.0,
) -> ColdStart:
    """Wait for GET / → 200, then for POST /score → 200 with the expected answer."""

    def healthy() -> bool:
        return request(port, "GET", "/", headers=headers)[0] == 200

    def scores() -> bool:
        answer = score(port, body, headers)
        if answer != expected:
            raise ServerFailed(f"wrong answer {answer!r}, expected {expected!r}")
        return True

    get_s = poll(spawned, healthy, "200 on GET /", timeout)
    score_s = poll(spawned, scores, "correct answer on POST /score", timeout)
    return ColdStart(get_s=get_s, score_s=score_s)
