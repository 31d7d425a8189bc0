"""Run the scoring script: `init()` once, then `run()` for each request, in arrival order.

The script runs on the worker's main thread, one request at a time, as in v1's sync
gunicorn workers: scripts that use signals or main-thread-only libraries keep working, and
`scoring_timeout_ms` interrupts a slow `run()` with SIGALRM exactly as v1 does — in the main
thread only: threads that `run()` started keep running after its timeout (Python cannot stop
a thread), so a script that starts threads must bound them itself. A `run()` that returned
in time is never turned into a timeout, even when the alarm lands in the same instant. The event
loop lives on a second thread and hands requests over through a queue; it stays free
while `run()` works, so health probes and metrics are answered at once, and a request that
waits longer than `max_request_wait_time` is refused with 503 the moment its time is up.
The hand-off costs a few context switches per request (against `run()` on the event loop:
0-30 % of throughput for a 0.3 ms `run()`, measured in benchmarks/README.md, "Choosing the HTTP stack").
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import datacollection, outputs
from .batching import BATCHED, Batcher, Item, Unsplittable, plan_for
from .debugger import wait_for_debugger
from .http import INTERNAL_ERROR, Answer, Job
from .inputs import InputError, headers_dict
from .logs import log
from .metrics import Metrics
from .protocols import V1_PROTOCOL
from .script import LoadFailure, ScoringScript, describe_failure, user_traceback

STARTING, READY, FAILED = "starting", "ready", "failed"


class ScoringTimeout(BaseException):
    """Raised inside run() by SIGALRM; a BaseException so `except Exception` in run() cannot swallow it."""


class Scorer:
    def __init__(self, script: ScoringScript, timeout_ms: int, wait_ms: int | None, service_name: str, metrics: Metrics,
                 max_batch_size: int = 0, max_batch_latency_ms: float | None = None) -> None:  # fmt: skip
        self.script = script
        self.max_batch_size = max_batch_size
        self.max_batch_latency_ms = max_batch_latency_ms
        self.batcher: Batcher | None = None  # set once the script is loaded, when batching is on (or run is @batched)
        self.could_send: Callable[[], int] = lambda: 1  # clients that could send a request now (set by the worker)
        self.timeout_ms = timeout_ms
        self.timeout_s = timeout_ms / 1000.0
        self.wait_s = None if wait_ms is None else wait_ms / 1000.0
        self.service_name = service_name
        self.metrics = metrics
        self.state = STARTING
        self.failure: LoadFailure | None = None
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None  # the event loop's thread answers
        self.complete: Callable[[Job, Answer, float | None], None] = lambda job, answer, ms: None  # set by App
        self.current: Job | None = None  # the job in run() now, and since when (for the watchdog)
        self.running_since = 0.0
        self._in_run = False
        self._done: deque[tuple[Job, Answer, float | None]] = deque()
        self._waiting: deque[Job] = deque()  # submitted jobs, oldest first, until taken or refused (event loop only)
        self._timer: asyncio.TimerHandle | None = None
        self._wakeup_pending = False

    # -- start-up -------------------------------------------------------------------------------------
    def start(self, debug_port: str = "") -> None:
        """Import the script and call init() (after a debugger attached, with `debug_port`); record why if either fails."""
        signal.signal(signal.SIGALRM, self._on_alarm)
        stage = "import"
        try:
            if debug_port:
                stage = "debugger"
                wait_for_debugger(debug_port)
                stage = "import"
            self.script.load()
            for warning in self.script.warnings:
                log.warning("user_script", warning)
            stage = "init"
            log.info("user_script", f"calling init() (run() takes {self.script.style} input)", script=self.script.path)
            started = time.perf_counter()
            self.script.init()
            log.info("user_script", f"init() finished in {(time.perf_counter() - started) * 1000:.0f} ms")
            self.batcher = self._batcher()
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

    def _batcher(self) -> Batcher | None:
        """How requests share run() calls: each setting the service's when it sets it, else a @batched script's own,
        else the default (10 ms)."""
        own = getattr(self.script.run, BATCHED, None) or {}
        rows = self.max_batch_size or own.get("max_batch_size") or 0
        latency = next((v for v in (self.max_batch_latency_ms, own.get("max_batch_latency_ms")) if v is not None), 10.0)
        if rows <= 1 and not own:
            return None
        plan, why = plan_for(self.script)
        if plan is None:
            log.warning("user_script", f"max_batch_size={rows} has no effect: {why}")
            return None
        log.info("user_script", f"batching up to {max(rows, 1)} rows, waiting at most {latency:g} ms"
                 + (f" (rows of {', '.join(plan.rows_params)})" if plan.rows_params else " (@batched run)"))  # fmt: skip
        # answers computed and not yet handed to their connections count as sent: those clients send again soon
        return Batcher(plan, max(int(rows), 1), latency / 1000, could_send=lambda: self.could_send() + len(self._done))

    # -- the queue (submit and _refuse_late run on the event loop; serve on the main thread) -------------
    def submit(self, job: Job) -> None:
        self.jobs.put(job)
        if self.wait_s is not None:
            # One timer for the whole queue, not one per request: jobs wait in arrival order, so their
            # deadlines are in order too, and the timer only needs the oldest one's.
            job.deadline = self.loop.time() + self.wait_s
            waiting = self._waiting
            while waiting and waiting[0].claim.locked():  # taken by a worker meanwhile: forget it now, so that
                waiting.popleft()  # answered jobs are not kept for max_request_wait_time (GC work, stalls)
            waiting.append(job)
            if self._timer is None:
                self._timer = self.loop.call_at(job.deadline, self._refuse_late)

    def _refuse_late(self) -> None:
        """Answer 503 to every job past its deadline that no worker took; re-arm for the oldest one left."""
        self._timer = None
        waiting, now = self._waiting, self.loop.time()
        while waiting and (waiting[0].deadline <= now or waiting[0].claim.locked()):
            job = waiting.popleft()
            if job.claim.acquire(blocking=False):  # no worker took it in time
                self.complete(job, self._overloaded(job), None)
        if waiting:
            self._timer = self.loop.call_at(waiting[0].deadline, self._refuse_late)

    def _overloaded(self, job: Job) -> Answer:
        status, headers, body = _protocol(job).error(
            503,
            f"Too many requests for service {self.service_name} (overloaded): no worker was free within "
            f"{self.wait_s * 1000:.0f} ms (max_request_wait_time). Retry later, or deploy with more replicas or workers.",
        )
        return status, headers + [(b"retry-after", b"1")], body

    def serve(self) -> None:
        """Run jobs until a None arrives (main thread): one at a time, or in batches (batching.py)."""
        while True:
            batcher = self.batcher
            if batcher is not None and batcher.carry is not None:  # taken last time, did not fit that batch
                item, batcher.carry = batcher.carry, None
                if item.job.conn.transport is None:
                    continue
            else:
                job = self.jobs.get()
                if job is None:
                    return
                if not job.claim.acquire(blocking=False) or job.conn.transport is None:
                    continue  # refused meanwhile, or the client left
                item = self._parse(job)
                if item is None:
                    continue
            if batcher is None:
                items, stop = [item], False
            else:
                items, stop = batcher.take(item, self.jobs, self._parse)
            self._guarded(items)
            if stop:
                return

    def _guarded(self, items: list[Item]) -> None:
        """Run these requests; the last resort: a failure of the server itself fails those not answered yet, and the
        worker goes on."""
        try:
            if self.batcher is None:
                self._run_alone(items[0])
            else:
                self._run_batch(items)
        except BaseException as e:  # noqa: BLE001
            log.emit("CRITICAL", "server", f"unexpected {type(e).__name__} while scoring: {e}",
                     traceback=user_traceback(e), request_id=items[0].job.request_id)  # fmt: skip
            for item in items:
                if not item.answered:
                    self._finish(item, _protocol(item.job).error(500, INTERNAL_ERROR))
        finally:
            self.current = None

    def _finish(self, item: Item, answer: Answer, exec_ms: float | None = None) -> None:
        """Hand the answer to the event loop: one wake-up per burst of finished requests."""
        item.answered = True
        self._done.append((item.job, answer, exec_ms))
        if not self._wakeup_pending:
            self._wakeup_pending = True
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        self._wakeup_pending = False
        done = self._done
        while done:
            job, answer, exec_ms = done.popleft()
            try:
                self.complete(job, answer, exec_ms)
            except Exception as e:  # noqa: BLE001 - one connection's failure must not lose the other answers
                job.conn.crash(e)

    def stop(self) -> None:
        self.jobs.put(None)

    # -- running the script -----------------------------------------------------------------------------
    def _on_alarm(self, signum: int, frame: Any) -> None:
        # Raised only inside the script: an alarm that lands in the server's own frames (run() has just
        # returned, or is about to start) must not turn an answer into a timeout. The timer repeats every
        # 50 ms, so an alarm skipped before run() starts is followed by another one.
        if self._in_run and frame is not None and frame.f_code not in _OWN_FRAMES:
            raise ScoringTimeout()

    def _parse(self, job: Job) -> Item | None:
        """A claimed job as `run()`'s arguments and rows; a request whose input is bad is answered (None)."""
        self.current = job
        protocol = _protocol(job)
        try:
            kwargs, echo = protocol.arguments(self.script, job.request)
        except InputError as e:
            self._finish(Item(job, {}, 0), protocol.error(e.status, e.message))
            return None
        except Exception as e:  # noqa: BLE001 - a request the reader did not foresee fails alone; the worker goes on
            log.emit("CRITICAL", "server", f"unexpected {type(e).__name__} reading a {protocol.name} request: {e}",
                     traceback=user_traceback(e), request_id=job.request_id)  # fmt: skip
            self._finish(Item(job, {}, 0), protocol.error(400, f"the request could not be read ({type(e).__name__})"))
            return None
        if self.batcher is None:
            return Item(job, kwargs, 1, echo=echo)
        shape = self.batcher.plan.rows(kwargs)
        if shape is None:  # cannot share a call (not rows, rows of unequal length): served alone
            return Item(job, kwargs, 1, echo=echo, alone=True)
        rows, key = shape
        return Item(job, kwargs, rows, key, echo)

    def _run_alone(self, item: Item) -> None:
        headers = headers_dict(item.job.request.headers) if self.script.wants_headers else None
        outcome, value, exec_ms = self._call(item.kwargs, headers, item.job)
        if self.batcher is not None and exec_ms is not None and not item.alone:  # teaches the cost model too
            self.batcher.cost.observe(item.rows, exec_ms / 1000)
        self._finish(item, *self._answer(outcome, value, exec_ms, item))

    def _run_batch(self, items: list[Item]) -> None:
        batcher = self.batcher
        plan = batcher.plan
        if len(items) == 1 and not plan.listwise:
            self._run_alone(items[0])
            return
        waited = time.monotonic() - min(i.job.request.received for i in items)
        outcome, value, exec_ms = self._call(plan.merge(items), None, items[0].job)
        counts = [i.rows for i in items]
        if outcome == "ok":
            try:
                parts = plan.split(value, counts)
            except Unsplittable as e:
                if plan.listwise:
                    log.error("user_script", f"@batched run() must return one answer per input: {e}",
                              request_id=items[0].job.request_id)  # fmt: skip
                    for item in items:
                        self._finish(item, _protocol(item.job).error(500, INTERNAL_ERROR))
                    return
                batcher.splittable = False
                log.warning("user_script", f"batching turned off for this worker: {e}; each request is served alone")
                for item in items:
                    self._run_alone(item)
                return
            batcher.cost.observe(sum(counts), exec_ms / 1000)
            self.metrics.batch_done(sum(counts), waited)
            shared = (b"x-mlmagics-batch-rows", b"%d" % sum(counts))  # what clients (%test_service --bench) can see
            for item, part in zip(items, parts, strict=True):
                (status, headers, body), ms = self._answer("ok", part, exec_ms, item)
                self._finish(item, (status, [*headers, shared], body), ms)
        elif outcome == "error" and len(items) > 1:  # one bad input fails its own request only
            for item in items:
                self._run_batch([item]) if plan.listwise else self._run_alone(item)
        else:
            for item in items:
                self._finish(item, *self._answer(outcome, value, exec_ms, item))

    def _call(self, kwargs: dict[str, Any], headers: dict[str, str] | None, job: Job) -> tuple[str, Any, float | None]:
        """run() once, under scoring_timeout_ms: ("ok", value, ms), ("timeout", None, None) or ("error", exception, None)."""
        datacollection.current_request_id = job.request_id
        self.current = job
        started = self.running_since = time.perf_counter()
        try:
            try:
                self._in_run = True
                signal.setitimer(signal.ITIMER_REAL, self.timeout_s, 0.05)
                value = self.script.call(kwargs, headers)
            finally:
                self._in_run = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                self.running_since = 0.0
        except ScoringTimeout:
            return "timeout", None, None
        except BaseException as e:  # noqa: BLE001 - whatever the script raises (sys.exit, KeyboardInterrupt too) is v1's 500
            return "error", e, None
        return "ok", value, (time.perf_counter() - started) * 1000

    def _answer(self, outcome: str, value: Any, exec_ms: float | None, item: Item) -> tuple[Answer, float | None]:
        job, protocol = item.job, _protocol(item.job)
        if outcome == "timeout":
            log.error("user_script", f"run() did not finish within scoring_timeout_ms={self.timeout_ms}",
                      request_id=job.request_id)  # fmt: skip
            return protocol.error(500, f"Scoring timeout after {self.timeout_ms} ms", failed=True), None
        if outcome == "error":
            log.emit("ERROR", "user_script", f"run() raised {type(value).__name__}: {value}",
                     traceback=user_traceback(value), request_id=job.request_id)  # fmt: skip
            return protocol.error(500, SCRIPT_FAILED, True), None
        try:
            return protocol.answer(value, item.echo), exec_ms
        except outputs.OutputError as e:
            log.error("user_script", str(e), request_id=job.request_id)
            return protocol.error(500, INTERNAL_ERROR), None

    def check_stuck(self, grace_s: float = 5.0) -> None:
        """Called every second on the event loop: a run() that ignores SIGALRM (stuck in native code)
        for the timeout plus `grace_s` gets its 500, and the worker exits so the supervisor replaces it."""
        job, since = self.current, self.running_since
        if job is None or not since or time.perf_counter() - since < self.timeout_s + grace_s:
            return
        log.emit(
            "CRITICAL",
            "server",
            f"run() has been running {self.timeout_s + grace_s:.0f} s and ignores "
            "scoring_timeout_ms (stuck in native code?); this worker exits and is replaced",
            request_id=job.request_id,
        )
        self.complete(job, _protocol(job).error(500, f"Scoring timeout after {self.timeout_ms} ms", failed=True), None)
        self.loop.call_later(0.2, _exit_stuck_worker)


SCRIPT_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."


def _protocol(job: Job) -> Any:
    return job.protocol or V1_PROTOCOL


_OWN_FRAMES = {Scorer._call.__code__, ScoringScript.call.__code__}


def _exit_stuck_worker() -> None:
    from .logs import log as the_log

    the_log.flush()
    os._exit(70)


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
