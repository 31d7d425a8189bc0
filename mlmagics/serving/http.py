"""HTTP/1.1 on uvloop + httptools: connections, keep-alive, pipelining, limits, shutdown.

Why not uvicorn: measured on the v1 benchmark script (README, "Choosing the HTTP stack"),
uvicorn's ASGI layer (a task, a scope and message dicts per request) plus handing `run()`
to a thread cost more than `run()` itself for a small model. Here a request is parsed by
httptools and answered from the parser callback; scoring requests go to the scorer's
queue and are answered in order. What this module guarantees:

- keep-alive (HTTP/1.1 default, HTTP/1.0 on request) and pipelined requests answered in
  order; `Connection: close` honoured; idle connections closed after `keep_alive_s`;
- `Expect: 100-continue` answered; a body over the limit answered 413 without reading it all;
  header blocks over 64 KiB answered 431; a malformed request answered 400, then closed;
- a connection with many requests in flight stops being read until they are answered;
- `shutdown()`: stop accepting, answer what was accepted, close keep-alive connections.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httptools

if TYPE_CHECKING:
    from .app import App
    from .scorer import Job

MAX_HEADER_BYTES = 64 * 1024
PIPELINE_PAUSE, PIPELINE_RESUME = 32, 8
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass
class HttpRequest:
    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # lower-case names
    body: bytes = b""
    keep_alive: bool = True
    http_version: str = "1.1"
    client: tuple[str, int] = ("", 0)
    server: tuple[str, int] = ("", 0)
    too_large: bool = False
    received: float = field(default_factory=time.monotonic)

    def header(self, name: bytes, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return default


class Connection(asyncio.Protocol):
    """One client connection; httptools calls the `on_*` methods from `feed_data`."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Job] = deque()  # requests received and not yet answered, oldest first
        self.last_active = time.monotonic()
        self.paused = False
        self.client: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername") or ("", 0)
        self.local = transport.get_extra_info("sockname") or ("", 0)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(400, "Protocol upgrades (WebSocket, h2c) are not supported")
        except httptools.HttpParserError as e:  # also what a callback raised, wrapped by httptools
            if self.header_bytes > MAX_HEADER_BYTES:
                self.fail(431, f"Request headers are larger than {MAX_HEADER_BYTES} bytes")
            else:
                self.fail(400, f"Malformed HTTP request: {e}")

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _HeadersTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        limit = self.app.max_body_bytes
        expect_continue = False
        for key, value in self.headers:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                self.too_large = True
            elif key == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if expect_continue and not self.too_large and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.too_large:
            return
        self.body_size += len(chunk)
        if self.body_size > self.app.max_body_bytes:
            self.too_large = True
            self.body = []
        else:
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        request = HttpRequest(
            method=self.parser.get_method().decode("latin-1"),
            path=parsed.path.decode("latin-1"),
            query_string=parsed.query or b"",
            headers=self.headers,
            body=self.body[0] if len(self.body) == 1 else b"".join(self.body),
            keep_alive=self.parser.should_keep_alive(),
            http_version=self.parser.get_http_version(),
            client=self.client[:2],
            server=self.local[:2],
            too_large=self.too_large,
        )
        if len(self.pending) + 1 >= PIPELINE_PAUSE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.app.dispatch(self, request)

    # -- answering ------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the answers that are ready, oldest first; stop at the first one still being worked on."""
        pending = self.pending
        while pending and pending[0].answer is not None:
            self.app.write(pending.popleft())
        if self.paused and len(pending) <= PIPELINE_RESUME and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def send(self, request: HttpRequest, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and not self.server.stopping and status != 400
        parts = [
            b"HTTP/1.1 %d %s\r\ndate: %s\r\ncontent-length: %d\r\n"
            % (status, _REASONS.get(status, b"Unknown"), self.server.date, len(body))
        ]
        parts.extend(b"%s: %s\r\n" % pair for pair in headers)
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if request.method != "HEAD":
            parts.append(body)
        transport.write(b"".join(parts))
        self.last_active = time.monotonic()
        if not keep_alive:
            transport.close()

    def fail(self, status: int, message: str) -> None:
        """A protocol error: answer it (after what is pending) and close; the parser cannot go on."""
        from .outputs import JSON, error_body

        if self.transport is None:
            return
        self.pending.clear()
        self.send(HttpRequest("GET", "", b"", [], keep_alive=False), status, [JSON], error_body(message))

    @property
    def idle(self) -> bool:
        return not self.pending


class _HeadersTooLarge(Exception):
    """Stops the parser; httptools re-raises it as an HttpParserError."""


class HttpServer:
    """Owns the listening socket's asyncio server, the open connections and the `date` header."""

    def __init__(self, app: App, keep_alive_s: float = 5.0) -> None:
        self.app = app
        self.keep_alive_s = keep_alive_s
        self.connections: set[Connection] = set()
        self.stopping = False
        self.date = b""
        self._server: asyncio.AbstractServer | None = None
        self._tick()

    async def start(self, sock: Any, tls: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=2048, ssl=tls)
        loop.call_later(1.0, self._every_second)

    def _tick(self) -> None:
        self.date = formatdate(usegmt=True).encode()

    def _every_second(self) -> None:
        self._tick()
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.idle and now - conn.last_active > self.keep_alive_s and conn.transport is not None:
                conn.transport.close()
        if not self.stopping:
            asyncio.get_running_loop().call_later(1.0, self._every_second)

    async def shutdown(self, timeout: float, idle_grace_s: float = 1.0) -> None:
        """Stop accepting; answer every request already received (within `timeout`); close.

        Answers now carry `connection: close`, so busy clients move to a new server (a reload's
        new generation) after their next answer. An idle keep-alive connection is closed only
        after `idle_grace_s` without a request: closing it at once would race with a client that
        is just sending one, and that request would be lost.
        """
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.idle and now - conn.last_active > idle_grace_s and conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
