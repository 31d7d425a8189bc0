"""The server's log: one line per event on stdout, JSON by default.

A JSON line is `{"time", "level", "logger", "pid", "msg", ...fields}`; the text form reads
like the reference server's (`2026-01-01T10:00:00.123Z I [pid] access - POST /score 200 ...`).
`print()` from the scoring script becomes a line from the `print` logger, as in v1.
Lines are kept in a list and written at most every 50 ms by a thread of their own, so a busy server
does not pay one system call per request, `get_logs()` still sees a line within a tick, and the
threads that answer requests never write the stream themselves: a write releases the GIL, and getting
it back behind the worker's main thread stalled the event loop for up to the switch interval (5 ms).
(By hand at 64 connections, request logging on cost about a third of the throughput before this, a fifth
after.) If the writer falls behind
(stdout not read), the thread that logs writes itself, as a plain stream would block it.

With a log file (`--log-file`, how the local target runs it) the file takes file descriptors 1
and 2 of every server process, so a library's own output and a crash's last words land there
too, and it is rotated by size (`server.log` -> `server.log.1` ... `.N`): the first process to
see it full after a flush renames it under a lock; the others notice the new file at their next
flush and follow.
"""

from __future__ import annotations

import builtins
import json
import logging
import logging.config
import os
import sys
import threading
import time
import traceback
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
MAX_PENDING_LINES = 10_000  # kept for the writer; past this the thread that logs writes them itself


