"""`ModelDataCollector`: what the scoring script chooses to record, as JSON lines.

Enabled by the service's `collect_model_data` setting (env `AML_MODEL_DC_STORAGE_ENABLED`);
otherwise `collect()` returns at once and records nothing, as in v1. Records go to
`<collection dir>/<model>/<designation>/<YYYY>/<MM>/<DD>/data-<host>-<pid>.jsonl` (one file per
worker process, so lines never interleave — the host name too, since two containers sharing
the folder during an update have the same pids), each file 0600.

The disk it takes is bounded. A file is rotated to `.1.jsonl`, `.2.jsonl`... once it passes
`MLMAGICS_DATA_COLLECTION_FILE_BYTES` (default 10 MiB, at most a quarter of the cap); then,
and on a worker's first record and each new day, the whole collection dir is summed and its oldest files
are removed until it is within `MLMAGICS_DATA_COLLECTION_MAX_BYTES` (default 1 GiB). So the
tree is walked once per rotated file, never per record, and the total stays within the cap
plus one open file per worker. What was removed is counted (`removed`), and `/metrics` shows it
as `mlmagics_collected_files_removed_total` and `mlmagics_collected_bytes_removed_total`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

_ON = {"1", "true", "yes", "on"}
_MIB = 1024 * 1024
current_request_id = ""  # set by the server before each run(); becomes the correlation id
removed = {"files": 0, "bytes": 0}  # this process's removals for the cap; metrics.py publishes them
_HOST = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname()) or "host"


def _jsonable(data: Any) -> Any:
    if hasattr(data, "to_dict"):  # pandas
        return data.to_dict(orient="records") if hasattr(data, "columns") else data.to_dict()
    if hasattr(data, "tolist"):  # numpy
        return data.tolist()
    return data


def _env_bytes(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default  # the server validates its settings; a script run on its own gets the default
    return value if value > 0 else default


class ModelDataCollector:
    """Record model inputs or predictions from `run()`.

    >>> inputs_dc = ModelDataCollector("sklearn_mnist", designation="inputs", feature_names=["a", "b"])
    >>> inputs_dc.collect([[1, 2]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model_name: str,
        designation: str = "default",
        feature_names: list[str] | None = None,
        workspace: str = "default/default/default",
        webservice_name: str = "default",
        model_version: str = "default",
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        self.designation = designation
        self.feature_names = list(feature_names or [])
        self.webservice_name = os.environ.get("SERVICE_NAME", webservice_name)
        self.model_version = model_version
        self.enabled = os.environ.get("AML_MODEL_DC_STORAGE_ENABLED", "").lower() in _ON
        self.root = os.environ.get("MLMAGICS_DATA_COLLECTION_DIR") or os.path.join(os.getcwd(), "model-data")
        self.cap = _env_bytes("MLMAGICS_DATA_COLLECTION_MAX_BYTES", 1024 * _MIB)
        self.max_bytes = min(_env_bytes("MLMAGICS_DATA_COLLECTION_FILE_BYTES", 10 * _MIB), max(self.cap // 4, 1))
        self._lock = threading.Lock()
        self._warned = False
        self._current = ""  # the file written last

    def collect(self, input_data: Any, user_correlation_id: str = "") -> str:
        """Record one item; returns its correlation id (the request id unless one is given)."""
        correlation_id = user_correlation_id or current_request_id or str(uuid.uuid4())
        if not self.enabled:
            return correlation_id
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "correlation_id": correlation_id,
            "webservice": self.webservice_name,
            "model": self.model_name,
            "model_version": self.model_version,
            "designation": self.designation,
            "feature_names": self.feature_names,
            "data": _jsonable(input_data),
        }
        line = (json.dumps(record, default=str) + "\n").encode()
        with self._lock:
            try:
                self._append(line)
            except OSError as e:  # a full disk loses this record, not the request that run() is answering
                self._warn(e)
        return correlation_id

    def add_correlations(self, input_data: Any, correlations: dict) -> Any:
        return input_data  # v1 API; correlation ids travel in the records themselves

    def _append(self, line: bytes) -> None:
        folder = os.path.join(self.root, self.model_name, self.designation, time.strftime("%Y/%m/%d", time.gmtime()))
        path = os.path.join(folder, f"data-{_HOST}-{os.getpid()}.jsonl")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:  # a new day, or a prune just removed the emptied folder
            _make_folders(folder)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            size = os.lseek(fd, 0, os.SEEK_CUR)  # appending: the offset is the file's size, no stat needed
        finally:
            os.close(fd)
        first, self._current = path != self._current, path
        if size >= self.max_bytes:
            _rotate(path)
            prune(self.root, self.cap)
        elif first:  # this worker's first record, or a new day: the total may have grown meanwhile
            prune(self.root, self.cap)

    def _warn(self, error: OSError) -> None:
        if not self._warned:
            from .logs import log

            log.warning("datacollection", f"collected data is being dropped: {error}")
            self._warned = True


def _make_folders(folder: str) -> None:
    """os.makedirs, but every folder it creates is 0700 (makedirs gives that mode to the last one only)."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another worker made it meanwhile
            pass


def _rotate(path: str) -> None:
    n = 1
    while os.path.exists(f"{path[:-6]}.{n}.jsonl"):
        n += 1
    try:
        os.replace(path, f"{path[:-6]}.{n}.jsonl")
    except FileNotFoundError:  # another worker's prune removed it meanwhile: the next record starts a new one
        pass


def prune(root: str, cap: int) -> None:
    """Remove the oldest collected files under `root` until they take at most `cap` bytes.

    Workers prune one at a time (a lock file), so two never count the same removal; a file
    another worker is appending to may go too, and that worker simply starts it again.
    """
    with open(os.open(os.path.join(root, ".prune.lock"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = _collected_files(root)
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= cap:
                break
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            total -= size
            removed["files"] += 1
            removed["bytes"] += size
            _remove_empty_folders(os.path.dirname(path), root)


def _collected_files(root: str) -> list[tuple[float, int, str]]:
    out = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".jsonl"):
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, path))
    return out


def _remove_empty_folders(folder: str, root: str) -> None:
    while os.path.normpath(folder) != os.path.normpath(root):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or another worker's file appeared): stop here
            return
        folder = os.path.dirname(folder)
