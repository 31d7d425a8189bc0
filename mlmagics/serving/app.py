"""Routes and answers of a worker, as azureml-inference-server-http gives them (plus two).

    GET  /              liveness: 200 "Healthy" while the process runs
    GET  /ready         readiness: 200 once init() succeeded, else 503 with the reason and traceback
    GET|POST /score     run(); OPTIONS answers CORS pre-flights
    GET  /swagger.json  the API document (?version=2|3|3.1)
    GET  /metrics       Prometheus text format

and, on the same port and queue, the Open Inference Protocol (KServe v2: /v2/...) and MLflow's scoring
protocol (/invocations, /ping, /health, /version) — protocols.py.

With a separate health port (v1's `SEPERATE_HEALTH_ENDPOINT`, or `--health-port`) a second,
health-only App answers the probes there — `GET /`, `GET /ready`, the other protocols' (`/v2/health/live`,
`/v2/health/ready`, `/ping`, `/health`) — and `GET /metrics`, and only those: that port is the
platform's (probes, Prometheus), never published, so it asks for no key.

With key auth on, `/` and `/ready`'s status code are open to every prober; `/score`,
`/swagger.json`, `/metrics` and `/ready`'s details (what failed, its traceback) need the key.

Every answer carries the request id headers; every error body is `{"message": ...}`.
Cheap routes are answered at once, on the event loop; `/score` goes to the scorer, which runs
the script on the main thread. Answers on one connection keep their order: an answer that is
ready behind an unanswered request waits for it.
"""

from __future__ import annotations

import json
import time
from random import getrandbits

from mlmagics._version import __version__

from . import outputs
from .auth import UNAUTHORIZED, KeyAuth
from .http import Answer, Connection, HttpRequest, Job, error
from .inputs import InputError, query_params
from .logs import log
from .metrics import Metrics
from .protocols import MLFLOW_PROTOCOL, V1_PROTOCOL, OpenInference, model_metadata, server_metadata
from .scorer import FAILED, READY, Scorer
from .settings import Settings
from .swagger import Swagger, SwaggerError