class Log:
    def __init__(self, fmt: str = "json", level: str = "INFO", stream=None) -> None:
        self.fmt = fmt
        self.min_level = _LEVELS.get(level.upper(), 20)
        self.stream = stream or sys.stdout
        self.pid = os.getpid()
        self._lock = threading.Lock()  # guards _lines: held for an append or a swap, never across a write
        self._lines: list[str] = []
        self._write_lock = threading.Lock()  # one writer of the stream at a time
        self._second = -1
        self._stamp = ""
        self.file: LogFile | None = None

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once per second, milliseconds appended per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def emit(self, level: str, logger: str, msg: str, **fields: Any) -> None:
        if _LEVELS.get(level, 20) < self.min_level:
            return
        if self.fmt == "json":
            record = {"time": self._timestamp(), "level": level, "logger": logger, "pid": self.pid, "msg": msg}
            record.update(fields)
            line = json.dumps(record, default=str) + "\n"
        else:
            extra = "".join(f"\n{v}" if k in ("traceback", "exc") else f" {k}={v}" for k, v in fields.items())
            line = f"{self._timestamp()} {level[0]} [{self.pid}] {logger} - {msg}{extra}\n"
        self._add(line)

    def access(
        self, request_id: str, method: str, path: str, status: int, duration_ms: float, size: int, hint: str = ""
    ) -> None:
        """The per-request line: formatted by hand, it is written for every request. `hint` says why a
        request was refused, for the person reading the log (the client gets v1's own text)."""
        if self.min_level > 20:
            return
        msg = f"{method} {path} {status} {duration_ms:.3f}ms {size}"
        if self.fmt == "json":
            line = (
                f'{{"time": "{self._timestamp()}", "level": "INFO", "logger": "access", "pid": {self.pid}, '
                f'"msg": {_quote(msg)}, "request_id": {_quote(request_id)}, "method": {_quote(method)}, '
                f'"path": {_quote(path)}, "status": {status}, "duration_ms": {duration_ms:.3f}, "bytes": {size}'
                + (f', "hint": {_quote(hint)}}}\n' if hint else "}\n")
            )
        else:
            line = f"{self._timestamp()} I [{self.pid}] access - {msg} request_id={request_id}" + (
                f" hint={hint}\n" if hint else "\n"
            )
        self._add(line)

    def _add(self, line: str) -> None:
        with self._lock:
            lines = self._lines
            lines.append(line)
            behind = len(lines) >= MAX_PENDING_LINES
        if behind:
            self.flush()

    def info(self, logger: str, msg: str, **fields: Any) -> None:
        self.emit("INFO", logger, msg, **fields)

    def warning(self, logger: str, msg: str, **fields: Any) -> None:
        self.emit("WARNING", logger, msg, **fields)

    def error(self, logger: str, msg: str, exc: BaseException | None = None, **fields: Any) -> None:
        if exc is not None:
            fields["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.emit("ERROR", logger, msg, **fields)

    def flush(self) -> None:
        """Write the lines kept so far, in order (any thread; the flusher's, every 50 ms)."""
        with self._write_lock:
            with self._lock:
                lines, self._lines = self._lines, []
            if not lines:
                return
            if self.file is not None:
                self.file.follow()
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass
            if self.file is not None:
                self.file.rotate_if_full()

    def start_flusher(self, interval: float = 0.05) -> None:
        """Flush from a daemon thread, so lines reach the log even when no request comes."""

        def loop() -> None:
            while True:
                time.sleep(interval)
                self.flush()

        threading.Thread(target=loop, name="mlmagics-log-flush", daemon=True).start()

    def redirect_print(self) -> None:
        """Make `print()` to stdout a log line from the `print` logger (v1 does the same)."""
        original = builtins.print
        log = self

        def print_to_log(*objects, sep=" ", end="\n", file=None, flush=False):
            if file is None or file is sys.stdout:
                log.info("print", (sep or " ").join(map(str, objects)))
            else:
                original(*objects, sep=sep, end=end, file=file, flush=flush)

        builtins.print = print_to_log


class _Forward(logging.Handler):
    """A `logging` record from the script or its libraries as one of this log's lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            msg = f"{record.msg} {record.args}"
        fields: dict[str, Any] = {}
        if record.exc_info:
            fields["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        level = record.levelname if record.levelname in _LEVELS else "INFO"
        log.emit(level, record.name, msg, where=f"{record.pathname}:{record.lineno}", **fields)


def capture_logging(level: str, folders: list[str]) -> None:
    """Route the `logging` module into this log at `level` (v1 scripts log with it), then let a
    `logging.json` in the first of `folders` that has one reconfigure it, as v1 allows."""
    root = logging.getLogger()
    root.addHandler(_Forward())
    root.setLevel(_LEVELS.get(level.upper(), 20))
    for folder in folders:
        path = os.path.join(folder, "logging.json")
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(json.load(f))
            log.info("server", f"logging configured from {path}")
        except (OSError, ValueError, TypeError, AttributeError, ImportError) as e:
            log.warning("server", f"{path} was not applied ({type(e).__name__}: {e}); fix it or remove it")
        return


class LogFile:
    """Keeps stdout and stderr (fds 1 and 2) on `path`, rotating it at `max_bytes` into `backups` files."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.inode = -1

    def attach(self) -> None:
        """Point fds 1 and 2 at the file now at `path` (created if missing)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # logs may hold request data
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            self.inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def follow(self) -> None:
        """Before a flush: move to the new file if another process rotated this one (or it was removed)."""
        try:
            if os.stat(self.path).st_ino == self.inode:
                return
        except FileNotFoundError:
            pass
        self.attach()

    def rotate_if_full(self) -> None:
        """After a flush: rotate the file once it reached `max_bytes`."""
        try:
            if os.fstat(1).st_size < self.max_bytes:
                return
        except OSError:
            return
        self._rotate()

    def _rotate(self) -> None:
        import fcntl  # POSIX only, as is the rest of the runtime's process model

        # A POSIX record lock on the full file (fd 1): held per process, so forked workers sharing
        # the descriptor still exclude each other (flock would not); one rotates, the others follow.
        fcntl.lockf(1, fcntl.LOCK_EX)
        try:
            st = os.stat(self.path)
            if st.st_ino == self.inode and st.st_size >= self.max_bytes:  # nobody rotated it meanwhile
                for n in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{n}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{n + 1}")
                os.replace(self.path, f"{self.path}.1")
        except FileNotFoundError:
            pass  # removed meanwhile: attach() starts a new one
        finally:
            fcntl.lockf(1, fcntl.LOCK_UN)
        self.attach()


log = Log()


def configure(fmt: str, level: str, file: str = "", max_bytes: int = 0, backups: int = 0) -> Log:
    """Set the process-wide log's format and level, and its file if one is given (once per process;
    forked workers inherit the file)."""
    log.fmt = fmt
    log.min_level = _LEVELS.get(level.upper(), 20)
    log.pid = os.getpid()
    if file:
        sys.stdout.flush()
        sys.stderr.flush()
        log.file = LogFile(file, max_bytes, backups)
        log.file.attach()
    return log


def readable(lines: list[str]) -> list[str]:
    """This log's JSON lines as text for people: `time L logger: message`, a traceback spelled out
    under its line; lines that are not ours (a library's own output) pass as they are."""
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(record, dict) or "msg" not in record:
            out.append(line)
            continue
        out.append(f"{record.get('time', '')} {str(record.get('level', ''))[:1]} {record.get('logger', '')}: {record['msg']}")
        for key in ("traceback", "exc"):
            if record.get(key):
                out.extend("    " + t for t in str(record[key]).rstrip().splitlines())
    return out
