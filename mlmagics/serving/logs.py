"""The server's log: one line per event on stdout, JSON by default.

A JSON line is `{"time", "level", "logger", "pid", "msg", ...fields}`; the text form reads
like the reference server's (`2026-01-01T10:00:00.123Z I [pid] access - POST /score 200 ...`).
`print()` from the scoring script becomes a line from the `print` logger, as in v1.
Writes are buffered and flushed at most every 50 ms, so a busy server does not pay one
system call per request, and `get_logs()` still sees a line within a tick.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import threading
import time
import traceback
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class Log:
    def __init__(self, fmt: str = "json", level: str = "INFO", stream=None) -> None:
        self.fmt = fmt
        self.min_level = _LEVELS.get(level.upper(), 20)
        self.stream = stream or sys.stdout
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._pending = False
        self._second = -1
        self._stamp = ""

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
        with self._lock:
            self.stream.write(line)
            self._pending = True

    def access(self, request_id: str, method: str, path: str, status: int, duration_ms: float, size: int) -> None:
        """The per-request line: formatted by hand, it is written for every request."""
        if self.min_level > 20:
            return
        msg = f"{method} {path} {status} {duration_ms:.3f}ms {size}"
        if self.fmt == "json":
            line = (
                f'{{"time": "{self._timestamp()}", "level": "INFO", "logger": "access", "pid": {self.pid}, '
                f'"msg": {_quote(msg)}, "request_id": {_quote(request_id)}, "method": {_quote(method)}, '
                f'"path": {_quote(path)}, "status": {status}, "duration_ms": {duration_ms:.3f}, "bytes": {size}}}\n'
            )
        else:
            line = f"{self._timestamp()} I [{self.pid}] access - {msg} request_id={request_id}\n"
        with self._lock:
            self.stream.write(line)
            self._pending = True

    def info(self, logger: str, msg: str, **fields: Any) -> None:
        self.emit("INFO", logger, msg, **fields)

    def warning(self, logger: str, msg: str, **fields: Any) -> None:
        self.emit("WARNING", logger, msg, **fields)

    def error(self, logger: str, msg: str, exc: BaseException | None = None, **fields: Any) -> None:
        if exc is not None:
            fields["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.emit("ERROR", logger, msg, **fields)

    def flush(self) -> None:
        if self._pending:
            with self._lock:
                self._pending = False
                try:
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

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


log = Log()


def configure(fmt: str, level: str) -> Log:
    """Set the process-wide log's format and level (called once per process)."""
    log.fmt = fmt
    log.min_level = _LEVELS.get(level.upper(), 20)
    log.pid = os.getpid()
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
