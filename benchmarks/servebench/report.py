"""Render the benchmark's results as Markdown; every ratio reads "> 1 means mlmagics is better"."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench.probe import ColdStart
from servebench.procs import Memory
from servebench.wrk import WrkResult

SERVERS = ("reference", "mlmagics")
DASH = "—"


@dataclass
class ServerRun:
    """What was measured for one server outside the load matrix."""

    command: list[str]
    notes: str
    log_path: Path
    cold_starts: list[ColdStart] = field(default_factory=list)
    idle: Memory | None = None
    after_load: Memory | None = None


@dataclass
class BenchResult:
    """Everything the report shows."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    servers: dict[str, ServerRun]
    cases: dict[tuple[int, int], dict[str, WrkResult]]
    inprocess: dict[int, float]
    answers: dict[int, Any]
    wrk_log: Path
    total_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator or math.isnan(numerator) or math.isnan(denominator):
        return DASH
    return f"**{numerator / denominator:.2f}×**"


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and not math.isnan(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:,.{digits}f}{unit}"


def _cell_rps(result: WrkResult | None) -> str:
    if result is None:
        return DASH
    flag = " ⚠" if result.errors else ""
    return f"{result.requests_per_s:,.0f}{flag}"


def _cell_latency(result: WrkResult | None) -> str:
    return DASH if result is None else f"{result.p50_ms:.2f} / {result.p99_ms:.2f}"


def _median_cold(run: ServerRun | None, attr: str) -> float | None:
    if run is None or not run.cold_starts:
        return None
    return statistics.median(getattr(c, attr) for c in run.cold_starts)


def _memory(run: ServerRun | None, attr: str, kind: str) -> float | None:
    memory = getattr(run, attr, None) if run else None
    return getattr(memory, kind) if memory else None


def _case_metric(result: BenchResult, server: str, metric: str) -> list[float]:
    return [getattr(r[server], metric) for r in result.cases.values() if server in r]


def headline(result: BenchResult) -> list[str]:
    """The ratios first: throughput, p99, cold start, idle memory."""
    rps = {s: _geomean(_case_metric(result, s, "requests_per_s")) for s in SERVERS}
    p99 = {s: _geomean(_case_metric(result, s, "p99_ms")) for s in SERVERS}
    cold = {s: _median_cold(result.servers.get(s), "score_s") for s in SERVERS}
    rss = {s: _memory(result.servers.get(s), "idle", "rss_mib") for s in SERVERS}
    ratios = [
        runs["mlmagics"].requests_per_s / runs["reference"].requests_per_s
        for runs in result.cases.values()
        if all(s in runs for s in SERVERS)
    ]
    spread = f" (per case {min(ratios):.2f}–{max(ratios):.2f}×)" if ratios else ""
    flagged = sum(1 for r in result.cases.values() for w in r.values() if w.errors)
    lines = [
        "## Headline — ratios > 1 mean mlmagics is better",
        "",
        "| metric | reference | mlmagics | ratio |",
        "| --- | ---: | ---: | ---: |",
        (
            f"| throughput, geometric mean of {len(result.cases)} cases (req/s) | {_fmt(rps['reference'])} | "
            f"{_fmt(rps['mlmagics'])} | {_ratio(rps['mlmagics'], rps['reference'])}{spread} |"
        ),
        (
            f"| p99 latency, geometric mean (ms) | {_fmt(p99['reference'], digits=2)} | {_fmt(p99['mlmagics'], digits=2)} "
            f"| {_ratio(p99['reference'], p99['mlmagics'])} |"
        ),
        (
            f"| cold start to first correct POST /score (s) | {_fmt(cold['reference'], digits=2)} | "
            f"{_fmt(cold['mlmagics'], digits=2)} | {_ratio(cold['reference'], cold['mlmagics'])} |"
        ),
        (
            f"| idle RSS, whole process tree (MiB) | {_fmt(rss['reference'])} | {_fmt(rss['mlmagics'])} | "
            f"{_ratio(rss['reference'], rss['mlmagics'])} |"
        ),
        "",
    ]
    if flagged:
        lines += [
            f"⚠ {flagged} load run(s) had errors; see the list under the load table.",
            "",
        ]
    return lines


