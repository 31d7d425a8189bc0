"""wrk runs that count answers by HTTP status, and the mlmagics batch metrics around them.

``servebench/wrk.py`` writes the POST script and runs and parses wrk; wrk itself only counts
"non-2xx or 3xx". Here the script also counts every response by status in Lua (``response()``
per thread, summed in ``done()``), so throughput can count 2xx answers only: good req/s =
2xx answers / wrk's run time. wrk's latency percentiles are over every answer, 503s included.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from servebench import probe, wrk

STATUS_LUA = """
-- added by benchmarks/batching_bench.py: count every answer by HTTP status
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(string.format("STATUS %d %d\\n", code, n)) end
  io.write(string.format("DURATION_US %d\\n", summary.duration))
end
"""


def write_lua(path: Path, body_path: Path, headers: dict[str, str]) -> Path:
    """servebench's POST script for ``body_path`` plus the status counter."""
    wrk.write_lua(path, body_path, headers)
    with path.open("a") as out:
        out.write(STATUS_LUA)
    return path


@dataclass
class Run:
    """One measured wrk run, with answers counted by status."""

    result: wrk.WrkResult
    statuses: dict[int, int]
    seconds: float
    other_cpu: float = float("nan")
    steal_cpu: float = float("nan")
    server_cpu: float = float("nan")  # CPUs the server's process tree used during the run
    batch: dict[str, float] = field(default_factory=dict)  # mlmagics with batching: rows per call, wait

    @property
    def good(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def socket_errors(self) -> int:
        return sum(self.result.socket_errors.values())

    @property
    def good_rps(self) -> float:
        return self.good / self.seconds if self.seconds else 0.0


def measure(url: str, lua: Path, conns: int, seconds: float, prefix: list[str]) -> Run:
    """One wrk run (``servebench.wrk.run``) and its status counts."""
    result = wrk.run(url, lua, conns, seconds, prefix=prefix)
    statuses = {int(code): int(n) for code, n in re.findall(r"^STATUS (\d+) (\d+)$", result.raw, re.MULTILINE)}
    duration = re.search(r"^DURATION_US (\d+)$", result.raw, re.MULTILINE)
    if not statuses and result.requests:
        raise RuntimeError(f"wrk printed no status counts:\n{result.raw}")
    return Run(result, statuses, int(duration.group(1)) / 1e6 if duration else seconds)


@dataclass
class Summary:
    """The median of a case's runs for one server (each figure taken separately)."""

    good_rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # summed over the runs
    answers: int  # every answer counted, summed over the runs
    socket_errors: int
    spread: float | None  # (max − min) / median of the runs' good req/s
    server_cpu: float  # median CPUs the server's process tree used
    cpu_us: float  # median server CPU time per good answer, µs
    statuses: dict[int, int]
    batch: dict[str, float]

    @property
    def non_2xx_share(self) -> float:
        return self.non_2xx / self.answers if self.answers else 0.0


def summarize(runs: list[Run]) -> Summary:
    """Medians of good req/s, p50 and p99; error counts summed; batch figures averaged."""
    rates = [r.good_rps for r in runs]
    statuses: dict[int, int] = {}
    for run in runs:
        for code, n in run.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    batch = {}
    for key in {k for r in runs for k in r.batch}:
        values = [r.batch[key] for r in runs if key in r.batch]
        batch[key] = statistics.median(values)
    med = statistics.median(rates)
    return Summary(
        good_rps=med,
        p50_ms=statistics.median(r.result.p50_ms for r in runs),
        p99_ms=statistics.median(r.result.p99_ms for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        answers=sum(statuses.values()),
        socket_errors=sum(r.socket_errors for r in runs),
        spread=(max(rates) - min(rates)) / med if len(runs) > 1 and med else None,
        server_cpu=statistics.median(r.server_cpu for r in runs),
        cpu_us=statistics.median(per) if (per := [1e6 * r.server_cpu / r.good_rps for r in runs if r.good_rps]) else math.nan,
        statuses=statuses,
        batch=batch,
    )


_METRIC = re.compile(r"^(mlmagics_batch_(?:rows|wait_seconds)_(?:sum|count))\s+(\S+)$", re.MULTILINE)


def batch_counters(port: int, headers: dict[str, str]) -> dict[str, float]:
    """mlmagics's batch histograms' sums and counts from GET /metrics (empty if absent)."""
    try:
        status, body = probe.request(port, "GET", "/metrics", headers=headers)
    except OSError:
        return {}
    if status != 200:
        return {}
    return {name: float(value) for name, value in _METRIC.findall(body.decode("utf-8", "replace"))}


def batch_figures(before: dict[str, float], after: dict[str, float], good: int) -> dict[str, float]:
    """Rows per batched call, batched share of requests and mean wait of a call's oldest request,
    between two scrapes (calls of one request are served alone and not counted as batches)."""
    calls = after.get("mlmagics_batch_rows_count", 0) - before.get("mlmagics_batch_rows_count", 0)
    rows = after.get("mlmagics_batch_rows_sum", 0) - before.get("mlmagics_batch_rows_sum", 0)
    wait = after.get("mlmagics_batch_wait_seconds_sum", 0) - before.get("mlmagics_batch_wait_seconds_sum", 0)
    if calls <= 0:
        return {"rows_per_call": 1.0, "batched_share": 0.0, "wait_ms": 0.0}
    return {
        "rows_per_call": rows / calls,
        "batched_share": min(rows / good, 1.0) if good else 0.0,
        "wait_ms": 1000 * wait / calls,
    }
