"""Render the benchmark's results as Markdown; ratios read "> 1 means mlmagics is better".

The exceptions are the issue's target rows at the top of the headline, which
state their ratio the way the issue does (p99 and cold start as
mlmagics/reference, lower is better) and say so in their label.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench import wrk
from servebench.probe import ColdStart
from servebench.procs import Memory
from servebench.wrk import WrkResult

SERVERS = ("reference", "mlmagics")
SCRIPTS = ("sklearn", "trivial")
DASH = "—"
# The targets for the 1 row / 8 conns case and the (sklearn) cold start.
TARGET_RPS_RATIO = 3.5
TARGET_P99_RATIO = 0.6
TARGET_COLD_RATIO = 0.7
# A measured run during which other processes (or the hypervisor) took more than this many CPUs is "disturbed".
DISTURBED_CPU = 0.10


@dataclass(frozen=True)
class Case:
    """One load case: which script, how many rows in the body, how many connections."""

    script: str
    rows: int
    conns: int

    @property
    def payload(self) -> str:
        """The payload column of the load table."""
        if self.script == "trivial":
            return "echo, server overhead only"
        return f"{self.rows} row{'s' if self.rows > 1 else ''}"

    @property
    def name(self) -> str:
        """Short name for logs and the headline: ``1 row / 8 conns``, ``echo / 64 conns``."""
        first = "echo" if self.script == "trivial" else self.payload
        return f"{first} / {self.conns} conns"


TARGET_CASE = Case("sklearn", 1, 8)


@dataclass
class ServerRun:
    """What was measured for one server outside the load matrix."""

    command: list[str]
    notes: str
    log_path: Path
    cold_starts: dict[str, list[ColdStart]] = field(default_factory=dict)
    idle: Memory | None = None
    after_load: Memory | None = None


@dataclass
class BenchResult:
    """Everything the report shows; ``cases`` keeps every repeat, the report uses medians."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    servers: dict[str, ServerRun]
    cases: dict[Case, dict[str, list[WrkResult]]]
    inprocess: dict[int, float]
    answers: dict[int, Any]
    wrk_log: Path
    echo_wire: dict[str, bytes] = field(default_factory=dict)
    total_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self, case: Case, server: str) -> WrkResult | None:
        """The median of ``server``'s runs of ``case``, None if it was not run."""
        runs = self.cases.get(case, {}).get(server)
        return wrk.median(runs) if runs else None

    def script_cases(self, script: str) -> list[Case]:
        """The cases run with ``script``, in run order."""
        return [case for case in self.cases if case.script == script]


def _ratio(numerator: float | None, denominator: float | None, suffix: str = "×") -> str:
    value = _divide(numerator, denominator)
    return DASH if value is None else f"**{value:.2f}{suffix}**"