def load_table(result: BenchResult) -> list[str]:
    """One row per (payload, connections) case, with error flags listed below."""
    lines = [
        "## Throughput and latency under load (wrk)",
        "",
        (
            "| payload | conns | reference req/s | mlmagics req/s | ratio (mlm/ref) | reference p50 / p99 ms "
            "| mlmagics p50 / p99 ms | p99 ratio (ref/mlm) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    flags = []
    for (rows, conns), runs in result.cases.items():
        ref, mlm = runs.get("reference"), runs.get("mlmagics")
        lines.append(
            f"| {rows} row{'s' if rows > 1 else ''} | {conns} | {_cell_rps(ref)} | {_cell_rps(mlm)} | "
            f"{_ratio(mlm and mlm.requests_per_s, ref and ref.requests_per_s)} | {_cell_latency(ref)} | "
            f"{_cell_latency(mlm)} | {_ratio(ref and ref.p99_ms, mlm and mlm.p99_ms)} |"
        )
        flags += [
            f"- ⚠ {name}, {rows} row(s), {conns} conns: {run.error_text()} of {run.requests} requests"
            for name, run in runs.items()
            if run.errors
        ]
    lines += [""] + (flags + [""] if flags else ["No load run had a non-2xx response or a socket error.", ""])
    return lines


def startup_table(result: BenchResult) -> list[str]:
    """Cold start and memory for both servers."""
    servers = {s: result.servers.get(s) for s in SERVERS}
    count = max((len(r.cold_starts) for r in servers.values() if r), default=0)
    rows = [
        (
            "cold start: spawn → first 200 on GET / (s)",
            {s: _median_cold(r, "get_s") for s, r in servers.items()},
            2,
        ),
        (
            "**cold start: spawn → first correct POST /score (s)**",
            {s: _median_cold(r, "score_s") for s, r in servers.items()},
            2,
        ),
        (
            "idle RSS, sum over process tree (MiB)",
            {s: _memory(r, "idle", "rss_mib") for s, r in servers.items()},
            0,
        ),
        (
            "idle PSS, sum over process tree (MiB)",
            {s: _memory(r, "idle", "pss_mib") for s, r in servers.items()},
            0,
        ),
        (
            "RSS after the load runs (MiB)",
            {s: _memory(r, "after_load", "rss_mib") for s, r in servers.items()},
            0,
        ),
    ]
    procs = {s: _memory(r, "idle", "processes") for s, r in servers.items()}
    lines = [
        f"## Start-up and memory (cold start: median of {count} spawn(s))",
        "",
        "| measure | reference | mlmagics | ratio (ref/mlm) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, values, digits in rows:
        ref, mlm = values["reference"], values["mlmagics"]
        lines.append(f"| {label} | {_fmt(ref, digits=digits)} | {_fmt(mlm, digits=digits)} | {_ratio(ref, mlm)} |")
    lines.append(f"| processes in the tree | {_fmt(procs['reference'])} | {_fmt(procs['mlmagics'])} | |")
    return [*lines, ""]


def inprocess_table(result: BenchResult) -> list[str]:
    """The in-process run() limit and how close each server gets to it."""
    lines = [
        (
            "## In-process limit: `init()` once, then `run(body)` in a tight loop "
            "(one process, no HTTP; best of a run before and one after the load phase)"
        ),
        "",
        "| payload | run() calls/s | reference best req/s (% of limit) | mlmagics best req/s (% of limit) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for rows, limit in result.inprocess.items():
        cells = []
        for server in SERVERS:
            best = max(
                (r[server].requests_per_s for (n, _), r in result.cases.items() if n == rows and server in r),
                default=None,
            )
            cells.append(DASH if best is None else f"{best:,.0f} ({100 * best / limit:.0f}%)")
        lines.append(f"| {rows} row{'s' if rows > 1 else ''} | {limit:,.0f} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def setup_section(result: BenchResult) -> list[str]:
    """Machine, versions, commands, logs and footnotes."""
    machine, settings = result.machine, result.settings
    lines = [
        "## Setup",
        "",
        (
            f"- machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['platform']}; "
            f"wrk {machine['wrk']}; the load generator shares these CPUs with the server under test"
        ),
        (
            f"- bench driver: Python {machine['python']}; run took {result.total_s:.0f} s; "
            f"1-min load average {machine['load_before']:.2f} at start, "
            f"{machine.get('load_after', float('nan')):.2f} at end (other work skews results)"
        ),
    ]
    for env_name, pkgs in machine["envs"].items():
        listed = ", ".join(f"{k} {v}" for k, v in pkgs.items() if k != "base" and v)
        lines.append(f"- {env_name}: {listed}")
    lines += [
        (
            f"- settings: {settings['workers']} worker(s) each; {settings['seconds']} s per case after a "
            f"{settings['warmup']} s warm-up; `wrk -t<min(c,2)> -c<c> -d{settings['seconds']}s --timeout=10s --latency`; "
            f"cases interleaved between the servers"
        ),
    ]
    for name, run in result.servers.items():
        lines += [
            f"- {name}: `{' '.join(run.command)}` ({run.notes})",
            f"  - log: `{run.log_path}`",
        ]
    for name, reason in result.skipped.items():
        lines.append(f"- {name}: not run ({reason})")
    lines += [
        f"- raw wrk output: `{result.wrk_log}`",
        "",
        "Notes:",
        (
            "1. azureml-inference-server-http has no `azureml.core`; for the reference only, a minimal "
            "`azureml/core/model.py` shim (just `Model.get_model_path`) is put on its PYTHONPATH from the temp dir. "
            "mlmagics brings its own `azureml.core.model`; the in-process run uses the shim."
        ),
        (
            "2. Both servers run the same v1 `score.py` from a temp app root (CWD), with AZUREML_MODEL_DIR="
            "`<app root>/azureml-models` and a LogisticRegression trained on `load_digits` (64 features)."
        ),
        (
            "3. RSS sums every process of the tree, so pages shared by forked workers count once per process; "
            "PSS splits them fairly."
        ),
        (
            "4. A ⚠ marks a load run with non-2xx responses or socket errors (listed under the table); "
            "its numbers are not comparable."
        ),
        "",
    ]
    return lines


def correctness(result: BenchResult) -> list[str]:
    """What the pre-load check compared."""
    checked = ", ".join(result.servers)
    shown = {rows: (a if len(str(a)) < 60 else f"{str(a)[:57]}…") for rows, a in result.answers.items()}
    return [
        "## Correctness (checked before loading)",
        "",
        f"For the same bodies, {checked} answered exactly what in-process `run()` returns "
        f"(wire value JSON-decoded twice): " + "; ".join(f"{rows} row(s) → `{a}`" for rows, a in shown.items()),
        "",
    ]


def render(result: BenchResult) -> str:
    """The whole report."""
    settings = result.settings
    title = [
        "# Serving benchmark: mlmagics vs azureml-inference-server-http 1.5.1",
        "",
        (
            f"{settings['date']} · {settings['workers']} worker(s) per server · "
            f"{'quick' if settings['quick'] else 'full'} run ({settings['seconds']} s per case)"
        ),
        "",
    ]
    sections = [
        title,
        headline(result),
        load_table(result),
        startup_table(result),
        inprocess_table(result),
        correctness(result),
        setup_section(result),
    ]
    return "\n".join(line for section in sections for line in section)
