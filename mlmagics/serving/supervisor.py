"""The server's main process: binds the port, forks the workers, replaces the ones that die.

SIGTERM or SIGINT stops it: each worker is told to finish the requests it holds, and
whatever has not exited after `graceful_timeout_s` (+5 s) is killed.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback

from .logs import configure, log
from .metrics import Metrics, retire_worker
from .settings import Settings

FAST_EXIT_S = 2.0  # a worker dying sooner than this after its start counts towards back-off


class PortInUse(Exception):
    pass


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} is already in use on {host}; choose another with --port or stop what uses it") from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _export_environment(settings: Settings) -> None:
    """What the scoring script (and the compatibility modules) read from the environment."""
    os.environ["AML_APP_ROOT"] = settings.app_root
    if settings.model_dir:
        os.environ["AZUREML_MODEL_DIR"] = settings.model_dir
    os.environ["SERVICE_NAME"] = settings.service_name
    os.environ["MLMAGICS_DATA_COLLECTION_DIR"] = settings.data_collection_dir
    os.environ["AML_MODEL_DC_STORAGE_ENABLED"] = "true" if settings.collect_model_data else "false"


def serve(settings: Settings) -> int:
    """Run the server in the foreground until SIGTERM/SIGINT; returns the exit code."""
    configure(settings.log_format, settings.log_level)
    _export_environment(settings)
    metrics_dir = ""
    if settings.metrics_enabled:
        metrics_dir = tempfile.mkdtemp(prefix="mlmagics-metrics-")
        os.environ["MLMAGICS_METRICS_DIR"] = metrics_dir
    try:
        sock = bind(settings.host, settings.port)
        return Supervisor(settings, sock).run()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, start time)
        self.stopping = False
        self.fast_exits = 0
        self.metrics = Metrics(settings.metrics_enabled)
        import uvicorn.protocols.http.httptools_impl  # noqa: F401 - imported once here, shared by every fork

        from . import worker  # noqa: F401

    def say(self, level: str, msg: str, **fields) -> None:
        log.emit(level, "server", msg, **fields)
        log.flush()

    def run(self) -> int:
        s = self.settings
        self.say(
            "INFO",
            f"mlmagics scoring server listening on http://{s.host}:{s.port}",
            entry_script=s.entry_script or "main.py",
            app_root=s.app_root,
            model_dir=s.model_dir,
            workers=s.workers,
            auth=s.auth_enabled,
            scoring_timeout_ms=s.scoring_timeout_ms,
            max_request_wait_time=s.max_request_wait_time,
            cors_origins=list(s.cors_origins),
            collect_model_data=s.collect_model_data,
        )
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGALRM, self._kill_rest)
        for slot in range(s.workers):
            self._spawn(slot)
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            slot, started = self.workers.pop(pid, (None, 0.0))
            if slot is None:
                continue
            if self.metrics.enabled:
                retire_worker(self.metrics.directory, pid)
            if self.stopping:
                continue
            self._replace(slot, pid, status, time.monotonic() - started)
        self.sock.close()
        self.say("INFO", "server stopped")
        return 0

    def _replace(self, slot: int, pid: int, status: int, lived: float) -> None:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit code {os.WEXITSTATUS(status)}"
        self.fast_exits = self.fast_exits + 1 if lived < FAST_EXIT_S else 0
        delay = min(0.1 * 2**self.fast_exits, 10.0) if self.fast_exits > 1 else 0.0
        self.say(
            "WARNING",
            f"worker {pid} died ({how}) after {lived:.1f} s; starting a new one" + (f" in {delay:.1f} s" if delay else ""),
        )
        self.metrics.worker_restarted()
        if delay:
            time.sleep(delay)
        if not self.stopping:
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        log.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
                    signal.signal(sig, signal.SIG_DFL)
                from .worker import run_worker

                code = run_worker(self.settings, self.sock)
            except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor's loop
                log.emit("CRITICAL", "server", "worker crashed", traceback=traceback.format_exc())
                log.flush()
            finally:
                os._exit(code)
        self.workers[pid] = (slot, time.monotonic())

    def _stop(self, signum, frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.say("INFO", f"received {signal.Signals(signum).name}: finishing in-flight requests, then stopping")
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        signal.alarm(int(self.settings.graceful_timeout_s) + 5)

    def _kill_rest(self, signum, frame) -> None:
        for pid in list(self.workers):
            self.say("WARNING", f"worker {pid} did not stop in time; killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
