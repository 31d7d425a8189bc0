"""`Model.profile`: how much CPU and memory a model's service needs, measured here, not guessed.

    profile = Model.profile(ws, "sklearn-profile", [model], inference_config, input_dataset=requests,
                            cpu=1, memory_in_gb=0.5)
    profile.wait_for_completion(show_output=True)
    profile.get_details()        # latency percentiles, CPU and memory used, recommendedCpu / recommendedMemoryInGB

v1 sent the dataset's rows to the model in an Azure container and reported what it saw (the
service was removed from v1 in 2023). Here the model is deployed for the length of the profile
— on the Docker target, which enforces `cpu` and `memory_in_gb` as Azure's container did, or on
the local target when no engine runs (the limits are then not enforced, and the output says so) —
each row is sent as one request body, sequentially after one warm-up request, for `duration_s`
(at least every row once; ten minutes at most), while the service's CPU seconds and memory are sampled four times a
second. The recommendation is the peak use plus a quarter of head room (CPU in tenths of a core,
memory in tenths of a GB, at least 0.1 of each), so a service sized by it is not saturated by the
load it was profiled with.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import requests

from .errors import TargetUnavailable, UserError, WebserviceException
from .services import Webservice, target_class
from .workspace import Workspace

HEADROOM = 1.25
SAMPLE_EVERY_S = 0.25
MAX_REQUESTS = 100_000  # rows sent at most, whatever the duration
MAX_ROW_BYTES = 10 * 1024 * 1024  # one request body
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # all the rows held for the profile
MAX_DURATION_S = 600.0  # a profile ends by then, even with rows not yet sent


def requests_from(input_dataset: Any) -> list[str]:
    """The request bodies: a list of strings, a text file (one request per line), or v1's tabular dataset of one
    string column (anything with `to_pandas_dataframe()`); v1's messages when there are none."""
    if input_dataset is None:
        raise UserError("Dataset not provided. Profiling required a dataset with sample input data.")
    if isinstance(input_dataset, str | os.PathLike) and Path(input_dataset).is_file():
        path = Path(input_dataset)
        if path.stat().st_size > MAX_TOTAL_BYTES:
            raise UserError(f"input_dataset {path} is larger than {MAX_TOTAL_BYTES // 2**20} MiB: give fewer requests")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read input_dataset {path}: {getattr(e, 'strerror', None) or e}") from None
        rows = [line for line in text.splitlines() if line.strip()]
    elif hasattr(input_dataset, "to_pandas_dataframe"):
        frame = input_dataset.to_pandas_dataframe()
        if len(frame.columns) != 1:
            raise UserError(f"Dataset format not supported. Number of columns != 1. Dataset profile {list(frame.columns)}")
        rows = [str(v) for v in frame.iloc[:MAX_REQUESTS, 0]]
    elif isinstance(input_dataset, list | tuple) and all(isinstance(r, str | bytes) for r in input_dataset):
        rows = [r.decode() if isinstance(r, bytes) else r for r in input_dataset]
    else:
        raise UserError(
            "input_dataset must be request bodies: a list of strings, a text file with one request per line, or a "
            f"tabular dataset of one string column; got {type(input_dataset).__name__}"
        )
    if not rows:
        raise UserError("Empty Dataset. Dataset profile {}")
    rows, total = rows[:MAX_REQUESTS], 0
    for number, row in enumerate(rows, 1):
        size = len(row.encode())
        if size > MAX_ROW_BYTES:
            raise UserError(f"input_dataset row {number} is {size} bytes; a request body is at most {MAX_ROW_BYTES} bytes")
        total += size
        if total > MAX_TOTAL_BYTES:
            raise UserError(f"input_dataset holds more than {MAX_TOTAL_BYTES // 2**20} MiB of requests: give fewer rows")
    return rows


