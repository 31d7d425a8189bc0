"""One worker process: `init()`, then HTTP on an event-loop thread and `run()` on the main thread.

The supervisor forks workers after binding the listening socket, so every worker accepts
on the same port — but only once its `init()` has finished: a reload's new workers never
see a request unless they succeed (see supervisor.py). SIGTERM (or SIGINT) stops accepting,
answers what was received (at most `graceful_timeout_s`), and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import sys
import threading
import traceback
import warnings

from .app import App
from .balance import Seat
from .http import HttpServer
from .logs import capture_logging, configure, log
from .metrics import Metrics
from .scorer import FAILED, Scorer
from .script import ScoringScript
from .settings import Settings, tls_context


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # uvloop is Linux/macOS only; asyncio's own loop works, slower
        return asyncio.new_event_loop()


def run_worker(
    settings: Settings,
    sock: socket.socket,
    report_fd: int | None = None,
    candidate: bool = False,
    health_sock: socket.socket | None = None,
    supervisor: int | None = None,
    seat: Seat | None = None,
) -> int:
    """The body of a worker process; returns its exit code. `supervisor`: the pid that forked it;
    `seat`: its seat in the table that spreads connections over the workers (balance.py).

    A candidate (a worker started by a reload) whose init() fails exits at once; a first
    generation worker stays up to answer /ready and /score with the reason (unless
    `serve_init_failure` is off: then it accepts nothing).
    """
    log = configure(settings.log_format, settings.log_level)
    log.redirect_print()
    log.start_flusher()
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.warning(
        "warnings", f"{category.__name__}: {message}", where=f"{filename}:{lineno}"
    )
    # Nothing to drain before the loop runs: a stop request during init() ends the worker at once.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: os._exit(0))
    supervisor = supervisor or os.getppid()
    _stop_with_parent(supervisor)

    os.environ.update(settings.environment_variables)
    os.chdir(settings.app_root)
    folders = [settings.app_root, os.path.dirname(settings.entry_script)] if settings.entry_script else [settings.app_root]
    capture_logging(settings.log_level, folders)
    if settings.app_root not in sys.path:
        sys.path.insert(0, settings.app_root)
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY")
    if source_dir:
        sys.path.insert(0, os.path.join(settings.app_root, source_dir))

    metrics = Metrics(settings.metrics_enabled)
    scorer = Scorer(
        ScoringScript(settings.entry_script),
        settings.scoring_timeout_ms,
        settings.max_request_wait_time,
        settings.service_name,
        metrics,
        settings.max_batch_size,
        settings.max_batch_latency_ms,
    )
    scorer.start(settings.debug_port)
    _freeze_startup_objects()
    if scorer.state == FAILED:
        _report(report_fd, scorer.failure)
        report_fd = None
    if candidate and scorer.state == FAILED:
        return 3
    if scorer.state == FAILED and not settings.serve_init_failure:
        # The socket is shared with a running version (a Docker update): take none of its requests.
        # Stay alive, so that the failure stays on record instead of a restart loop; SIGTERM ends this.
        while True:
            signal.pause()

    loop = scorer.loop = new_event_loop()
    server = HttpServer(App(settings, scorer, metrics), settings)
    scorer.could_send = server.could_send
    health = HttpServer(App(settings, scorer, metrics, health_only=True), settings) if health_sock else None
    stop = asyncio.Event()

    failing: set[str] = set()  # periodic steps that failed: said once, not every second

    def every_second() -> None:
        loop.call_later(1.0, every_second)  # first: a failing step below must not stop the clock
        for step in (metrics.publish, scorer.check_stuck, check_supervisor):
            name = step.__qualname__
            try:
                step()
            except Exception as e:  # noqa: BLE001 - e.g. the metrics folder removed under us: say so, go on
                if name not in failing:
                    failing.add(name)
                    log.emit("ERROR", "server", f"{name} failed (said once until it works again): {type(e).__name__}: {e}")
            else:
                failing.discard(name)

    def check_supervisor() -> None:
        if os.getppid() != supervisor and not stop.is_set():
            # The supervisor died (SIGKILL): nobody would replace, reload or stop this worker, and the
            # target reports the service down; answer what was received and leave instead of serving on.
            log.emit("ERROR", "server", f"the supervisor (pid {supervisor}) is gone; this worker drains and exits")
            stop.set()

    async def serve() -> None:
        tls = tls_context(settings)
        await server.start(sock, tls, seat)
        if health:
            await health.start(health_sock, tls)
        # Ready only now that this worker accepts: an update or a reload switches traffic on this report.
        _report(report_fd, None)
        every_second()
        await stop.wait()
        if health:
            await health.shutdown(1.0)
        await server.shutdown(settings.graceful_timeout_s)

    outcome = {"code": 0}

    def serve_http() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as e:  # noqa: BLE001 - the worker must say why it stops serving, then be replaced
            log.emit("CRITICAL", "server", f"the HTTP loop stopped: {type(e).__name__}: {e}", traceback=traceback.format_exc())
            outcome["code"] = 1
        finally:
            scorer.stop()  # lets the main thread leave its job loop

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: loop.call_soon_threadsafe(stop.set))
    http = threading.Thread(target=serve_http, name="mlmagics-http", daemon=True)
    http.start()
    scorer.serve()
    http.join(settings.graceful_timeout_s + 5)
    metrics.publish()
    log.info("server", "worker stopped")
    log.flush()
    return outcome["code"]


def _stop_with_parent(supervisor: int) -> None:
    """Linux: the kernel sends this worker SIGTERM when its supervisor dies, even by SIGKILL (the once-a-second
    parent check in the event loop is the fallback elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # the supervisor died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _report(fd: int | None, failure) -> None:
    """Tell the supervisor how start-up went (one JSON message on a pipe): ready, or why not. The start-up's log
    lines are written first: whoever sees the service ready (or failed) finds them in the log."""
    log.flush()
    if fd is None:
        return
    report = (
        {"ok": True}
        if failure is None
        else {"ok": False, "stage": failure.stage, "message": failure.message, "traceback": failure.traceback}
    )
    try:
        os.write(fd, json.dumps(report).encode())
    finally:
        os.close(fd)


def _freeze_startup_objects() -> None:
    """Move what the imports and init() made (the model, numpy, sklearn: hundreds of thousands of objects) out of the
    cyclic collector's reach. Python's full collections walk every tracked object: measured here under load, one took
    60–170 ms in the middle of serving — every request of the worker waited for it. After gc.freeze() they walk only
    what serving allocated since. The garbage init() left is collected first; what is frozen stays for the worker's
    life, as it would anyway."""
    gc.collect()
    gc.freeze()
