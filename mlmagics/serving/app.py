"""The HTTP face of a worker: a plain ASGI app (no framework; measured faster, see README).

Routes, as azureml-inference-server-http answers them, plus readiness and metrics:

    GET  /              liveness: 200 "Healthy" while the process runs
    GET  /ready         readiness: 200 once init() succeeded, 503 with the reason (and traceback) before or after a failure
    GET|POST /score     run(); OPTIONS answers CORS pre-flights
    GET  /swagger.json  the API document (?version=2|3|3.1)
    GET  /metrics       Prometheus text format

Every answer carries the request id headers; every error body is `{"message": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import time
from random import getrandbits

from . import outputs
from .auth import UNAUTHORIZED, KeyAuth
from .inputs import HttpRequest
from .logs import log
from .metrics import Metrics
from .scorer import FAILED, READY, STARTING, Job, Scorer, _error
from .settings import Settings
from .swagger import Swagger, SwaggerError

HEADER_LIMIT = 100
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
)
_HEALTHY = (200, [outputs.TEXT_HTML], b"Healthy")
_QUIET_ROUTES = {"/", "/ready", "/metrics"}  # probes and scrapes: no access line unless they fail


class TooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


class App:
    def __init__(self, settings: Settings, scorer: Scorer, metrics: Metrics) -> None:
        self.settings = settings
        self.scorer = scorer
        self.metrics = metrics
        self.auth = KeyAuth(settings.auth_enabled, settings.keys, settings.keys_file)
        self.prefix = "/" + settings.service_path_prefix.strip("/") if settings.service_path_prefix.strip("/") else ""
        self.cors = set(settings.cors_origins)
        self.wait_s = None if settings.max_request_wait_time is None else settings.max_request_wait_time / 1000
        # a run() stuck in C code ignores SIGALRM; past this the worker gives up on it (see _stuck)
        self.backstop_s = settings.scoring_timeout_ms / 1000 + 5.0
        self._swagger: Swagger | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path = scope["path"]
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :] or "/"
        method = scope["method"]
        request = HttpRequest(method, path, scope["query_string"], scope["headers"], b"", scope)
        ids, problem = _request_ids(request)
        exec_ms = None
        if problem:
            route, (status, headers, body) = "other", _error(431, problem)
        else:
            route, handler = self._route(path)
            try:
                result = await handler(request, ids[0], receive)
            except Disconnected:
                return
            status, headers, body = result[0]
            exec_ms = result[1]
        headers = headers + ids[1]
        headers.append((b"content-length", str(len(body)).encode()))
        if exec_ms is not None:
            headers.append((b"x-ms-run-fn-exec-ms", f"{exec_ms:.3f}".encode()))
        if self.cors:
            headers.extend(self._cors_headers(request))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        seconds = time.perf_counter() - started
        self.metrics.request_done(route, method, status, seconds)
        if self.settings.request_log and (route not in _QUIET_ROUTES or status >= 400):
            log.access(ids[0], method, path, status, seconds * 1000, len(body))

    def _route(self, path: str):
        if path == "/score":
            return "/score", self.score
        if path == "/":
            return "/", self.health
        if path == "/swagger.json":
            return "/swagger.json", self.swagger
        if path == "/ready":
            return "/ready", self.ready
        if path == "/metrics":
            return "/metrics", self.prometheus
        return "other", self.not_found

    # -- routes -------------------------------------------------------------------------------
    async def score(self, request: HttpRequest, request_id: str, receive):
        method = request.method
        if method == "OPTIONS":
            return (200, [outputs.TEXT_HTML, outputs.RUN_OK], b""), None
        if method not in ("GET", "POST"):
            return _error(405, f"Method {method} is not allowed on /score; use POST (or GET)"), None
        if not self.auth.allows(_header(request, b"authorization").encode("latin-1")):
            status, headers, body = _error(401, UNAUTHORIZED)
            return (status, headers + [(b"www-authenticate", b"Bearer")], body), None
        try:
            request.body = await self._read_body(request, receive)
        except TooLarge:
            return _error(413, f"Request body is larger than the service's limit of {self.settings.max_body_bytes} bytes"), None
        if self.scorer.state == FAILED:
            return self._not_started(), None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = Job(request, request_id, future, loop)
        self.metrics.in_flight(1)
        try:
            self.scorer.jobs.put(job)
            if self.wait_s is None:  # no wait limit: only the watchdog looks for a stuck run()
                (result, exec_ms) = await future
            else:
                timer = loop.call_later(self.wait_s, self._late, job)
                try:
                    (result, exec_ms) = await future
                finally:
                    timer.cancel()
        finally:
            self.metrics.in_flight(-1)
        if result is None:  # the scorer refused it: init() failed while it waited
            return self._not_started(), None
        if exec_ms is not None:
            self.metrics.run_done(exec_ms / 1000)
        return result, exec_ms

    def _late(self, job: Job) -> None:
        """A job's wait limit passed: refuse it unless a worker already took it."""
        if job.future.done() or not job.claim.acquire(blocking=False):
            return
        status, headers, body = _error(
            503,
            f"Too many requests for service {self.settings.service_name} (overloaded): no worker was free within "
            f"{self.wait_s * 1000:.0f} ms (max_request_wait_time). Retry later, or deploy with more replicas or workers.",
        )
        job.future.set_result(((status, headers + [(b"retry-after", b"1")], body), None))

    def watchdog(self) -> None:
        """Called every second on the event loop: a run() that ignores SIGALRM (stuck in native code)
        for `scoring_timeout_ms` + 5 s gets its 500, and the worker exits so the supervisor replaces it."""
        job, since = self.scorer.current, self.scorer.running_since
        if job is None or time.perf_counter() - since < self.backstop_s or job.future.done():
            return
        log.error(
            "server",
            f"run() is still busy {self.backstop_s:.0f} s after it started and ignores the timeout "
            "(stuck in native code?); this worker exits so the supervisor replaces it",
            request_id=job.request_id,
        )
        job.future.set_result((_error(500, f"Scoring timeout after {self.settings.scoring_timeout_ms} ms", True), None))
        job.loop.call_later(0.2, _exit_stuck_worker)

    def _not_started(self):
        failure = self.scorer.failure
        reason = failure.message if failure else "the scoring script failed to start"
        return _error(503, f"The scoring script could not start: {reason}. GET /ready or the logs show the traceback.")

    async def _read_body(self, request: HttpRequest, receive) -> bytes:
        limit = self.settings.max_body_bytes
        length = _header(request, b"content-length")
        if length.isdigit() and int(length) > limit:
            raise TooLarge
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def health(self, request: HttpRequest, request_id: str, receive):
        if request.method not in ("GET", "HEAD"):
            return _error(405, f"Method {request.method} is not allowed on /; use GET"), None
        return _HEALTHY, None

    async def ready(self, request: HttpRequest, request_id: str, receive):
        scorer = self.scorer
        if scorer.state == READY:
            body = {"status": "Ready", "input": scorer.script.style, "warnings": scorer.script.warnings}
            return (200, [outputs.JSON], json.dumps(body).encode()), None
        if scorer.state == STARTING:
            body = {"status": "Starting", "message": "init() has not finished yet"}
        else:
            failure = scorer.failure
            body = {"status": "Failed", "stage": failure.stage, "message": failure.message, "traceback": failure.traceback}
        return (503, [outputs.JSON], json.dumps(body).encode()), None

    async def swagger(self, request: HttpRequest, request_id: str, receive):
        if request.method not in ("GET", "HEAD"):
            return _error(405, f"Method {request.method} is not allowed on /swagger.json; use GET"), None
        if self.scorer.state != READY:
            return self._not_started() if self.scorer.state == FAILED else _error(503, "init() has not finished yet"), None
        if self._swagger is None:
            script = self.scorer.script
            s = self.settings
            self._swagger = Swagger(
                s.app_root, script.run, script.style == "schema", s.service_name, s.service_version, s.service_path_prefix
            )
        from .inputs import query_params

        version = query_params(request.query_string).get("version")
        try:
            body = self._swagger.document(None if version is None else str(version))
        except SwaggerError as e:
            return _error(404, str(e)), None
        return (200, [outputs.JSON], body), None

    async def prometheus(self, request: HttpRequest, request_id: str, receive):
        if not self.metrics.enabled:
            return _error(404, "Metrics are turned off for this service (metrics_enabled=false)"), None
        body, content_type = self.metrics.exposition()
        return (200, [(b"content-type", content_type.encode())], body), None

    async def not_found(self, request: HttpRequest, request_id: str, receive):
        return _error(404, NOT_FOUND), None

    def _cors_headers(self, request: HttpRequest) -> list[tuple[bytes, bytes]]:
        origin = _header(request, b"origin")
        if not origin or not (origin in self.cors or "*" in self.cors):
            return []
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if request.method == "OPTIONS":
            asked = _header(request, b"access-control-request-headers") or "Authorization, Content-Type"
            headers += [
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", asked.encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ]
        return headers


def _header(request: HttpRequest, name: bytes) -> str:
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _request_ids(request: HttpRequest) -> tuple[tuple[str, list], str]:
    """v1's request-id rules: echo or create `x-request-id`, keep the legacy and client ids."""
    request_id = client_id = legacy_id = trace_id = ""
    for key, value in request.headers:
        if key == b"x-request-id":
            request_id = value.decode("latin-1")
        elif key == b"x-ms-request-id":
            legacy_id = value.decode("latin-1")
        elif key == b"x-ms-client-request-id":
            client_id = value.decode("latin-1")
        elif key == b"traceid":
            trace_id = value.decode("latin-1")
    request_id = request_id or _new_request_id()
    if len(request_id) > HEADER_LIMIT:
        return ("", []), f"x-request-id must not exceed {HEADER_LIMIT} characters"
    if legacy_id:
        client_id = client_id or legacy_id
    else:
        legacy_id = client_id or request_id
    if len(legacy_id) > HEADER_LIMIT or len(client_id) > HEADER_LIMIT:
        return ("", []), f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters"
    headers = [(b"x-request-id", request_id.encode("latin-1")), (b"x-ms-request-id", legacy_id.encode("latin-1"))]
    if client_id:
        headers.append((b"x-ms-client-request-id", client_id.encode("latin-1")))
    if trace_id:
        headers.append((b"traceid", trace_id.encode("latin-1")))
    return (request_id, headers), ""


def _new_request_id() -> str:
    """A random (version 4) UUID, made 5x faster than uuid.uuid4(); `random` reseeds after each fork."""
    h = f"{getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _exit_stuck_worker() -> None:
    import os

    log.flush()
    os._exit(70)
