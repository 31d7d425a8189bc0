"""HTTP/1.1 on uvloop + httptools: connections, keep-alive, pipelining, limits, slow clients, shutdown.

Why not uvicorn: measured on the v1 benchmark script (benchmarks/README.md, "Choosing the HTTP stack"),
uvicorn's ASGI layer (a task, a scope and message dicts per request) plus handing `run()`
to a thread cost more than `run()` itself for a small model. Here a request is parsed by
httptools and answered from the parser callbacks; scoring requests go to the scorer's
queue and are answered in order.

Every limit holds while bytes arrive, never after buffering (the numbers are settings,
see settings.py and the table in docs/reference/scoring-server.md, "Limits"):

- the URL (-> 414), one header line, all header lines in bytes and in number (-> 431), as
  soon as a limit is crossed. httptools keeps an unfinished header line to itself, so a
  head still open after a read counts that read against the head's limit too (all of it,
  unless a pipelined request ended in the same read: then at most that one read is kept);
- a head must be complete `header_timeout_s` after its first byte; a body must average
  `body_min_rate` bytes/s once `body_grace_s` has passed (-> 408, then the connection
  closes); an idle keep-alive connection is closed after `keep_alive_s`;
- at headers-complete, before a body byte is kept, the app admits or refuses the request
  (route and method, key, Content-Length against the limit, a script that failed to
  start). A refused request that has a body is answered at once, and the connection is
  closed after a lingering half-close, so the client reads the answer rather than a reset;
  `Expect: 100-continue` is answered with 100 only when the body will be accepted; a
  chunked body is cut at the limit;
- the bodies one worker holds are capped in all (`max_buffered_bytes` -> 503); a
  connection whose unanswered requests hold more than `max_pending_bytes` is not read
  until they are answered, nor while its client does not read its answers;
- at most `max_connections` per worker: an idle keep-alive connection makes room, else
  the newcomer gets 503;
- answers keep the order of the requests; a protocol error is answered after the answers
  already due, then the connection closes;
- nothing a client sends ends the worker: an unexpected failure answers 500 on that
  connection alone, is logged with its traceback, and the worker goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

import httptools

from . import outputs
from .balance import PAUSE_S, Seat
from .logs import log
from .outputs import Answer
from .settings import Settings

LINGER_S = 2.0  # how long a closing connection is still read (and discarded) after its last answer
PAUSE_CHECK_S = 0.02  # how often a worker that stopped accepting to move connections checks whether they are even
BALANCE_CHECK_S = 0.01  # how often a worker answering on keep-alive connections reads whether it holds too many
# What an unanswered request counts for back-pressure besides its body: room for its answer. Requests
# read ahead on a connection are bounded by bytes this way (1 MiB: 16 small pipelined requests), and a
# client that pipelines requests for large answers without reading them cannot make the worker hold more.
ANSWER_RESERVE = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."


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
    received: float = field(default_factory=time.monotonic)

    def header(self, name: bytes, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return default


def error(status: int, message: str, failed: bool = False, body: dict[str, Any] | None = None) -> Answer:
    """v1's error answer: `{"message": ...}` as JSON (another protocol's own `body` instead, protocols.py), flagged
    as a failure of `run()` or not."""
    encoded = outputs.error_body(message) if body is None else json.dumps(body).encode()
    return status, [outputs.JSON, outputs.RUN_FAILED if failed else outputs.RUN_OK], encoded


class Job:
    """A request on its way to an answer. A scoring job is claimed once: by the scorer to run
    it, or by the event loop to refuse it (waited too long); never both."""

    __slots__ = ("conn", "request", "request_id", "id_headers", "route", "answer", "exec_ms", "claim", "hint", "deadline",
                 "protocol")  # fmt: skip

    def __init__(self, conn: Connection, request: HttpRequest, request_id: str, id_headers: list, route: str) -> None:
        self.conn = conn
        self.request = request
        self.request_id = request_id
        self.id_headers = id_headers
        self.route = route
        self.answer: Answer | None = None
        self.exec_ms: float | None = None
        self.claim = threading.Lock()
        self.hint = ""  # why it was refused, for the access log line
        self.deadline = 0.0  # loop time after which, not taken by a worker yet, it is refused (max_request_wait_time)
        self.protocol: Any = None  # how run()'s arguments and answer are read and written (protocols.py); None: v1's


class App(Protocol):
    """What a connection asks of the application above it (app.App; imports run one way: app -> http)."""

    def admit(self, conn: Connection, request: HttpRequest, named: dict[bytes, bytes]) -> Job: ...
    def refusal(self, job: Job, status: int, message: str, hint: str = "", retry_after: bool = False) -> Answer: ...
    def protocol_error(self, conn: Connection, status: int, message: str) -> Job: ...
    def dispatch(self, job: Job) -> None: ...
    def write(self, job: Job) -> None: ...


class _Stop(Exception):
    """Raised in a parser callback to stop parsing; the connection has already decided what to answer."""


class Connection(asyncio.Protocol):
    """One client connection; httptools calls the `on_*` methods from `feed_data`."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.limits = limits = server.settings
        self.max_line, self.max_head, self.max_headers = (
            limits.max_header_line_bytes,
            limits.max_header_bytes,
            limits.max_headers,
        )  # read for every header line
        self.quarter = limits.max_pending_bytes // 4
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Job] = deque()  # requests received and not yet answered, oldest first
        self.awaiting = False  # pending is not empty (counted in server.awaiting)
        self.waiting: deque[Job] = deque()  # requests parsed ahead (pipelined in one read) while the backlog is full
        self.held = 0  # body bytes of this connection's requests not yet answered (counted in server.buffered)
        self.last_active = time.monotonic()
        self.client: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.head_started = 0.0  # when the current head's first byte came; 0.0: no head is open
        self.head_number = 0  # counts heads, to tell whether one read fell wholly inside one head
        self.head_carry = 0  # bytes of reads that belong wholly to the head still open
        self.messages_done = 0
        self.body_started = 0.0  # when the current body's reading began; 0.0: no body is being read
        self.paused_for: set[str] = set()  # why reading is paused: "backlog" (back-pressure), "writing" (client not reading)
        self.paused_at = 0.0
        self.continue_owed = False  # a 100 Continue to send once the earlier answers are out
        self.closing = False  # no more requests are read; the connection closes after its last answer
        self.lingering = False
        self.closed = False
        self.eof = False
        self.timers: list[asyncio.TimerHandle] = []  # the closing steps still due
        self.protocol_error: tuple[int, str] | None = None
        self.moving = False  # closing after its answer to move to a less busy worker (HttpServer.shed)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.job: Job | None = None  # the request being received, from headers-complete on
        self.body: list[bytes] = []
        self.body_size = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername") or ("", 0)
        self.local = transport.get_extra_info("sockname") or ("", 0)
        if not self.server.make_room():
            self.closing = True
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY)
            )
            self._linger()
            return
        self.server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.closed(self)
        self.server.buffered -= self.held
        self.held = 0
        self.transport = None
        # The parser and this connection refer to each other: without this, a closed connection (and the
        # URL, headers and body it held) would wait for the cyclic GC — hundreds of MiB under a flood.
        self.parser = None
        self._reset()
        self.pending.clear()
        self._awaits(False)
        self.waiting.clear()
        for timer in self.timers:  # they hold this connection for LINGER_S more otherwise
            timer.cancel()
        self.timers.clear()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.lingering or not (self.pending or self.waiting):
            return None  # close
        self.closing = True  # a half-closed client still gets the answers it asked for
        return True

    def pause_writing(self) -> None:
        self._pause("writing")

    def resume_writing(self) -> None:
        self._resume("writing")
        self._check_backlog()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.parser is None:
            return  # a closing connection is only drained
        self.last_active = time.monotonic()
        head_open, head, done = bool(self.head_started), self.head_number, self.messages_done
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(400, "Protocol upgrades (WebSocket, h2c) are not supported")
            return
        except httptools.HttpParserError as e:  # also a callback's exception, wrapped by httptools
            self._parse_error(e)
            return
        except Exception as e:  # noqa: BLE001 - the last resort: this connection fails, the worker goes on
            self.crash(e)
            return
        if not self.head_started:
            return
        try:
            self._check_head()
        except _Stop:
            self.fail(*self.protocol_error)
            return
        # A head still open after this read holds all of it when it was open before, or when no earlier
        # request ended in it (the read began with this head); httptools keeps its unfinished line to itself.
        if (head_open and head == self.head_number) or done == self.messages_done:
            self.head_carry += len(data)
            if self.head_carry > self.limits.max_url_bytes + self.max_head:
                self.fail(431, f"Request headers are larger than {self.max_head} bytes")

    def _parse_error(self, error: httptools.HttpParserError) -> None:
        """Answer what stopped the parser. In its own frame: the callback's exception holds this connection's
        frames in its traceback, and a reference to it from data_received's frame would make a cycle that keeps
        the read (up to 256 KiB) alive until the cyclic GC runs — under attack, hundreds of MiB."""
        cause = error.__context__
        if self.closing:
            return  # a callback refused the request and answered it
        if self.protocol_error:
            self.fail(*self.protocol_error)
        elif isinstance(error, httptools.HttpParserCallbackError) and cause is not None and not isinstance(cause, _Stop):
            self.crash(cause)
        else:
            self.fail(400, f"Malformed HTTP request: {error}")

    def crash(self, exc: BaseException) -> None:
        log.emit(
            "CRITICAL",
            "server",
            f"unexpected {type(exc).__name__} while handling a request from {self.client[0]}: {exc}; "
            "this connection is closed, the worker goes on",
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        self.fail(500, INTERNAL_ERROR)

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.head_started = time.monotonic()
        self.head_number += 1
        self.head_carry = 0

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.limits.max_url_bytes:  # checked before the piece is kept
            self._stop(414, f"The request URL is longer than {self.limits.max_url_bytes} bytes")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self.header_bytes += size
        if size > self.max_line:
            self._stop(431, f"A request header line is longer than {self.max_line} bytes")
        self.headers.append((name.lower(), value))

    def _check_head(self) -> None:
        """All header lines against their limits, in bytes and in number: at headers-complete, and after
        each read that leaves a head open (so many small lines are cut within one read of the limit)."""
        if len(self.headers) > self.max_headers:
            self._stop(431, f"A request has more than {self.max_headers} header lines")
        if self.header_bytes > self.max_head:
            self._stop(431, f"Request headers are larger than {self.max_head} bytes")

    def on_headers_complete(self) -> None:
        self.head_started = 0.0
        if self.header_bytes > self.max_head or len(self.headers) > self.max_headers:
            self._check_head()
        parser = self.parser
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._stop(400, "The request URL is not valid")
        path = parsed.path.decode("latin-1")
        request = HttpRequest(
            parser.get_method().decode("latin-1"),
            unquote(path) if "%" in path else path,
            parsed.query or b"",
            self.headers,
            b"",
            parser.should_keep_alive(),
            parser.get_http_version(),
            self.client[:2],
            self.local[:2],
        )
        named = dict(self.headers)  # one look-up per header the server reads (of repeated ones, the last)
        length = int(named.get(b"content-length", -1))  # httptools has checked it is a number
        chunked = length < 0 and b"chunked" in named.get(b"transfer-encoding", b"").lower()
        job = self.job = self.app.admit(self, request, named)
        if job.answer is None:
            if b"host" not in named and request.http_version == "1.1":
                job.answer = self.app.refusal(job, 400, "HTTP/1.1 requests must have a Host header")
            elif length > self.limits.max_body_bytes:
                job.answer = self.app.refusal(job, 413, self._too_large())
        has_body = length > 0 or chunked
        if job.answer is not None:
            if has_body:  # answered now, without reading the body; then the connection closes
                self._refuse(job)
            return  # a request without a body is answered at message-complete, in order
        if has_body:
            self.body_started = time.monotonic()
            if named.get(b"expect", b"").lower() == b"100-continue":
                self.continue_owed = True
                self._send_continue()

    def on_body(self, chunk: bytes) -> None:
        job = self.job
        if job is None or job.answer is not None:
            return
        size = len(chunk)
        self.body_size += size
        if self.body_size > self.limits.max_body_bytes:  # a chunked body (a declared length was checked at the head)
            job.answer = self.app.refusal(job, 413, self._too_large())
            self._refuse(job)
        server = self.server
        if server.buffered + size > self.limits.max_buffered_bytes:
            job.answer = self.app.refusal(
                job,
                503,
                "This worker holds too many request bodies at once (max_buffered_bytes); retry in a moment",
                retry_after=True,
            )
            self._refuse(job)
        server.buffered += size
        self.held += size
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.messages_done += 1
        job, self.job = self.job, None
        self.body_started = 0.0
        self.continue_owed = False
        if job is None:
            return
        request = job.request
        if self.body:
            request.body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        request.received = time.monotonic()
        self._enqueue(job)
        if self.pending or self.waiting:
            self._check_backlog()

    def _enqueue(self, job: Job) -> None:
        """Hand a request (or a refusal) on, after those parsed ahead of it; while the backlog is full,
        it waits: one read can hold many pipelined requests."""
        if self.waiting or (job.answer is None and self.pending and self._backlog() > self.limits.max_pending_bytes):
            self.waiting.append(job)
        else:
            self._dispatch(job)

    def _dispatch(self, job: Job) -> None:
        """The job joins this connection's unanswered ones (answered in order by flush) and goes to the app."""
        self.pending.append(job)
        self._awaits(True)
        self.app.dispatch(job)

    def _awaits(self, awaiting: bool) -> None:
        """Keep the server's count of connections awaiting an answer (HttpServer.could_send)."""
        if awaiting != self.awaiting:
            self.awaiting = awaiting
            self.server.awaiting += 1 if awaiting else -1

    def _stop(self, status: int, message: str) -> None:
        """Stop parsing: httptools wraps this exception, and data_received answers `status`."""
        self.protocol_error = (status, message)
        raise _Stop(message)

    def _too_large(self) -> str:
        return f"Request body is larger than the service's limit of {self.limits.max_body_bytes} bytes"

    def _refuse(self, job: Job) -> None:
        """Answer `job` (refused) once the earlier answers are out, read nothing more, close."""
        job.request.keep_alive = False
        self.closing = True
        self._enqueue(job)
        raise _Stop("refused")

    # -- answering ------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the answers that are ready, oldest first; stop at the first one still being worked on."""
        pending = self.pending
        while pending and pending[0].answer is not None:
            job = pending.popleft()
            size = len(job.request.body)
            self.held -= size
            self.server.buffered -= size
            self.app.write(job)
            job.request.body = b""  # answered: the memory is free now, whoever still holds the job
        if not pending:
            self._awaits(False)
        if self.transport is None:
            return
        if not pending and not self.waiting:
            if self.continue_owed:
                self._send_continue()
            if self.closing:
                self._linger()
        self._check_backlog()

    def _send_continue(self) -> None:
        if not (self.pending or self.waiting) and self.transport is not None:  # after the earlier answers, never between them
            self.continue_owed = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send(self, request: HttpRequest, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and not self.server.stopping and not self.closing and not self.server.shed(self)
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
            self.closing = True

    def fail(self, status: int, message: str) -> None:
        """A protocol error: answer it after the answers already due, then close (the parser cannot go on)."""
        if self.transport is None or self.closing:
            return
        self.closing = True
        self.job = None
        self.head_started = self.body_started = 0.0
        self._enqueue(self.app.protocol_error(self, status, message))

    def _linger(self) -> None:
        """Close gracefully: half-close, drain what the client still sends for a moment, then close.

        Closing at once with unread bytes in the socket makes the kernel send a reset, and a
        client still sending its body would lose the answer it is about to read.
        """
        transport = self.transport
        if transport is None or self.lingering:
            return
        self.lingering = self.closing = True
        if self.eof:
            self.close()
            return
        self.paused_for.clear()
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self.timers.append(asyncio.get_running_loop().call_later(LINGER_S, self.close))

    def close(self) -> None:
        """Close; a TLS connection waits for the client's close_notify, but not for long: a client that never
        sends it (or never reads what is still unsent) would hold its place in `max_connections`."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        if transport.get_write_buffer_size():
            transport.abort()
            return
        transport.close()
        self.timers.append(asyncio.get_running_loop().call_later(LINGER_S, transport.abort))

    # -- reading back-pressure ------------------------------------------------------------------------
    def _backlog(self) -> int:
        """What this connection makes the worker hold: bodies of unanswered requests, room for their answers,
        answers the client has not read yet."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.held + ANSWER_RESERVE * len(self.pending) + buffered

    def _check_backlog(self) -> None:
        """Stop reading while the backlog is over `max_pending_bytes`; let requests parsed ahead in as it
        shrinks, and read again once it is down to a quarter of the limit."""
        if self.transport is None or not (self.waiting or self.paused_for or len(self.pending) > 1 or self.held > self.quarter):
            return  # one request at a time, a small body: the common case costs one test
        limit = self.limits.max_pending_bytes
        while self.waiting and self._backlog() <= limit:
            self._dispatch(self.waiting.popleft())
            if self.transport is None:
                return
        backlog = self._backlog()
        if backlog > limit:
            self._pause("backlog")
        elif not self.waiting and backlog <= limit // 4:
            self._resume("backlog")

    def _pause(self, reason: str) -> None:
        if self.transport is None or self.lingering or reason in self.paused_for:
            return
        if not self.paused_for:
            self.transport.pause_reading()
            self.paused_at = time.monotonic()
        self.paused_for.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self.paused_for:
            return
        self.paused_for.discard(reason)
        if not self.paused_for and self.transport is not None:
            self.transport.resume_reading()
            paused = time.monotonic() - self.paused_at  # the client was not the slow one meanwhile
            if self.head_started:
                self.head_started += paused
            if self.body_started:
                self.body_started += paused

    # -- time limits (checked once a second) ----------------------------------------------------------
    def check_time(self, now: float) -> None:
        if self.transport is None or self.lingering:
            return
        if self.paused_for:  # waiting for our answers: the client is not slow, unless it does not read them
            timeout = self.limits.send_timeout_s
            if "writing" in self.paused_for and now - self.paused_at > timeout:
                log.warning("server", f"closing the connection of {self.client[0]}: it read no answer for {timeout:g} s")
                self.transport.abort()
            return
        limits = self.limits
        if self.head_started and now - self.head_started > limits.header_timeout_s:
            self.fail(408, f"The request headers did not arrive within {limits.header_timeout_s:g} s")
        elif self.body_started:
            elapsed = now - self.body_started
            if elapsed > limits.body_grace_s and self.body_size < limits.body_min_rate * elapsed:
                self.fail(408, f"The request body arrived slower than {limits.body_min_rate} bytes/s")
        elif self.idle and now - self.last_active > limits.keep_alive_s:
            # close() waits to flush what the client has not read yet; a client that reads nothing would keep it
            self.close()

    @property
    def idle(self) -> bool:
        """Between requests: nothing to answer and nothing being received."""
        return not (self.pending or self.waiting or self.head_started or self.body_started or self.job)


_TOO_MANY = outputs.error_body("Too many open connections to this worker (max_connections); retry in a moment")


class HttpServer:
    """Owns the listening socket's asyncio server, the open connections and the `date` header."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.connections: set[Connection] = set()
        self.buffered = 0  # request body bytes held by all connections
        self.awaiting = 0  # open connections with a request not yet answered (the rest could send one now)
        self.stopping = False
        self.date = b""
        self._server: asyncio.AbstractServer | None = None
        self._sock: Any = None
        self._tls: ssl.SSLContext | None = None
        self._seat: Seat | None = None
        self._shedding = 0  # connections closing after their answer to move to a less busy worker
        self._paused: float | None = None  # since when this worker does not accept, while it moves connections
        self._to_move = 0  # connections still to move while paused
        self._balance_due = 0.0  # when shed() next reads the table
        self._resume_failed = False  # said once, until accepting works again
        self._tasks: set[asyncio.Task] = set()  # kept until done (the loop holds only weak references)
        self._tick()

    async def start(self, sock: Any, tls: ssl.SSLContext | None = None, seat: Seat | None = None) -> None:
        """Accept on `sock`; with a `seat` in the workers' shared table (balance.py), keep this worker's share
        of the connections."""
        # Only on uvloop: asyncio's own loop attaches an accepted connection to its server a moment later, and one
        # closed in between (a pause) drops it.
        uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        self._sock, self._tls, self._seat = sock, tls, seat if uvloop else None
        if self._seat is None:
            self._server = await self._listen(sock)
        else:  # on a duplicate of the socket, so that this worker can stop accepting and start again (balance.py)
            self._server = await self._listen(socket.socket(fileno=os.dup(sock.fileno())))
        self._hold()
        asyncio.get_running_loop().call_later(1.0, self._every_second)

    def _listen(self, sock: Any) -> Awaitable[asyncio.AbstractServer]:
        return asyncio.get_running_loop().create_server(lambda: Connection(self), sock=sock, backlog=2048, ssl=self._tls)

    def opened(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._hold()

    def closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if conn.moving:
            self._shedding -= 1
        self._hold()

    def _hold(self) -> None:
        if self._seat is not None and not self.stopping and self._paused is None:
            self._seat.hold(len(self.connections) - self._shedding)

    def shed(self, conn: Connection) -> bool:
        """Whether `conn` closes after the answer being sent, so that its client reconnects to a less busy worker
        (balance.py): this one holds more connections than another by more than balance.SLACK. The first one shed
        stops this worker accepting until the clients of the connections it moves (half its lead) have landed on
        the others. Only a connection with nothing else to answer and nothing arriving is shed: its client reads
        `connection: close` before it sends again."""
        seat = self._seat
        if seat is None or conn.moving or conn.pending or conn.waiting or conn.paused_for:
            return False
        if conn.head_started or conn.body_started or conn.messages_done < 2:  # a client that connects per request stays
            return False
        if self._paused is None and not self._pause_to_move(seat):
            return False
        if not self._to_move:
            return False
        self._to_move -= 1
        conn.moving = True
        self._shedding += 1
        return True

    def _pause_to_move(self, seat: Seat) -> bool:
        """Whether this worker holds too many connections: then it stops accepting, and `_to_move` says how many to
        move. Reads the table at most once per BALANCE_CHECK_S (a read costs ~4 µs)."""
        now = time.monotonic()
        if now < self._balance_due or self._server is None:
            return False
        self._balance_due = now + BALANCE_CHECK_S
        self._to_move = seat.excess(len(self.connections) - self._shedding)
        if not self._to_move:
            return False
        self._server.close()  # the duplicate; the other workers keep accepting on the socket
        self._server, self._paused = None, now
        seat.leave()
        asyncio.get_running_loop().call_later(PAUSE_CHECK_S, self._resume_when_even)
        return True

    def _resume_when_even(self) -> None:
        """Accept again once the moved connections are closed and the counts even, or after balance.PAUSE_S at most."""
        if self._paused is None or self.stopping or self._seat is None:
            return
        even = not self._to_move and not self._shedding and not self._seat.excess(len(self.connections))
        alone = not self._seat.others_accept()  # the others died, drain or are stuck: nobody to wait for
        if not (even or alone) and time.monotonic() - self._paused < PAUSE_S:
            asyncio.get_running_loop().call_later(PAUSE_CHECK_S, self._resume_when_even)
            return
        self._to_move = 0
        task = asyncio.get_running_loop().create_task(self._resume())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self) -> None:
        sock = None
        try:
            sock = socket.socket(fileno=os.dup(self._sock.fileno()))
            server = await self._listen(sock)
        except Exception as e:  # noqa: BLE001 - e.g. out of file descriptors: still paused, try again in a second
            if sock is not None and sock.fileno() != -1:
                sock.close()
            if not self._resume_failed:
                log.emit("ERROR", "server", f"cannot accept again after moving connections ({type(e).__name__}: {e}); "
                         "retrying every second")  # fmt: skip
            self._resume_failed = True
            asyncio.get_running_loop().call_later(1.0, self._resume_when_even)
            return
        if self._resume_failed:
            log.emit("INFO", "server", "accepting again")
            self._resume_failed = False
        if self.stopping:
            server.close()
            return
        self._server, self._paused = server, None
        self._hold()

    def could_send(self) -> int:
        """Open connections with no request waiting for its answer: the clients that could send one now. Read by the
        batching dispatcher on the main thread (two int reads; a moment stale at worst)."""
        return len(self.connections) - self.awaiting

    def make_room(self) -> bool:
        """Whether one more connection may open; closes the longest-idle keep-alive connection when full."""
        if len(self.connections) < self.settings.max_connections:
            return True
        idle = [c for c in self.connections if c.idle and c.transport is not None]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        self.connections.discard(oldest)
        oldest.close()
        return True

    def _tick(self) -> None:
        self.date = formatdate(usegmt=True).encode()

    def _every_second(self) -> None:
        self._tick()
        if self._seat is not None:
            self._seat.beat()
        now = time.monotonic()
        for conn in list(self.connections):
            try:
                conn.check_time(now)
            except Exception as e:  # noqa: BLE001 - one connection's failure must not stop the clock for all
                conn.crash(e)
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
        if self._seat is not None:
            self._seat.leave()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.idle and now - conn.last_active > idle_grace_s and conn.transport is not None:
                    conn.close()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