def _divide(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator or math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and not math.isnan(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:,.{digits}f}{unit}"


def _attr(result: WrkResult | None, name: str) -> float | None:
    return None if result is None else getattr(result, name)


def _cell_rps(result: WrkResult | None) -> str:
    if result is None:
        return DASH
    flag = " ⚠" if result.errors else ""
    return f"{result.requests_per_s:,.0f}{flag}"


def _cell_latency(result: WrkResult | None) -> str:
    return DASH if result is None else f"{result.p50_ms:.2f} / {result.p99_ms:.2f}"


def _spread(runs: list[WrkResult] | None) -> str:
    """(max − min) / median of req/s over the repeats, in percent."""
    if not runs or len(runs) < 2:
        return DASH
    values = [r.requests_per_s for r in runs]
    return f"{100 * (max(values) - min(values)) / statistics.median(values):.0f}%"


def _median_cold(run: ServerRun | None, attr: str, script: str = "sklearn") -> float | None:
    starts = run.cold_starts.get(script) if run else None
    return statistics.median(getattr(c, attr) for c in starts) if starts else None


def _memory(run: ServerRun | None, attr: str, kind: str) -> float | None:
    memory = getattr(run, attr, None) if run else None
    return getattr(memory, kind) if memory else None


def _verdict(value: float | None, target: float, at_least: bool, flagged: bool = False) -> str:
    """'met' / 'not met' against ``target`` (≥ if ``at_least`` else ≤)."""
    if flagged:
        return "⚠ not comparable (errors)"
    if value is None:
        return DASH
    met = value >= target if at_least else value <= target
    return "✓ met" if met else "✗ **not met**"


def _target_rows(result: BenchResult) -> list[str]:
    """The issue's three targets: 1 row / 8 conns req/s and p99, sklearn cold start."""
    ref, mlm = (result.summary(TARGET_CASE, s) for s in SERVERS)
    flagged = any(r is not None and r.errors for r in (ref, mlm))
    rps = _divide(_attr(mlm, "requests_per_s"), _attr(ref, "requests_per_s"))
    p99 = _divide(_attr(mlm, "p99_ms"), _attr(ref, "p99_ms"))
    cold = {s: _median_cold(result.servers.get(s), "score_s") for s in SERVERS}
    cold_ratio = _divide(cold["mlmagics"], cold["reference"])
    return [
        (
            f"| **1 row / 8 conns req/s ratio (target ≥ {TARGET_RPS_RATIO}×)** | {_cell_rps(ref)} | {_cell_rps(mlm)} "
            f"| **{fmt(rps, '×', 2)}** | {_verdict(rps, TARGET_RPS_RATIO, True, flagged)} |"
        ),
        (
            f"| **1 row / 8 conns p99 ratio mlmagics/reference (target ≤ {TARGET_P99_RATIO})** "
            f"| {fmt(_attr(ref, 'p99_ms'), ' ms', 2)} | {fmt(_attr(mlm, 'p99_ms'), ' ms', 2)} "
            f"| **{fmt(p99, digits=2)}** | {_verdict(p99, TARGET_P99_RATIO, False, flagged)} |"
        ),
        (
            f"| **cold start ratio mlmagics/reference (target ≤ {TARGET_COLD_RATIO})**: spawn → first correct "
            f"POST /score, sklearn script | {fmt(cold['reference'], ' s', 2)} | {fmt(cold['mlmagics'], ' s', 2)} "
            f"| **{fmt(cold_ratio, digits=2)}** | {_verdict(cold_ratio, TARGET_COLD_RATIO, False)} |"
        ),
    ]


def _rps_ratio(result: BenchResult, case: Case) -> float | None:
    """mlmagics/reference median req/s for ``case``."""
    mlm, ref = (_attr(result.summary(case, s), "requests_per_s") for s in ("mlmagics", "reference"))
    return _divide(mlm, ref)


def _summary_rows(result: BenchResult) -> list[str]:
    """Geometric means over the sklearn cases, the trivial cold start, the echo case and idle RSS."""
    sklearn = result.script_cases("sklearn")
    medians = {s: [m for m in (result.summary(c, s) for c in sklearn) if m] for s in SERVERS}
    rps = {s: _geomean([m.requests_per_s for m in medians[s]]) for s in SERVERS}
    p99 = {s: _geomean([m.p99_ms for m in medians[s]]) for s in SERVERS}
    ratios = [r for r in (_rps_ratio(result, c) for c in sklearn) if r]
    spread = f" (per case {min(ratios):.2f}–{max(ratios):.2f}×)" if ratios else ""
    trivial_cold = {s: _median_cold(result.servers.get(s), "score_s", "trivial") for s in SERVERS}
    echo = {s: result.summary(Case("trivial", 1, 8), s) for s in SERVERS}
    rss = {s: _memory(result.servers.get(s), "idle", "rss_mib") for s in SERVERS}
    return [
        (
            f"| throughput, geometric mean of {len(sklearn)} sklearn cases (req/s) | {fmt(rps['reference'])} | "
            f"{fmt(rps['mlmagics'])} | {_ratio(rps['mlmagics'], rps['reference'])}{spread} | |"
        ),
        (
            f"| p99 latency, geometric mean of {len(sklearn)} sklearn cases (ms; ratio ref/mlm) "
            f"| {fmt(p99['reference'], digits=2)} | {fmt(p99['mlmagics'], digits=2)} "
            f"| {_ratio(p99['reference'], p99['mlmagics'])} | |"
        ),
        (
            f"| cold start, trivial script (s; ratio ref/mlm) | {fmt(trivial_cold['reference'], digits=2)} | "
            f"{fmt(trivial_cold['mlmagics'], digits=2)} | {_ratio(trivial_cold['reference'], trivial_cold['mlmagics'])} | |"
        ),
        (
            f"| echo / 8 conns req/s, server overhead only | {_cell_rps(echo['reference'])} | {_cell_rps(echo['mlmagics'])} "
            f"| {_ratio(_attr(echo['mlmagics'], 'requests_per_s'), _attr(echo['reference'], 'requests_per_s'))} | |"
        ),
        (
            f"| idle RSS, whole process tree (MiB; ratio ref/mlm) | {fmt(rss['reference'])} | {fmt(rss['mlmagics'])} | "
            f"{_ratio(rss['reference'], rss['mlmagics'])} | |"
        ),
    ]


# (CPUs other processes took, CPUs the hypervisor stole, which run) during one measured run
Noise = tuple[float, float, str]


def disturbed(noise: list[Noise]) -> list[Noise]:
    """The runs during which other processes or the hypervisor took more than DISTURBED_CPU."""
    return [n for n in noise if max(n[0], n[1]) > DISTURBED_CPU]


def worst(noise: list[Noise]) -> Noise:
    """The most disturbed run."""
    return max(noise, key=lambda n: max(n[0], n[1]))


def noise_warning(noise: list[Noise], then: str) -> list[str]:
    """A warning when other processes or the hypervisor took CPU during some measured runs; ``then`` ends its
    sentence."""
    runs = disturbed(noise)
    if not runs:
        return []
    other, steal, which = worst(runs)
    return [
        (
            f"⚠ In {len(runs)} of {len(noise)} measured runs other processes or the hypervisor took more than "
            f"{DISTURBED_CPU:.2f} of a CPU (worst: {which}, other {other:.2f} CPU, steal {steal:.2f} CPU){then} "
            "Rerun on a quiet machine to be sure."
        ),
        "",
    ]


def noise_of(runs: Iterable[tuple[str, str, list[Any]]]) -> list[Noise]:
    """(other processes' CPU, hypervisor steal, which run) for every measured run that recorded them;
    `runs`: (server, case name, its runs) — what each benchmark keeps, in whatever nesting."""
    return [
        (run.other_cpu, run.steal_cpu, f"{server}, {case}, run {index + 1}")
        for server, case, measured in runs
        for index, run in enumerate(measured)
        if not math.isnan(run.other_cpu)
    ]


def _noise(result: BenchResult) -> list[Noise]:
    return noise_of((server, case.name, runs) for case, by_server in result.cases.items() for server, runs in by_server.items())


def _noise_setup_line(result: BenchResult) -> str:
    noise = _noise(result)
    if not noise:
        return "- interference: not recorded"
    other = [n[0] for n in noise]
    steal = [n[1] for n in noise]
    return (
        f"- interference during the {len(noise)} measured runs (CPU time not used by wrk, the server tree or the "
        f"driver, per second): other processes median {statistics.median(other):.2f}, max {max(other):.2f} CPU; "
        f"hypervisor steal max {max(steal):.2f} CPU; {len(disturbed(noise))} run(s) above {DISTURBED_CPU:.2f}"
    )


def _per_request_ms(result: WrkResult | None) -> float | None:
    rps = _attr(result, "requests_per_s")
    return 1000 / rps if rps else None


def where_time_goes(result: BenchResult) -> list[str]:
    """The in-process run() limit against the 1 row / 8 conns case, and the echo cases (server overhead)."""
    limit = result.inprocess.get(1)
    script_ms = 1000 / limit if limit else None
    parts = []
    for server in SERVERS:
        per_ms = _per_request_ms(result.summary(TARGET_CASE, server))
        if per_ms and script_ms:
            parts.append(f"{server} {per_ms:.2f} ms per request (the script is {100 * script_ms / per_ms:.0f}% of it)")
    echo_cases = result.script_cases("trivial")
    echo = []
    for server in SERVERS:
        cells = [result.summary(c, server) for c in echo_cases]
        if any(cells):
            rates = " / ".join(fmt(_attr(c, "requests_per_s")) for c in cells)
            per_ms = fmt(_per_request_ms(cells[0]), " ms", 2)
            echo.append(f"{server} {rates} req/s ({per_ms} per request at {echo_cases[0].conns} conns)")
    conns = " / ".join(str(c.conns) for c in echo_cases)
    line = "**Where the time goes** (time per request = 1 / req/s): "
    if script_ms and parts:
        line += f"in-process `run()` takes {script_ms:.2f} ms for 1 row ({limit:,.0f} calls/s); at 1 row / 8 conns "
        line += "; ".join(parts) + ". "
    if echo:
        line += f"Server overhead alone (echo script, {conns} conns): " + "; ".join(echo) + "."
    return [line, ""]


def headline(result: BenchResult) -> list[str]:
    """The issue's targets first, then geometric means, the echo case, memory; then where the time goes."""
    repeat = result.settings["repeat"]
    flagged = sum(1 for case in result.cases for s in SERVERS if (m := result.summary(case, s)) and m.errors)
    lines = [
        "## Headline — the issue's target case is 1 row / 8 conns (sklearn script)",
        "",
        (
            f"Load figures are the median of {repeat} run(s) per case. Ratios > 1 mean mlmagics is better, except in "
            "the p99 and cold-start target rows, which give mlmagics/reference as the issue states them (lower is better)."
        ),
        "",
        "| metric | reference | mlmagics | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
        *_target_rows(result),
        *_summary_rows(result),
        "",
        *where_time_goes(result),
        *noise_warning(_noise(result), "; those numbers are noisier."),
    ]
    if flagged:
        lines += [f"⚠ {flagged} load case(s) had errors; see the list under the load table.", ""]
    return lines


def load_table(result: BenchResult) -> list[str]:
    """One row per case (median of the repeats), with error flags listed below."""
    repeat = result.settings["repeat"]
    lines = [
        f"## Throughput and latency under load (wrk; median of {repeat} run(s) per case, servers interleaved)",
        "",
        (
            "| payload | conns | reference req/s | mlmagics req/s | ratio (mlm/ref) | reference p50 / p99 ms "
            "| mlmagics p50 / p99 ms | p99 ratio (ref/mlm) | req/s spread over runs (ref / mlm) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    flags = []
    for case, runs in result.cases.items():
        ref, mlm = (result.summary(case, s) for s in SERVERS)
        spread = f"{_spread(runs.get('reference'))} / {_spread(runs.get('mlmagics'))}"
        lines.append(
            f"| {case.payload} | {case.conns} | {_cell_rps(ref)} | {_cell_rps(mlm)} | "
            f"{_ratio(_attr(mlm, 'requests_per_s'), _attr(ref, 'requests_per_s'))} | {_cell_latency(ref)} | "
            f"{_cell_latency(mlm)} | {_ratio(_attr(ref, 'p99_ms'), _attr(mlm, 'p99_ms'))} | {spread} |"
        )
        flags += [
            f"- ⚠ {name}, {case.name}: {m.error_text()} of {m.requests} requests (all runs)"
            for name in SERVERS
            if (m := result.summary(case, name)) and m.errors
        ]
    lines += [
        "",
        (
            "The echo rows serve the trivial script (`run()` returns its input) with the 1-row body, each server from "
            "its own app root with the same settings: they measure each server's own overhead, not the model. "
            "Spread = (max − min) / median of the runs' req/s."
        ),
        "",
    ]
    lines += flags + [""] if flags else ["No load run had a non-2xx response or a socket error.", ""]
    return lines


def startup_table(result: BenchResult) -> list[str]:
    """Cold start (both scripts) and memory for both servers."""
    servers = {s: result.servers.get(s) for s in SERVERS}
    count = max((len(c) for r in servers.values() if r for c in r.cold_starts.values()), default=0)
    rows = [
        (
            "cold start, sklearn script: spawn → first 200 on GET / (s)",
            {s: _median_cold(r, "get_s") for s, r in servers.items()},
            2,
        ),
        (
            "**cold start, sklearn script: spawn → first correct POST /score (s)**",
            {s: _median_cold(r, "score_s") for s, r in servers.items()},
            2,
        ),
        (
            "cold start, trivial script: spawn → first correct POST /score (s)",
            {s: _median_cold(r, "score_s", "trivial") for s, r in servers.items()},
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
        f"## Start-up and memory (cold start: median of {count} spawn(s), servers alternating; memory: sklearn script)",
        "",
        "| measure | reference | mlmagics | ratio (ref/mlm) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, values, digits in rows:
        ref, mlm = values["reference"], values["mlmagics"]
        lines.append(f"| {label} | {fmt(ref, digits=digits)} | {fmt(mlm, digits=digits)} | {_ratio(ref, mlm)} |")
    lines.append(f"| processes in the tree | {fmt(procs['reference'])} | {fmt(procs['mlmagics'])} | |")
    return [*lines, ""]


def inprocess_table(result: BenchResult) -> list[str]:
    """The in-process run() limit and how close each server gets to it (best median over the connection counts)."""
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
                (
                    m.requests_per_s
                    for case in result.script_cases("sklearn")
                    if case.rows == rows and (m := result.summary(case, server))
                ),
                default=None,
            )
            cells.append(DASH if best is None else f"{best:,.0f} ({100 * best / limit:.0f}%)")
        lines.append(f"| {rows} row{'s' if rows > 1 else ''} | {limit:,.0f} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def _settings_line(settings: dict[str, Any]) -> str:
    return (
        f"- settings: {settings['workers']} worker(s) each; per case and server a {settings['warmup']} s warm-up, then "
        f"{settings['repeat']} measured run(s) of {settings['seconds']} s, servers alternating run by run "
        f"(ref, mlm, ref, mlm, …); `wrk -t<min(c,2)> -c<c> -d{settings['seconds']}s --timeout=10s --latency`"
    )


def setup_section(result: BenchResult) -> list[str]:
    """Machine, versions, commands, logs and footnotes."""
    machine, settings = result.machine, result.settings
    lines = [
        "## Setup",
        "",
        (f"- machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['platform']}; wrk {machine['wrk']}"),
        f"- CPU pinning: {settings['pinning']}",
        _noise_setup_line(result),
        (
            f"- bench driver: Python {machine['python']}; run took {result.total_s:.0f} s; "
            f"1-min load average {machine['load_before']:.2f} at start, "
            f"{machine.get('load_after', float('nan')):.2f} at end (other work skews results)"
        ),
    ]
    for env_name, pkgs in machine["envs"].items():
        listed = ", ".join(f"{k} {v}" if v else f"no {k}" for k, v in pkgs.items() if k != "base")
        lines.append(f"- {env_name}: {listed}")
    lines.append(_settings_line(settings))
    for name, run in result.servers.items():
        lines += [
            f"- {name} (sklearn script; the trivial one runs the same way from its own app root): "
            f"`{' '.join(run.command)}` ({run.notes})",
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
            "2. Each server runs in a venv of its own: its own requirements plus the same model stack "
            "(inference-schema, scikit-learn, numpy, joblib at the versions above), as in an image. The in-process "
            "loop runs in the mlmagics venv. Not in the project venv: scikit-learn imports pandas whenever it is "
            "installed, which costs 0.2-0.4 s of cold start that neither server's image has."
        ),
        (
            "3. Both servers run the same v1 `score.py` from a temp app root (CWD), with AZUREML_MODEL_DIR="
            "`<app root>/azureml-models` and a LogisticRegression trained on `load_digits` (64 features). "
            "The trivial script (`def init(): pass` / `def run(raw_data): return raw_data`) has an app root of its own "
            "with an empty `azureml-models`."
        ),
        (
            "4. RSS sums every process of the tree, so pages shared by forked workers count once per process; "
            "PSS splits them fairly."
        ),
        (
            "5. A ⚠ marks a load case with non-2xx responses or socket errors in any of its runs (listed under the "
            "table); its numbers are not comparable."
        ),
        "",
    ]
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) < limit else f"{text[: limit - 3]}…"


def correctness(result: BenchResult) -> list[str]:
    """What the pre-load checks compared."""
    checked = ", ".join(result.servers)
    shown = {rows: _short(a) for rows, a in result.answers.items()}
    lines = [
        "## Correctness (checked before loading)",
        "",
        f"For the same bodies, {checked} answered exactly what in-process `run()` returns "
        f"(wire value JSON-decoded twice): " + "; ".join(f"{rows} row(s) → `{a}`" for rows, a in shown.items()),
        "",
    ]
    if result.echo_wire:
        wire = next(iter(result.echo_wire.values()))
        same = "byte-identical " if len(result.echo_wire) > 1 else ""
        lines += [
            (
                f"Echo (trivial script, 1-row body): {', '.join(result.echo_wire)} returned {same}{len(wire)} bytes, "
                f"the request body as one JSON string (v1 double encoding): `{_short(wire.decode(errors='replace'))}`"
            ),
            "",
        ]
    return lines


def render(result: BenchResult) -> str:
    """The whole report."""
    settings = result.settings
    title = [
        "# Serving benchmark: mlmagics vs azureml-inference-server-http 1.5.1",
        "",
        (
            f"{settings['date']} · {settings['workers']} worker(s) per server · "
            f"{'quick' if settings['quick'] else 'full'} run ({settings['repeat']} × {settings['seconds']} s per case "
            f"and server) · CPU pinning {'on' if settings['pinned'] else 'off'}"
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
