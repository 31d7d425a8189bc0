"""Run the scoring script on the worker's main thread, one request at a time.

The HTTP event loop lives on a second thread and hands each scoring request over as a
`Job`. Keeping `init()`/`run()` on the main thread is what v1's sync gunicorn workers did
(scripts that use signals or main-thread-only libraries keep working) and lets
`scoring_timeout_ms` interrupt a slow `run()` with SIGALRM, exactly as v1 does; the event
loop meanwhile stays free to answer health checks, metrics and the 503s of an overload.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

from . import datacollection, outputs
from .inputs import HttpRequest, InputError, headers_dict, run_arguments
from .logs import log
from .metrics import Metrics
from .script import LoadFailure, ScoringScript, describe_failure

STARTING, READY, FAILED = "starting", "ready", "failed"
Answer = tuple[int, list, bytes]


class ScoringTimeout(BaseException):
    """Raised inside run() by SIGALRM; a BaseException so `except Exception` in run() cannot swallow it."""


def _error(status: int, message: str, failed: bool = False) -> Answer:
    return status, [outputs.JSON, outputs.RUN_FAILED if failed else outputs.RUN_OK], outputs.error_body(message)


class Job:
    """One scoring request, claimed either by the scorer (to run it) or by the loop (to refuse it)."""

    __slots__ = ("request", "request_id", "future", "loop", "claim")

    def __init__(self, request: HttpRequest, request_id: str, future, loop) -> None:
        self.request = request
        self.request_id = request_id
        self.future = future
        self.loop = loop
        self.claim = threading.Lock()

    def finish(self, result: Answer | None, exec_ms: float | None = None) -> None:
        self.loop.call_soon_threadsafe(_resolve, self.future, result, exec_ms)


def _resolve(future, result: Answer | None, exec_ms: float | None) -> None:
    if not future.done():
        future.set_result((result, exec_ms))


class Scorer:
    def __init__(self, script: ScoringScript, timeout_ms: int, metrics: Metrics) -> None:
        self.script = script
        self.timeout_s = timeout_ms / 1000.0
        self.timeout_ms = timeout_ms
        self.metrics = metrics
        self.state = STARTING
        self.failure: LoadFailure | None = None
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.ready_event = threading.Event()
        self._in_run = False
        self.current: Job | None = None  # the job in run() now, and since when (for the watchdog)
        self.running_since = 0.0

    # -- main thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Import the script and call init(); record why if either fails."""
        signal.signal(signal.SIGALRM, self._on_alarm)
        stage = "import"
        try:
            self.script.load()
            for warning in self.script.warnings:
                log.warning("user_script", warning)
            stage = "init"
            log.info("user_script", f"calling init() (run() takes {self.script.style} input)", script=self.script.path)
            started = time.perf_counter()
            self.script.init()
            log.info("user_script", f"init() finished in {(time.perf_counter() - started) * 1000:.0f} ms")
            self.state = READY
            self.metrics.worker_ready()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a failing script (even sys.exit) is reported, not fatal
            self.failure = describe_failure(stage, exc)
            self.state = FAILED
            log.emit(
                "ERROR",
                "user_script",
                self.failure.message,
                traceback=self.failure.traceback,
                model_dir_tree=_tree(os.environ.get("AZUREML_MODEL_DIR", "")),
            )
        finally:
            self.ready_event.set()

    def serve(self) -> None:
        """Run jobs until a None arrives."""
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if not job.claim.acquire(blocking=False):
                continue  # the event loop already refused it (waited too long)
            if self.state == READY:
                self.running_since = time.perf_counter()
                self.current = job
                self._execute(job)
                self.current = None
            else:
                job.finish(None)  # init() failed while this request waited

    def _on_alarm(self, signum, frame) -> None:
        if self._in_run:
            raise ScoringTimeout()

    def _execute(self, job: Job) -> None:
        request = job.request
        started = time.perf_counter()
        exec_ms = None
        try:
            kwargs = run_arguments(self.script, request)
            headers = headers_dict(request.headers) if self.script.wants_headers else None
            datacollection.current_request_id = job.request_id
            run_started = time.perf_counter()
            try:
                self._in_run = True
                signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
                value = self.script.call(kwargs, headers)
            finally:
                self._in_run = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            exec_ms = (time.perf_counter() - run_started) * 1000
            result = outputs.answer(value)
        except InputError as e:
            result = _error(e.status, e.message)
        except ScoringTimeout:
            log.error(
                "user_script", f"run() did not finish within scoring_timeout_ms={self.timeout_ms}", request_id=job.request_id
            )
            result = _error(500, f"Scoring timeout after {self.timeout_ms} ms", failed=True)
        except outputs.OutputError as e:
            log.error("user_script", str(e), request_id=job.request_id)
            result = _error(500, "An unexpected internal error occurred. Check the logs for more info.")
        except Exception as e:  # noqa: BLE001 - the script's exception becomes v1's 500
            log.error("user_script", f"run() raised {type(e).__name__}: {e}", exc=e, request_id=job.request_id)
            result = _error(500, "An unexpected error occurred in scoring script. Check the logs for more info.", True)
        if exec_ms is None:
            exec_ms = (time.perf_counter() - started) * 1000
        job.finish(result, exec_ms)


def _tree(root: str, limit: int = 200) -> str:
    """The model folder's content (v1 logs it when init() fails: most failures are a wrong path)."""
    if not root:
        return "(AZUREML_MODEL_DIR is not set)"
    if not os.path.isdir(root):
        return f"{root} does not exist"
    lines: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        depth = folder[len(root) :].count(os.sep)
        lines.append("    " * depth + (os.path.basename(folder) or folder) + "/")
        lines.extend("    " * (depth + 1) + f for f in sorted(files))
        if len(lines) >= limit:
            lines.append("...")
            break
    return "\n".join(lines[: limit + 1])