HEADER_LIMIT = 100
# v1's answers to a path it does not serve and to a method a route does not take (Werkzeug's texts,
# which clients' tests compare); the server's own hint goes to the access log line instead.
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
)
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
_HEALTHY: Answer = (200, [outputs.TEXT_HTML], b"Healthy")
_QUIET_ROUTES = {"/", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready", "/ping", "/health"}  # no access line
_PROBES = ("/", "/ready", "/v2/health/live", "/v2/health/ready", "/ping", "/health")  # open; the rest needs the key
# The separate health port is for the platform (probes, a Prometheus scraping the pod), never published:
# it answers the probes and /metrics, without a key.
_HEALTH_PORT_ROUTES = (*_PROBES, "/metrics")
_METHODS = {  # route -> the methods it answers (v1's, with Flask's automatic HEAD and OPTIONS)
    "/score": ("GET", "POST", "OPTIONS"),
    "/": ("GET", "HEAD", "OPTIONS"),
    "/ready": ("GET", "HEAD", "OPTIONS"),
    "/swagger.json": ("GET", "HEAD", "OPTIONS"),
    "/metrics": ("GET", "HEAD", "OPTIONS"),
    # the Open Inference Protocol (KServe v2); "/v2/model..." stand for /v2/models/{name}[/versions/{v}]...
    "/v2": ("GET", "OPTIONS"),
    "/v2/health/live": ("GET", "OPTIONS"),
    "/v2/health/ready": ("GET", "OPTIONS"),
    "/v2/model": ("GET", "OPTIONS"),
    "/v2/model/ready": ("GET", "OPTIONS"),
    "/v2/model/infer": ("POST", "OPTIONS"),
    # MLflow's scoring protocol
    "/invocations": ("POST", "OPTIONS"),
    "/ping": ("GET", "OPTIONS"),
    "/health": ("GET", "OPTIONS"),
    "/version": ("GET", "OPTIONS"),
}
_SCORING = ("/score", "/v2/model/infer", "/invocations")  # the routes run() answers, through the queue
OTHER = "other"
UNKNOWN_MODEL = "unknown model"


class App:
    def __init__(self, settings: Settings, scorer: Scorer, metrics: Metrics, health_only: bool = False) -> None:
        self.settings = settings
        self.scorer = scorer
        self.metrics = metrics
        self.auth = KeyAuth(settings.auth_enabled, settings.keys, settings.keys_file)
        prefix = settings.service_path_prefix.strip("/")
        self.prefix = f"/{prefix}" if prefix else ""
        self.cors = set(settings.cors_origins)
        self._swagger: Swagger | None = None
        self.v2 = OpenInference(settings.service_name, settings.service_version)
        self.health_only = health_only
        if not health_only:
            scorer.complete = self.complete

    # -- entry points (called by the connection) --------------------------------------------------------
    def admit(self, conn: Connection, request: HttpRequest, named: dict[bytes, bytes]) -> Job:
        """At headers-complete, before the body is read: the request's job, with its answer
        already set when the request is refused (route, method, key, a script that failed).
        `named`: the request's headers by (lower-case) name."""
        path = request.path
        if self.prefix and path.startswith(self.prefix):
            path = request.path = path[len(self.prefix) :] or "/"
        request_id, id_headers, problem = request_ids(named)
        route = path if path in _METHODS else self.protocol_route(path)
        job = Job(conn, request, request_id, id_headers, route)
        if route.startswith("/v2") or route == UNKNOWN_MODEL:
            job.protocol = self.v2
        elif route in ("/invocations", "/ping", "/health", "/version"):
            job.protocol = MLFLOW_PROTOCOL
        if problem:
            job.answer = self.refusal(job, 431, problem)
        elif route == UNKNOWN_MODEL:
            job.answer = self.refusal(job, 404, f"Model {path.split('/')[3]!r} is not served here: this service serves "
                                                f"{self.v2.model!r} (version {self.v2.version!r})",
                                      hint="the v2 protocol's model name is the service's name")  # fmt: skip
        elif self.health_only and route not in _HEALTH_PORT_ROUTES:
            job.answer = self.refusal(job, 404, NOT_FOUND, hint=f"this is the health port (GET {', '.join(_HEALTH_PORT_ROUTES)} "
                                                               f"only); score on port {self.settings.port}")  # fmt: skip
        elif route == OTHER:
            job.answer = self.refusal(job, 404, NOT_FOUND, hint=f"no route {path}; the service answers {', '.join(_METHODS)}")
        elif request.method not in _METHODS[route]:
            allowed = ", ".join(m for m in _METHODS[route] if m != "OPTIONS")
            job.answer = self.refusal(job, 405, METHOD_NOT_ALLOWED, hint=f"{route} takes {allowed}")
        elif request.method == "OPTIONS" or route in _PROBES or self.health_only:
            pass  # pre-flights carry no key; probes are open (/ready's details need the key, see ready())
        elif not self.auth.allows(named.get(b"authorization", b"")):
            status, headers, body = self.refusal(job, 401, UNAUTHORIZED)
            job.answer = status, headers + [(b"www-authenticate", b"Bearer")], body
        elif route in _SCORING and self.scorer.state == FAILED:
            job.answer = self.not_started(job)
        return job

    def protocol_route(self, path: str) -> str:
        """/v2/models/{name}[/versions/{v}][/ready|/infer] -> "/v2/model[/ready|/infer]" when {name} (and {v}) are
        this service's, UNKNOWN_MODEL when not; OTHER for any other path."""
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "v2" or parts[2] != "models":
            return OTHER
        name, rest = parts[3], parts[4:]
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
            if version != self.v2.version:
                return UNKNOWN_MODEL
        if name != self.v2.model:
            return UNKNOWN_MODEL
        if not rest:
            return "/v2/model"
        return f"/v2/model/{rest[0]}" if len(rest) == 1 and rest[0] in ("ready", "infer") else OTHER

    def refusal(self, job: Job, status: int, message: str, hint: str = "", retry_after: bool = False) -> Answer:
        """An error answer for `job`, in its protocol's own form; `hint` (for the person reading the log) goes to its
        access line."""
        job.hint = hint
        status, headers, body = (job.protocol or V1_PROTOCOL).error(status, message)
        if retry_after:
            headers = headers + [(b"retry-after", b"1")]
        return status, headers, body

    def protocol_error(self, conn: Connection, status: int, message: str) -> Job:
        """The job of an answer to bytes that are not a request this server can read (400, 408, 414, 431 ...)."""
        request = HttpRequest("-", "-", b"", [], keep_alive=False, client=conn.client[:2])
        job = Job(conn, request, new_request_id().decode(), [], OTHER)
        job.answer = error(status, message)
        return job

    def dispatch(self, job: Job) -> None:
        """The request is complete (or refused; the connection holds it among its pending ones): queue its answer,
        or work it out."""
        if job.answer is not None:
            job.conn.flush()
            return
        request = job.request
        if request.method == "OPTIONS":
            self.complete(job, self.options(job.route), None)
        elif job.route in _SCORING:
            self.scorer.submit(job)  # answered through complete() once run() returns
        else:
            try:
                answer = self.answer(job.route, request)
            except InputError as e:
                answer = error(e.status, e.message)
            self.complete(job, answer, None)

    def complete(self, job: Job, answer: Answer, exec_ms: float | None) -> None:
        """The answer is known; it goes out as soon as the connection's earlier answers have."""
        job.answer = answer
        job.exec_ms = exec_ms
        job.conn.flush()

    def write(self, job: Job) -> None:
        status, headers, body = job.answer
        request = job.request
        headers = headers + job.id_headers
        if job.exec_ms is not None:
            headers.append((b"x-ms-run-fn-exec-ms", b"%.3f" % job.exec_ms))
            self.metrics.run_done(job.exec_ms / 1000)
        if self.cors:
            headers.extend(self.cors_headers(request))
        job.conn.send(request, status, headers, body)
        seconds = time.monotonic() - request.received
        self.metrics.request_done(job.route, request.method, status, seconds)
        if self.settings.request_log and (job.route not in _QUIET_ROUTES or status >= 400):
            log.access(job.request_id, request.method, request.path, status, seconds * 1000, len(body), job.hint)

    # -- routes -------------------------------------------------------------------------------------------
    def options(self, route: str) -> Answer:
        """v1: `OPTIONS /score` is 200 with an empty body (CORS headers added when on); Flask's automatic
        OPTIONS elsewhere adds `Allow`."""
        if route == "/score":
            return 200, [outputs.TEXT_HTML, outputs.RUN_OK], b""
        return 200, [outputs.TEXT_HTML, (b"allow", ", ".join(_METHODS[route]).encode())], b""

    def answer(self, route: str, request: HttpRequest) -> Answer:
        """The answer of a cheap route (admitted: its method and key are right), given on the event loop."""
        if route == "/":
            return _HEALTHY
        if route == "/ready":
            return self.ready(self.auth.allows(request.header(b"authorization").encode("latin-1")))
        if route == "/swagger.json":
            return self.swagger(request)
        if route != "/metrics":
            return self.protocol_answer(route)
        if not self.metrics.enabled:
            return error(404, "Metrics are turned off for this service (metrics_enabled=false)")
        body, content_type = self.metrics.exposition()
        return 200, [(b"content-type", content_type.encode())], body

    def protocol_answer(self, route: str) -> Answer:
        """The v2 and MLflow protocols' cheap routes: health, readiness, metadata, version."""
        ready = self.scorer.state == READY
        if route == "/v2/health/live":
            return 200, [outputs.JSON], b'{"live": true}'
        if route in ("/v2/health/ready", "/v2/model/ready"):
            return (200 if ready else 503), [outputs.JSON], b'{"ready": true}' if ready else b'{"ready": false}'
        if route == "/v2":
            return 200, [outputs.JSON], json.dumps(server_metadata(__version__)).encode()
        if route == "/v2/model":
            if not ready:
                return self.v2.error(503, "the scoring script is not ready: GET /ready says why")
            return 200, [outputs.JSON], json.dumps(model_metadata(self.scorer.script, self.v2.model, self.v2.version)).encode()
        if route in ("/ping", "/health"):  # MLflow's: 200 once the model is loaded, else 404
            return (200 if ready else 404), [outputs.JSON], b"\n"
        return 200, [(b"content-type", b"text/plain; charset=utf-8")], __version__.encode()  # /version

    def not_started(self, job: Job | None = None) -> Answer:
        failure = self.scorer.failure
        reason = failure.message if failure else "the scoring script failed to start"
        message = f"The scoring script could not start: {reason}. GET /ready or the logs show the traceback."
        return (job.protocol if job is not None and job.protocol else V1_PROTOCOL).error(503, message)

    def ready(self, with_details: bool = True) -> Answer:
        """200 once init() succeeded, else 503 — for every prober; what the script is and why it failed
        (a traceback shows code and paths) only with a key when key auth is on."""
        scorer = self.scorer
        if scorer.state == READY:
            body = {"status": "Ready", "input": scorer.script.style, "warnings": scorer.script.warnings}
            status = 200
        else:
            failure = scorer.failure
            body = {"status": "Failed", "stage": failure.stage, "message": failure.message, "traceback": failure.traceback}
            status = 503
        if not with_details:
            body = {"status": body["status"], "details": "send the service's key to see the details"}
        return status, [outputs.JSON], json.dumps(body).encode()

    def swagger(self, request: HttpRequest) -> Answer:
        if self.scorer.state != READY:
            return self.not_started()
        if self._swagger is None:
            script, s = self.scorer.script, self.settings
            self._swagger = Swagger(
                s.app_root, script.run, script.style == "schema", s.service_name, s.service_version, s.service_path_prefix
            )
        version = query_params(request.query_string).get("version")  # InputError (400) for a hostile query
        try:
            return 200, [outputs.JSON], self._swagger.document(None if version is None else str(version))
        except SwaggerError as e:
            return error(404, str(e))

    def cors_headers(self, request: HttpRequest) -> list[tuple[bytes, bytes]]:
        origin = request.header(b"origin")
        if not origin or not (origin in self.cors or "*" in self.cors):
            return []
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if request.method == "OPTIONS":
            asked = request.header(b"access-control-request-headers") or "Authorization, Content-Type"
            headers += [
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", asked.encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ]
        return headers


def request_ids(named: dict[bytes, bytes]) -> tuple[str, list[tuple[bytes, bytes]], str]:
    """v1's request-id rules: echo or create `x-request-id`, keep the legacy and client ids.

    Returns (request id, headers for the answer, problem); a problem means 431.
    """
    legacy_id = named.get(b"x-ms-request-id", b"")
    client_id = named.get(b"x-ms-client-request-id", b"")
    trace_id = named.get(b"traceid", b"")
    request_id = named.get(b"x-request-id") or new_request_id()
    if len(request_id) > HEADER_LIMIT:
        return "", [], f"x-request-id must not exceed {HEADER_LIMIT} characters"
    if legacy_id:
        client_id = client_id or legacy_id
    else:
        legacy_id = client_id or request_id
    if len(legacy_id) > HEADER_LIMIT or len(client_id) > HEADER_LIMIT:
        return "", [], f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters"
    headers = [(b"x-request-id", request_id), (b"x-ms-request-id", legacy_id)]
    if client_id:
        headers.append((b"x-ms-client-request-id", client_id))
    if trace_id:
        headers.append((b"traceid", trace_id))
    return request_id.decode("latin-1"), headers, ""


def new_request_id() -> bytes:
    """A random (version 4) UUID, 5x faster than uuid.uuid4(); `random` reseeds itself after each fork."""
    h = b"%032x" % getrandbits(128)
    return b"%s-%s-4%s-%c%s-%s" % (h[:8], h[8:12], h[13:16], b"89ab"[int(h[16:17], 16) & 3], h[17:20], h[20:32])
