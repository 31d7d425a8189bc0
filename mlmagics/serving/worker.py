"""One worker process: the HTTP event loop on a thread, the scoring script on the main thread.

The supervisor forks workers after binding the listening socket, so every worker accepts
on the same port. SIGTERM (or SIGINT) asks the event loop to stop accepting, finish the
requests it holds (at most `graceful_timeout_s`), and exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import warnings

from .app import App
from .logs import configure
from .metrics import Metrics
from .scorer import FAILED, Scorer
from .script import ScoringScript
from .settings import Settings


class _ToLog(logging.Handler):
    """uvicorn's own warnings and errors, as lines of our log."""

    def __init__(self, log) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        fields = {"traceback": self.format(record).split("\n", 1)[1]} if record.exc_info else {}
        self.log.emit(record.levelname, record.name, record.getMessage(), **fields)


def run_worker(settings: Settings, sock: socket.socket, report_fd: int | None = None, candidate: bool = False) -> int:
    """The body of a worker process; returns its exit code.

    A candidate (a worker started by a reload) whose init() fails exits at once; a first
    generation worker stays up to answer /ready and /score with the reason.
    """
    import uvicorn

    log = configure(settings.log_format, settings.log_level)
    log.redirect_print()
    log.start_flusher()
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.warning(
        "warnings", f"{category.__name__}: {message}", where=f"{filename}:{lineno}"
    )
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers[:] = [_ToLog(log)]
    uvicorn_logger.propagate = False

    os.chdir(settings.app_root)
    if settings.app_root not in sys.path:
        sys.path.insert(0, settings.app_root)
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY")
    if source_dir:
        sys.path.insert(0, os.path.join(settings.app_root, source_dir))

    metrics = Metrics(settings.metrics_enabled)
    scorer = Scorer(ScoringScript(settings.entry_script), settings.scoring_timeout_ms, metrics)
    app = App(settings, scorer, metrics)
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
    server = uvicorn.Server(config)

    def serve_http() -> None:
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:  # uvloop is Linux/macOS only; asyncio's loop works, slower
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        def every_second() -> None:
            metrics.publish()
            app.watchdog()
            loop.call_later(1.0, every_second)

        loop.call_soon(every_second)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            metrics.publish()
            scorer.jobs.put(None)  # lets the main thread leave its job loop

    def stop(signum, frame) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # init() first, HTTP after: a worker takes no connection before its script is ready, so a
    # reload's new workers never see traffic unless they succeed (see supervisor.py).
    scorer.start()
    _report(report_fd, scorer)
    if candidate and scorer.state == FAILED:
        return 3
    http = threading.Thread(target=serve_http, name="mlmagics-http", daemon=True)
    http.start()
    scorer.serve()
    http.join(timeout=settings.graceful_timeout_s + 5)
    log.info("server", "worker stopped")
    log.flush()
    return 0


def _report(fd: int | None, scorer: Scorer) -> None:
    """Tell the supervisor how init() went (one JSON message on a pipe)."""
    if fd is None:
        return
    failure = scorer.failure
    report = (
        {"ok": True}
        if failure is None
        else {"ok": False, "stage": failure.stage, "message": failure.message, "traceback": failure.traceback}
    )
    try:
        os.write(fd, json.dumps(report).encode())
    finally:
        os.close(fd)
