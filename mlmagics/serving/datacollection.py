"""`ModelDataCollector`: what the scoring script chooses to record, as JSON lines.

Enabled by the service's `collect_model_data` setting (env `AML_MODEL_DC_STORAGE_ENABLED`);
otherwise `collect()` returns at once and records nothing, as in v1. Records go to
`<collection dir>/<model>/<designation>/<YYYY>/<MM>/<DD>/data-<pid>.jsonl` (one file per
worker process, so lines never interleave), and a file is rotated to `.1.jsonl`, `.2.jsonl`...
once it passes `MLMAGICS_DATA_COLLECTION_FILE_BYTES` (default 10 MB).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

_ON = {"1", "true", "yes", "on"}
current_request_id = ""  # set by the server before each run(); becomes the correlation id


def _jsonable(data: Any) -> Any:
    if hasattr(data, "to_dict"):  # pandas
        return data.to_dict(orient="records") if hasattr(data, "columns") else data.to_dict()
    if hasattr(data, "tolist"):  # numpy
        return data.tolist()
    return data


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
        self.max_bytes = int(os.environ.get("MLMAGICS_DATA_COLLECTION_FILE_BYTES", 10 * 1024 * 1024))
        self._lock = threading.Lock()

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
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            path = self._path()
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
        return correlation_id

    def add_correlations(self, input_data: Any, correlations: dict) -> Any:
        return input_data  # v1 API; correlation ids travel in the records themselves

    def _path(self) -> str:
        folder = os.path.join(self.root, self.model_name, self.designation, time.strftime("%Y/%m/%d", time.gmtime()))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"data-{os.getpid()}.jsonl")
        try:
            if os.path.getsize(path) >= self.max_bytes:
                n = 1
                while os.path.exists(f"{path[:-6]}.{n}.jsonl"):
                    n += 1
                os.replace(path, f"{path[:-6]}.{n}.jsonl")
        except FileNotFoundError:
            pass
        return path