class ModelProfile:
    """A profile of models served by an inference config (v1's class: `wait_for_completion`, `get_details`)."""

    def __init__(
        self,
        workspace: Workspace,
        name: str,
        image: Any,
        rows: list[str],
        cpu: float | None,
        memory_in_gb: float | None,
        description: str | None = None,
        duration_s: float = 20.0,
    ) -> None:
        self.workspace, self.name, self.image, self.rows = workspace, name, image, rows
        self.requested_cpu, self.requested_memory = cpu, memory_in_gb
        self.description, self.duration_s = description, duration_s
        self.state = "NotStarted"
        self.error: str | None = None
        self.target: str | None = None  # "docker" or "local"; None: Docker when an engine answers, else local
        self._details: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"ModelProfile(name={self.name!r}, image={self.image.id!r}, state={self.state!r})"

    @property
    def recommended_cpu(self) -> float | None:
        return self._details.get("recommendedCpu")

    @property
    def recommended_memory(self) -> float | None:
        return self._details.get("recommendedMemoryInGB")

    def wait_for_completion(self, show_output: bool = False) -> None:
        """Deploy, send the rows, measure, remove the deployment (v1 ran the profile in the background; it runs here)."""
        if self.state in ("Succeeded", "Failed"):
            return
        say = print if show_output else (lambda *a, **k: None)
        self.state = "Running"
        say(self.state)
        service = None
        try:
            service = self._deploy(say)
            self._details = self._measure(service, say)
            self.state = "Succeeded"
        except Exception as e:  # noqa: BLE001 - v1: the profile ends Failed, with the reason in .error
            self.state, self.error = "Failed", str(e)
            print(f"Model Profiling operation failed with the following error: {e} Inspect ModelProfile.error property "
                  "for more information.")  # fmt: skip
        finally:
            if service is not None:
                service.delete()
        say(f"\n{self.state}")

    def get_details(self) -> dict[str, Any]:
        """v1's keys, those measured only (v1 drops the None values too)."""
        base = {"name": self.name, "description": self.description, "state": self.state, "error": self.error,
                "requestedCpu": self.requested_cpu, "requestedMemoryInGB": self.requested_memory}  # fmt: skip
        return {k: v for k, v in {**base, **self._details}.items() if v is not None}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in self.get_details().items())
        return f"<table>{rows}</table>"

    # -- the steps -------------------------------------------------------------------------------------
    def _deploy(self, say: Any) -> Webservice:
        name = f"profile-{abs(hash((self.name, time.time()))) % 10**8}"
        settings: dict[str, Any] = {}
        if self.requested_cpu is not None:
            settings["cpu_cores"] = self.requested_cpu
        if self.requested_memory is not None:
            settings["memory_gb"] = self.requested_memory
        service = None
        if self.target in (None, "docker"):
            try:
                docker = target_class("Docker")
                service = Webservice.deploy_from_image(self.workspace, name, self.image, docker.deploy_configuration(**settings))
                self.target = "docker"
            except TargetUnavailable as e:
                if self.target == "docker":
                    raise
                say(f"Note: no Docker engine ({e.message}); profiling on the local target")
        if service is None:
            print("Note: the local target does not enforce cpu and memory_in_gb: the profile measures what the model "
                  "uses, unconstrained")  # fmt: skip
            service = Webservice.deploy_from_image(self.workspace, name, self.image, target_class("Local").deploy_configuration())
            self.target = "local"
        assert isinstance(service, Webservice)
        try:
            service.wait_for_deployment()
        except Exception:
            service.delete()
            raise
        return service

    def _measure(self, service: Webservice, say: Any) -> dict[str, Any]:
        service.run(self.rows[0])  # warm-up: the first request pays for lazy imports
        samples: list[tuple[float, float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                cpu, memory = service.usage()
                samples.append((time.monotonic(), cpu, memory))
                stop.wait(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        latencies: list[float] = []
        failures, started = 0, time.monotonic()
        duration = min(self.duration_s, MAX_DURATION_S)
        with requests.Session() as session:
            while len(latencies) + failures < len(self.rows) or time.monotonic() - started < duration:
                body = self.rows[(len(latencies) + failures) % len(self.rows)]
                began = time.perf_counter()
                response = service.request(data=body, session=session)
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    failures += 1
                if len(latencies) + failures >= MAX_REQUESTS or time.monotonic() - started >= MAX_DURATION_S:
                    break
                if (len(latencies) + failures) % 200 == 0:
                    say(".", end="", flush=True)  # live progress: a dot per 200 requests
        wall = time.monotonic() - started
        time.sleep(SAMPLE_EVERY_S * 2)
        stop.set()
        sampler.join()
        if not latencies:
            raise WebserviceException(f"none of the {failures} requests succeeded; see the service's logs")
        return _summary(latencies, failures, wall, samples)


def _summary(latencies: list[float], failures: int, wall: float, samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    """v1's detail keys from the measurements."""
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)], 3)

    cores = [(c2 - c1) / (t2 - t1) for (t1, c1, _), (t2, c2, _) in zip(samples, samples[1:], strict=False) if t2 > t1]
    peak_cores = max(cores, default=0.0)
    peak_gb = max((m for _, _, m in samples), default=0) / 1024**3
    total = len(latencies) + failures
    return {
        "totalQueries": total,
        "successQueries": len(latencies),
        "successRate": round(100.0 * len(latencies) / total, 2),
        "averageLatencyInMs": round(statistics.fmean(latencies), 3),
        "latencyPercentile50InMs": percentile(50),
        "latencyPercentile90InMs": percentile(90),
        "latencyPercentile95InMs": percentile(95),
        "latencyPercentile99InMs": percentile(99),
        "latencyPercentile999InMs": percentile(99.9),
        "measuredQueriesPerSecond": round(total / wall, 2),
        "maxUtilizedCpu": round(peak_cores, 3),
        "maxUtilizedMemoryInGB": round(peak_gb, 4),
        "recommendedCpu": max(0.1, math.ceil(peak_cores * HEADROOM * 10) / 10),
        "recommendedMemoryInGB": max(0.1, math.ceil(peak_gb * HEADROOM * 10) / 10),
    }
