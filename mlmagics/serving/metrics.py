"""Prometheus metrics for `GET /metrics`, summed over every worker process.

Counting happens in plain dicts on each worker's event-loop thread (a dict increment per
request; prometheus-client's multiprocess mode costs ~60 µs per request here, which is
half the server's own budget). Once a second each worker writes its totals to
`<MLMAGICS_METRICS_DIR>/worker-<pid>.json`; when a worker dies the supervisor folds its
counters into `retired.json`, so totals never go backwards. `/metrics` sums the files and
renders them with prometheus-client's collector API. A scrape therefore lags by up to a
second, and a worker killed with SIGKILL loses at most its last second of counts.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from typing import Any

from . import datacollection

BATCH_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _histogram(bounds: tuple[float, ...] = BUCKETS) -> dict[str, Any]:
    return {"counts": [0] * (len(bounds) + 1), "sum": 0.0}


class Metrics:
    """One process's metrics; every method is a no-op when metrics are off."""

    def __init__(self, enabled: bool = True, directory: str | None = None) -> None:
        self.directory = directory if directory is not None else os.environ.get("MLMAGICS_METRICS_DIR", "")
        self.enabled = enabled and bool(self.directory)
        self.requests: dict[str, int] = {}  # "route method status" -> count
        self.latency: dict[str, dict[str, Any]] = {}  # route -> histogram
        self.run = _histogram()
        self.batch_rows = _histogram(BATCH_ROWS)  # rows per batched run() call (batching on)
        self.batch_wait = _histogram()  # how long the oldest request of a batch waited for its call
        self.in_flight_now = 0
        self.ready = 0
        self.restarts = 0

    # -- counting (event-loop thread) ----------------------------------------------------------
    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        key = f"{route} {method} {status}"
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = _histogram()
        hist["counts"][bisect_left(BUCKETS, seconds)] += 1
        hist["sum"] += seconds

    def run_done(self, seconds: float) -> None:
        if self.enabled:
            self.run["counts"][bisect_left(BUCKETS, seconds)] += 1
            self.run["sum"] += seconds

    def batch_done(self, rows: int, waited_s: float) -> None:
        """A batched run() call of `rows` rows, whose oldest request waited `waited_s` (main thread; a list slot
        increment, safe beside the event loop's publish)."""
        if self.enabled:
            self.batch_rows["counts"][bisect_left(BATCH_ROWS, rows)] += 1
            self.batch_rows["sum"] += rows
            self.batch_wait["counts"][bisect_left(BUCKETS, waited_s)] += 1
            self.batch_wait["sum"] += waited_s

    def in_flight(self, delta: int) -> None:
        self.in_flight_now += delta

    def worker_ready(self) -> None:
        self.ready = 1

    def worker_restarted(self) -> None:
        self.restarts += 1
        self.publish("supervisor")

    # -- sharing between processes ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "latency": self.latency,
            "run": self.run,
            "batch_rows": self.batch_rows,
            "batch_wait": self.batch_wait,
            "in_flight": self.in_flight_now,
            "ready": self.ready,
            "restarts": self.restarts,
            "collected_files_removed": datacollection.removed["files"],
            "collected_bytes_removed": datacollection.removed["bytes"],
        }

    def publish(self, name: str | None = None) -> None:
        """Write this process's totals where `/metrics` (in any worker) reads them."""
        if not self.enabled:
            return
        path = os.path.join(self.directory, f"{name or f'worker-{os.getpid()}'}.json")
        _write_json(path, self.snapshot())

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.publish()  # this worker's own numbers are current
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(collect_totals(self.directory)))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)  # readers never see half a file


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _add_histogram(into: dict[str, Any], other: dict[str, Any]) -> None:
    into["counts"] = [a + b for a, b in zip(into["counts"], other.get("counts", [0] * len(into["counts"])), strict=True)]
    into["sum"] += other.get("sum", 0.0)


