"""The server's main process: binds the port, forks the workers, replaces the ones that die.

- SIGTERM or SIGINT stops it: each worker finishes the requests it holds; whatever has not
  exited after `graceful_timeout_s` (+5 s) is killed.
- SIGHUP reloads it with new settings (another script, model or configuration) without
  dropping a request and without a new port: a new generation of workers starts and runs
  `init()`; only when every one of them is ready is the old generation told to drain and
  stop. If any of them fails, they are killed and the old generation keeps serving.
  This is how a deployed service is updated in place (see `core/targets/local/`).
- With `--state-file`, the supervisor keeps a JSON file describing itself up to date:
  port, generation, each worker's state, and the outcome of the last reload.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .balance import Seat, Table, parallel_cpus
from .listener import receive
from .logs import configure, log
from .metrics import Metrics, retire_worker
from .settings import Settings, SettingsError

FAST_EXIT_S = 2.0  # a worker dying sooner than this after its start counts towards back-off


class PortInUse(Exception):
    pass


def bind(host: str, port: int, option: str = "--port") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} is already in use on {host}; choose another with {option} or stop what uses it"
            ) from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def export_environment(settings: Settings) -> None:
    """What the scoring script (and the compatibility modules) read from the environment."""
    os.environ["AML_APP_ROOT"] = settings.app_root
    if settings.model_dir:
        os.environ["AZUREML_MODEL_DIR"] = settings.model_dir
    else:
        os.environ.pop("AZUREML_MODEL_DIR", None)
    os.environ["SERVICE_NAME"] = settings.service_name
    os.environ["MLMAGICS_DATA_COLLECTION_DIR"] = settings.data_collection_dir
    os.environ["MLMAGICS_DATA_COLLECTION_FILE_BYTES"] = str(settings.data_collection_file_bytes)
    os.environ["MLMAGICS_DATA_COLLECTION_MAX_BYTES"] = str(settings.data_collection_max_bytes)
    os.environ["AML_MODEL_DC_STORAGE_ENABLED"] = "true" if settings.collect_model_data else "false"


def serve(settings: Settings, reload_source: Callable[[], Settings] | None = None, state_file: str = "") -> int:
    """Run the server in the foreground until SIGTERM/SIGINT; returns the exit code."""
    configure(settings.log_format, settings.log_level, settings.log_file, settings.log_max_bytes, settings.log_backups)
    export_environment(settings)
    metrics_dir = ""
    if settings.metrics_enabled:
        metrics_dir = tempfile.mkdtemp(prefix="mlmagics-metrics-")
        os.environ["MLMAGICS_METRICS_DIR"] = metrics_dir
    try:
        # A handed-over socket (listener.py) keeps a service's address across an update between containers.
        sock = receive(settings.listen_from) if settings.listen_from else bind(settings.host, settings.port)
        health_port = settings.separate_health_port
        try:
            health_sock = bind(settings.host, health_port, "--health-port") if health_port else None
        except PortInUse:
            sock.close()
            raise
        return Supervisor(settings, sock, reload_source, state_file, health_sock).run()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@dataclass
class Worker:
    pid: int
    slot: int
    generation: int
    started: float
    report_fd: int  # the worker writes one JSON line here once init() finished (or failed)
    seat: Seat | None = None  # its seat in the table that balances connections (balance.py)
    state: str = "starting"  # starting | ready | failed
    failure: dict | None = None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        sock: socket.socket,
        reload_source: Callable[[], Settings] | None = None,
        state_file: str = "",
        health_sock: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.health_sock = health_sock  # the separate health-only port, when there is one
        self.reload_source = reload_source
        self.state_file = state_file
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.stopping = False
        self.stop_requested = self.reload_requested = False
        self.fast_exits = 0
        self.last_reload: dict | None = None
        self.metrics = Metrics(settings.metrics_enabled)
        self.balance = Table()
        self.cpus = parallel_cpus()  # workers that cannot run at once are not balanced (balance.py)
        from . import worker  # noqa: F401 - imported once here, before forking: shared by every worker
        from .worker import new_event_loop

        new_event_loop().close()  # imports uvloop too

    def say(self, level: str, msg: str, **fields) -> None:
        log.emit(level, "server", msg, **fields)
        log.flush()

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        host, port = self.sock.getsockname()[:2]
        scheme = "https" if s.ssl_cert_file else "http"
        self.say(
            "INFO",
            f"mlmagics scoring server listening on {scheme}://{host}:{port}"
            + (f" (socket handed over at {s.listen_from})" if s.listen_from else "")
            + (f", health on {scheme}://{s.host}:{self.health_sock.getsockname()[1]}/" if self.health_sock else ""),
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
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # every signal also wakes select() below
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGALRM, self._kill_rest)
        for slot in range(s.workers):
            self._spawn(slot)
        self._write_state()
        while self.workers or not self.stopping:
            fds = [self.wake_r] + [w.report_fd for w in self.workers.values() if w.state == "starting"]
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except InterruptedError:
                readable = []
            for fd in readable:
                if fd == self.wake_r:
                    _drain(fd)
                else:
                    self._read_report(fd)
            self._reap()
            if self.stop_requested and not self.stopping:
                self._begin_stop()
            if self.reload_requested and not self.stopping:
                self.reload_requested = False
                self._reload()
        self.sock.close()
        if self.health_sock:
            self.health_sock.close()
        self.say("INFO", "server stopped")
        return 0

    def _on_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _on_reload(self, signum, frame) -> None:
        self.reload_requested = True

    # -- workers -------------------------------------------------------------------------------------
    def _spawn(self, slot: int, candidate: bool = False, generation: int | None = None) -> Worker:
        log.flush()
        report_r, report_w = os.pipe()
        supervisor = os.getpid()
        generation = self.generation if generation is None else generation
        balanced = self.settings.workers > 1 and self.cpus > 1
        seat = self.balance.take(generation) if balanced else None
        try:
            pid = os.fork()
        except OSError:
            self.balance.free(seat)
            os.close(report_r)
            os.close(report_w)
            raise
        if pid == 0:
            code = 1
            try:
                os.close(report_r)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                from .worker import run_worker

                code = run_worker(self.settings, self.sock, report_w, candidate, self.health_sock, supervisor, seat)
            except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor's loop
                log.emit("CRITICAL", "server", "worker crashed", traceback=traceback.format_exc())
                log.flush()
            finally:
                os._exit(code)
        os.close(report_w)
        worker = Worker(pid, slot, generation, time.monotonic(), report_r, seat=seat)
        self.workers[pid] = worker
        return worker

    def _read_report(self, fd: int) -> None:
        worker = next((w for w in self.workers.values() if w.report_fd == fd), None)
        if worker is None:
            return
        try:
            data = os.read(fd, 1 << 20)
        except OSError:
            data = b""
        try:
            report = json.loads(data) if data else {"ok": False, "message": "worker exited during init()"}
        except ValueError:
            report = {"ok": False, "message": "worker sent an unreadable report"}
        worker.state = "ready" if report.get("ok") else "failed"
        worker.failure = None if report.get("ok") else report
        self._write_state()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            _close(worker.report_fd)
            self.balance.free(worker.seat)
            if self.metrics.enabled:
                retire_worker(self.metrics.directory, pid)
            if not self.stopping and worker.generation == self.generation:
                self._replace(worker, status)
            self._write_state()

    def _replace(self, worker: Worker, status: int) -> None:
        lived = time.monotonic() - worker.started
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit code {os.WEXITSTATUS(status)}"
        self.fast_exits = self.fast_exits + 1 if lived < FAST_EXIT_S else 0
        delay = min(0.1 * 2**self.fast_exits, 10.0) if self.fast_exits > 1 else 0.0
        self.say(
            "WARNING",
            f"worker {worker.pid} died ({how}) after {lived:.1f} s; starting a new one" + (f" in {delay:.1f} s" if delay else ""),
        )
        self.metrics.worker_restarted()
        if delay:
            time.sleep(delay)
        if not self.stop_requested:
            self._spawn(worker.slot)

    # -- reload ----------------------------------------------------------------------------------------
    def _reload(self) -> None:
        """Start a new generation; switch to it only if all of it is ready."""
        old = self.settings
        started = time.monotonic()
        try:
            new = self.reload_source() if self.reload_source else None
            if new is None:
                raise SettingsError("this server was started without a reload source")
            if (new.host, new.port) != (old.host, old.port):
                raise SettingsError(f"a reload cannot move the server from {old.host}:{old.port} to {new.host}:{new.port}")
        except SettingsError as e:
            self._finish_reload(False, f"reload refused: {e}", None)
            return
        self.say("INFO", "reload: starting a new generation of workers", entry_script=new.entry_script, model_dir=new.model_dir)
        export_environment(new)
        self.settings = new
        generation = self.generation + 1
        candidates = [self._spawn(slot, candidate=True, generation=generation) for slot in range(new.workers)]
        deadline = started + new.startup_timeout_s
        while any(c.state == "starting" for c in candidates) and time.monotonic() < deadline:
            waiting = [c.report_fd for c in candidates if c.state == "starting"]
            readable, _, _ = select.select(waiting, [], [], max(0.0, min(1.0, deadline - time.monotonic())))
            for fd in readable:
                self._read_report(fd)
        failed = next((c for c in candidates if c.state != "ready"), None)
        if failed is None:
            previous = [w for w in self.workers.values() if w.generation == self.generation]
            self.generation = generation
            self.balance.serve(generation)  # its workers share the connections from now on
            for w in previous:
                _signal(w.pid, signal.SIGTERM)  # drain, then exit; not replaced (old generation)
            self._finish_reload(True, f"reload: generation {generation} is serving ({time.monotonic() - started:.1f} s)", None)
            return
        for c in candidates:
            _signal(c.pid, signal.SIGKILL)
        self.settings = old
        export_environment(old)
        failure = failed.failure or {"message": f"init() did not finish within {new.startup_timeout_s:.0f} s"}
        self._finish_reload(False, f"reload failed, the previous version keeps serving: {failure.get('message')}", failure)

    def _finish_reload(self, ok: bool, message: str, failure: dict | None) -> None:
        self.last_reload = {
            "ok": ok,
            "generation": self.generation,
            "message": message,
            "traceback": (failure or {}).get("traceback", ""),
            "time": time.time(),
        }
        self.say(
            "INFO" if ok else "ERROR",
            message,
            **({"traceback": failure["traceback"]} if failure and failure.get("traceback") else {}),
        )
        self._write_state()

    # -- stopping --------------------------------------------------------------------------------------
    def _begin_stop(self) -> None:
        self.stopping = True
        self.say("INFO", "stopping: finishing in-flight requests")
        for pid in list(self.workers):
            _signal(pid, signal.SIGTERM)
        signal.alarm(int(self.settings.graceful_timeout_s) + 5)

    def _kill_rest(self, signum, frame) -> None:
        for pid in list(self.workers):
            self.say("WARNING", f"worker {pid} did not stop in time; killing it")
            _signal(pid, signal.SIGKILL)

    # -- state file ------------------------------------------------------------------------------------
    def _write_state(self) -> None:
        if not self.state_file:
            return
        current = [w for w in self.workers.values() if w.generation == self.generation]
        failure = next((w.failure for w in current if w.failure), None)
        s = self.settings
        state = {
            "pid": os.getpid(),
            "host": s.host,
            "port": s.port,
            "health_port": self.health_sock.getsockname()[1] if self.health_sock else None,
            "generation": self.generation,
            "entry_script": s.entry_script,
            "app_root": s.app_root,
            "model_dir": s.model_dir,
            "workers": {str(w.pid): w.state for w in current},
            "init_failure": failure,
            "reload": self.last_reload,
            "stopping": self.stopping,
            "updated": time.time(),
        }
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_file)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