def _merge(total: dict[str, Any], part: dict[str, Any], live: bool) -> None:
    for key, n in part.get("requests", {}).items():
        total["requests"][key] = total["requests"].get(key, 0) + n
    for route, hist in part.get("latency", {}).items():
        _add_histogram(total["latency"].setdefault(route, _histogram()), hist)
    _add_histogram(total["run"], part.get("run", _histogram()))
    _add_histogram(total["batch_rows"], part.get("batch_rows", _histogram(BATCH_ROWS)))
    _add_histogram(total["batch_wait"], part.get("batch_wait", _histogram()))
    for counter in _COUNTERS:
        total[counter] += part.get(counter, 0)
    if live:
        total["in_flight"] += part.get("in_flight", 0)
        total["ready"] += part.get("ready", 0)


_COUNTERS = ("restarts", "collected_files_removed", "collected_bytes_removed")  # plain totals, summed over processes


def _empty_totals() -> dict[str, Any]:
    return {"requests": {}, "latency": {}, "run": _histogram(), "batch_rows": _histogram(BATCH_ROWS),
            "batch_wait": _histogram(), "in_flight": 0, "ready": 0, **dict.fromkeys(_COUNTERS, 0)}


def collect_totals(directory: str) -> dict[str, Any]:
    total = _empty_totals()
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            _merge(total, _read_json(os.path.join(directory, name)), live=name.startswith("worker-"))
    return total


def retire_worker(directory: str, pid: int) -> None:
    """Fold a dead worker's counters into `retired.json` (its gauges go with it)."""
    path = os.path.join(directory, f"worker-{pid}.json")
    part = _read_json(path)
    if part:
        retired = _empty_totals()
        _merge(retired, _read_json(os.path.join(directory, "retired.json")), live=False)
        _merge(retired, part, live=False)
        _write_json(os.path.join(directory, "retired.json"), retired)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _Collector:
    """Renders summed totals as Prometheus metric families."""

    def __init__(self, totals: dict[str, Any]) -> None:
        self.totals = totals

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        t = self.totals
        requests = CounterMetricFamily(
            "mlmagics_requests", "HTTP requests answered, by route, method and status", labels=["route", "method", "status"]
        )
        for key, n in sorted(t["requests"].items()):
            route, method, status = key.split(" ")
            requests.add_metric([route, method, status], n)
        yield requests
        latency = HistogramMetricFamily(
            "mlmagics_request_duration_seconds", "Time from request to answer, by route", labels=["route"]
        )
        for route, hist in sorted(t["latency"].items()):
            latency.add_metric([route], _buckets(hist), hist["sum"])
        yield latency
        run = HistogramMetricFamily("mlmagics_run_duration_seconds", "Time spent inside the script's run()")
        run.add_metric([], _buckets(t["run"]), t["run"]["sum"])
        yield run
        rows = HistogramMetricFamily("mlmagics_batch_rows", "Rows per batched run() call (adaptive batching)")
        rows.add_metric([], _buckets(t["batch_rows"], BATCH_ROWS), t["batch_rows"]["sum"])
        yield rows
        wait = HistogramMetricFamily("mlmagics_batch_wait_seconds", "How long a batch's oldest request waited for its call")
        wait.add_metric([], _buckets(t["batch_wait"]), t["batch_wait"]["sum"])
        yield wait
        yield GaugeMetricFamily(
            "mlmagics_requests_in_flight", "Scoring requests being run or waiting for a worker", value=t["in_flight"]
        )
        yield GaugeMetricFamily("mlmagics_workers_ready", "Workers whose init() succeeded", value=t["ready"])
        yield CounterMetricFamily("mlmagics_worker_restarts", "Workers that died and were replaced", value=t["restarts"])
        yield CounterMetricFamily(
            "mlmagics_collected_files_removed", "Collected data files removed, oldest first, to keep within the cap",
            value=t["collected_files_removed"],
        )  # fmt: skip
        yield CounterMetricFamily(
            "mlmagics_collected_bytes_removed", "Bytes of collected data removed to keep within the cap",
            value=t["collected_bytes_removed"],
        )  # fmt: skip


def _buckets(hist: dict[str, Any], bounds: tuple[float, ...] = BUCKETS) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, n in zip([*map(str, bounds), "+Inf"], hist["counts"], strict=True):
        running += n
        out.append((bound, running))
    return out
