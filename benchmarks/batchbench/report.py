"""The batching benchmark's Markdown report: the issue's targets, ratios, the load table, setup."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from servebench.report import DASH, DISTURBED_CPU, Case, Noise, disturbed, fmt, noise_of, noise_warning, worst

from batchbench.load import Run, Summary, summarize
from batchbench.servers import BATCH_TEXT, MLMAGICS, Server

TARGET_CONNS = 64
TARGET_SPEEDUP = 1.5  # batched ÷ unbatched at 64 conns
TARGET_P99_MS = 20.0
NOT_SLOWER = 0.97  # "without batching, nothing gets slower": this checkout ÷ before batching, per case
LABELS = {
    "reference": "reference (azureml-inference-server-http)",
    "mlmagics-before": "mlmagics before batching",
    "mlmagics-off": "mlmagics, batching off",
    "mlmagics-batch": "mlmagics, batching (64 rows, 10 ms)",
    "bentoml-1000": "BentoML batchable, max_latency_ms=1000",
    "bentoml-10": "BentoML batchable, max_latency_ms=10",
}


@dataclass
class BatchResult:
    """Everything the report shows; ``runs`` keeps every repeat, the report uses medians."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    servers: list[Server]
    cases: list[Case]
    runs: dict[str, dict[Case, list[Run]]] = field(default_factory=dict)
    inprocess: dict[str, dict[str, float]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    total_s: float = 0.0
    instructions: dict[str, dict[Case, float]] = field(default_factory=dict)  # per request, by runtime key and case
    instructions_note: str = ""  # why they were not counted
    instructions_failed: list[str] = field(default_factory=list)  # the counts that failed, one line each

    def summary(self, key: str, case: Case) -> Summary | None:
        runs = self.runs.get(key, {}).get(case)
        return summarize(runs) if runs else None

    def one_row(self) -> list[Case]:
        return [c for c in self.cases if c.rows == 1]


def _workers(result: BatchResult) -> str:
    """The worker count in words: 2 (the issue's target case) unless --workers asked for another."""
    n = result.settings.get("workers", 2)
    return f"{n} worker{'s' if n != 1 else ''}"


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _rps(result: BatchResult, key: str, case: Case) -> float | None:
    s = result.summary(key, case)
    return s.good_rps if s else None


@dataclass
class Paired:
    """``a`` ÷ ``b`` good req/s, round by round: the median and the extremes of the rounds' ratios."""

    median: float
    low: float
    high: float


def paired_ratio(result: BatchResult, a: str, b: str, case: Case) -> Paired | None:
    """Each round's run of ``a`` divided by the same round's run of ``b``: run_matrix appends one run per server and
    round, in round order, so the lists pair index by index (unequal lengths would mispair: strict)."""
    runs_a, runs_b = result.runs.get(a, {}).get(case, []), result.runs.get(b, {}).get(case, [])
    if not runs_a or not runs_b:  # a server left out (--servers)
        return None
    ratios = [x.good_rps / y.good_rps for x, y in zip(runs_a, runs_b, strict=True) if y.good_rps]
    return Paired(statistics.median(ratios), min(ratios), max(ratios)) if ratios else None


def _verdict(ok: bool | None) -> str:
    return DASH if ok is None else ("✓ met" if ok else "✗ **not met**")


def _non2xx(s: Summary | None) -> str:
    if s is None:
        return DASH
    if not s.non_2xx:
        text = "0"
    else:
        codes = ", ".join(f"{n:,}× {code}" for code, n in sorted(s.statuses.items()) if not 200 <= code < 300)
        text = f"**{s.non_2xx:,}** ({100 * s.non_2xx_share:.0f} %: {codes})"
    if s.socket_errors:
        text += f"; {s.socket_errors:,} socket errors"
    return text


def targets(result: BatchResult) -> list[str]:
    """The issue's targets, each with what was measured and a verdict."""
    at64 = Case("sklearn", 1, TARGET_CONNS)
    batch, off = result.summary("mlmagics-batch", at64), result.summary("mlmagics-off", at64)
    loop = result.inprocess.get("1", {}).get("calls_per_s")
    lines = [
        f"## The issue's targets (1 row per request, {TARGET_CONNS} connections, {_workers(result)})",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
    ]
    if batch:
        over_loop = _div(batch.good_rps, loop)
        lines.append(
            f"| batching answers more good req/s than the in-process per-call `run()` loop of one process "
            f"| {fmt(batch.good_rps)} vs {fmt(loop)} calls/s: **{fmt(over_loop, '×', 2)}** "
            f"| {_verdict(None if over_loop is None else over_loop > 1)} |"
        )
        lines.append(
            f"| no non-2xx answer with batching | {_non2xx(batch)} of {batch.answers:,} answers "
            f"| {_verdict(batch.non_2xx == 0 and batch.socket_errors == 0)} |"
        )
        speedup = _div(batch.good_rps, off.good_rps if off else None)
        lines.append(
            f"| batching ≥ {TARGET_SPEEDUP}× its own throughput without batching | {fmt(batch.good_rps)} ÷ "
            f"{fmt(off.good_rps if off else None)} = **{fmt(speedup, '×', 2)}** "
            f"| {_verdict(None if speedup is None else speedup >= TARGET_SPEEDUP)} |"
        )
        lines.append(
            f"| p99 with batching under {TARGET_P99_MS:g} ms | **{fmt(batch.p99_ms, ' ms', 2)}** "
            f"(p50 {fmt(batch.p50_ms, ' ms', 2)}) | {_verdict(batch.p99_ms < TARGET_P99_MS)} |"
        )
    work = instruction_ratios(result, "mlmagics-off", "mlmagics-before")
    if work:
        most = max(work, key=lambda cr: cr[1])
        cells = ", ".join(f"{c.conns} c / {c.rows} r {r:.3f}" for c, r in work)
        lines.append(
            f"| without batching nothing gets slower — the work: instructions per request (callgrind), this checkout "
            f"with batching off ÷ the runtime before batching, every case ≤ {1 / NOT_SLOWER:.3f} (= 1 ÷ {NOT_SLOWER}) "
            f"| most **{most[1]:.3f}** ({most[0].name}); all: {cells} | {_verdict(most[1] <= 1 / NOT_SLOWER)} |"
        )
    ratios = [(case, r) for case in result.cases if (r := paired_ratio(result, "mlmagics-off", "mlmagics-before", case))]
    if ratios:
        worst = min(ratios, key=lambda cr: cr[1].median)
        cells = ", ".join(f"{c.conns} c / {c.rows} r {r.median:.2f} ({r.low:.2f}–{r.high:.2f})" for c, r in ratios)
        lines.append(
            f"| (the same, in throughput: this checkout with batching off ÷ the runtime before batching, median of the "
            f"rounds' paired ratios, ≥ {NOT_SLOWER}) | worst {worst[1].median:.2f} ({worst[0].name}); all (min–max of "
            f"the pairs): {cells} | informational: {'would be met' if worst[1].median >= NOT_SLOWER else 'would not be met'}"
            f"{'; the count above decides' if work else ''} |"
        )
    lines += [
        "",
        "Good req/s counts 2xx answers only (each answer counted by status in wrk's Lua). Medians of "
        f"{result.settings['repeat']} run(s) per case and server, the servers taking turns run by run. "
        f'The "nothing slower" threshold ({NOT_SLOWER}) is the one hardening_bench.py uses for "costs nothing". '
        "Its ratio pairs the two runtimes' runs of the same round (run one after the other, seconds apart) and takes "
        "the median of those ratios: the machine's speed drifts by more than the threshold between rounds (the spread "
        "column), and a pair shares the drift. Even so a single pair can range more widely than the threshold; the "
        "instruction count (below) does not move with the machine, and reads the same target on the work a request "
        "costs.",
        "",
    ]
    return lines


def instruction_ratios(result: BatchResult, a: str, b: str) -> list[tuple[Case, float]]:
    """Instructions per request of runtime ``a`` ÷ ``b``, for each case both were counted in."""
    counted_a, counted_b = result.instructions.get(a, {}), result.instructions.get(b, {})
    ratios = [(case, counted_a[case] / counted_b[case]) for case in counted_a if counted_b.get(case)]
    return sorted(ratios, key=lambda cr: (cr[0].rows, cr[0].conns))


def instruction_table(result: BatchResult) -> list[str]:
    """Instructions per request of the three mlmagics runtimes, and their ratios."""
    lines = ["## Instructions per request (callgrind: a count of the work, not a time)", ""]
    failed = [f"- not counted: {line}" for line in result.instructions_failed]
    if not result.instructions:
        return lines + ([f"{result.instructions_note or 'not counted'}."] if not failed else failed) + [""]
    counted = result.instructions
    cases = sorted({c for by_case in counted.values() for c in by_case}, key=lambda c: (c.rows, c.conns))
    lines += [
        "One worker's whole path for a request, in one process and without sockets (`servebench/pathcost.py`: httptools "
        "parses it, the app admits and queues it, the scorer runs `run()` — alone, or in a batch of the requests "
        "queued with it —, the loop writes the answer), key auth on, request logging on, metrics off (a few dict increments "
        "per request, in every runtime alike): (instructions for the larger "
        "count of requests − for the smaller) ÷ the difference. With C connections, each of the C has a request in "
        "flight, the scorer takes the C queued requests, the loop delivers the C answers, and again.",
        "",
        f"| case | before batching | batching off | batching on ({BATCH_TEXT}) | off ÷ before | on ÷ off |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        before, off, on = (counted.get(key, {}).get(case) for key in MLMAGICS)
        lines.append(
            f"| {case.name} | {fmt(before)} | {fmt(off)} | {fmt(on)} | {fmt(_div(off, before), '×', 3)} "
            f"| {fmt(_div(on, off), '×', 3)} |"
        )
    lines += ["", *failed] if failed else []
    lines += [
        "",
        "What a count leaves out: the kernel (sockets, scheduling), waiting for the CPU and the GIL, cache misses — it "
        "compares the work two runtimes do per request, not how fast this machine runs it. The load tables measure "
        "that, as far as this machine's noise allows. Nor is it exact: a little of the work depends on the clock "
        "(timers, the cached date, the batcher's learned timings), so two runs' counts of one runtime differ by a "
        "fraction of a percent (benchmarks/README.md gives the spread measured).",
        "",
    ]
    return lines


def _machine(m: dict[str, Any]) -> str:
    return f"- machine: {m['cpu_count']} × {m['cpu_model']}; {m['platform']}; Python {m['python']}"


def render_counts(result: BatchResult) -> str:
    """The report of ``--instructions-only``: the counts, the runtimes and the machine."""
    st, m = result.settings, result.machine
    return "\n".join(
        [
            "# Adaptive batching: instructions per request of the mlmagics runtimes",
            "",
            f"Counted {st['date']} in {result.total_s / 60:.1f} min. Generated by "
            f"`python benchmarks/batching_bench.py --instructions-only{' --quick' if st['quick'] else ''}`.",
            "",
            *instruction_table(result),
            "## Setup",
            "",
            _machine(m),
            f"- mlmagics runtimes: this checkout = {st['worktree']}; before batching = `git archive {st['before']}` "
            f"({st['before_why']}); both from `benchmarks/.venv-mlmagics`, under valgrind's callgrind with one BLAS "
            "thread and `PYTHONHASHSEED=0`",
            "",
        ]
    )


def ratio_table(result: BatchResult) -> list[str]:
    """Good req/s ratios per connection count (1 row), and the 100-row case."""
    pairs = [
        ("mlmagics-batch", "mlmagics-off", "batched ÷ unbatched"),
        ("mlmagics-batch", "mlmagics-before", "batched ÷ before batching"),
        ("mlmagics-off", "mlmagics-before", "unbatched ÷ before batching"),
        ("mlmagics-batch", "bentoml-1000", "batched ÷ BentoML 1000 ms"),
        ("mlmagics-batch", "bentoml-10", "batched ÷ BentoML 10 ms"),
        ("mlmagics-batch", "reference", "batched ÷ reference"),
    ]
    loop = result.inprocess.get("1", {}).get("calls_per_s")
    head = "| case | " + " | ".join(p[2] for p in pairs) + " | batched ÷ in-process loop |"
    lines = [
        "## Ratios (good req/s; > 1 means the first is faster)",
        "",
        "Each is the median of the rounds' ratios: a round's run of one server divided by the same round's run of "
        "the other (all servers take turns within a round).",
        "",
        head,
        "| --- |" + " ---: |" * (len(pairs) + 1),
    ]
    for case in result.cases:
        cells = [fmt(r.median if (r := paired_ratio(result, a, b, case)) else None, "×", 2) for a, b, _ in pairs]
        over_loop = fmt(_div(_rps(result, "mlmagics-batch", case), loop), "×", 2) if case.rows == 1 else DASH
        lines.append(f"| {case.name} | " + " | ".join(cells) + f" | {over_loop} |")
    lines += ["", f"In-process loop: {fmt(loop)} calls/s of 1 row (see Setup).", ""]
    return lines


def load_table(result: BatchResult) -> list[str]:
    """Every case and server: good req/s, non-2xx, p50 / p99, spread; batching's rows per call."""
    lines = [
        "## Every case (wrk; medians of the runs; servers interleaved)",
        "",
        "| server | setting | conns | rows | good req/s | non-2xx (all runs) | p50 ms | p99 ms | spread "
        "| server CPU · µs per good answer | rows per batched call · share batched · wait |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in result.cases:
        for server in result.servers:
            s = result.summary(server.key, case)
            if s is None:
                continue
            batch = DASH
            if s.batch:
                batch = f"{s.batch['rows_per_call']:.1f} · {100 * s.batch['batched_share']:.0f} % · {s.batch['wait_ms']:.2f} ms"
            spread = DASH if s.spread is None else f"{100 * s.spread:.0f}%"
            lines.append(
                f"| {server.server} | {server.setting} | {case.conns} | {case.rows} | **{fmt(s.good_rps)}** "
                f"| {_non2xx(s)} | {fmt(s.p50_ms, digits=2)} | {fmt(s.p99_ms, digits=2)} | {spread} "
                f"| {fmt(s.server_cpu, digits=2)} · {fmt(s.cpu_us)} | {batch} |"
            )
    lines += [
        "",
        "- p50 / p99 are wrk's, over every answer (a fast 503 counts too); where non-2xx is 0 they are the 2xx "
        "answers' latencies.",
        "- spread = (max − min) / median of the runs' good req/s.",
        "- server CPU: CPUs the server's whole process tree used during the run (from `/proc`; the servers share one "
        "CPU when pinned, so well under 1.0 at full load means other processes took it); µs per good answer = that "
        "CPU time ÷ 2xx answers.",
        "- last column (mlmagics with batching, from its `/metrics` around each run): mean rows per `run()` call that "
        "served more than one request, the share of answered rows that were served in such a call, and the mean wait "
        "of a call's oldest request (`mlmagics_batch_wait_seconds`). A request alone in its call is not counted as a "
        "batch.",
        "",
    ]
    return lines


def _noise(result: BatchResult) -> list[Noise]:
    return noise_of((key, case.name, runs) for key, by_case in result.runs.items() for case, runs in by_case.items())


def setup(result: BatchResult) -> list[str]:
    """Settings, machine, pinning, the servers' commands, package versions, interference, checks."""
    st, m = result.settings, result.machine
    ip = result.inprocess
    n = len(result.servers)
    turns = f"the {n} servers taking turns run by run, the order rotated by one each round" if n > 1 else "one server"
    lines = [
        "## Setup",
        "",
        f"- date: {st['date']}; {'**--quick** (smoke run, not a measurement); ' if st['quick'] else ''}"
        f"{st['repeat']} measured run(s) of {st['seconds']} s per case and server (+ a {st['warmup']} s warm-up before "
        f"each server's first run of a case), {turns}; total run time {result.total_s / 60:.1f} min",
        f"{_machine(m)}; wrk {m['wrk']}; load average {m['load_before']:.2f} before, {m['load_after']:.2f} after",
        f"- CPU pinning: {st['pinning']}",
        f"- wrk: `wrk -t<min(c,2)> -c<c> -d{st['seconds']}s --timeout=10s --latency -s <lua>`, the 1-row body "
        '(`{"data": [[64 floats]]}`) or the 100-row body; the Lua script (servebench\'s POST script + a status '
        "counter) counts every answer by HTTP status",
        f"- model: servebench's fixture (LogisticRegression on load_digits, {m.get('train_accuracy', '?')} train "
        "accuracy); the reference and mlmagics serve the same inference-schema decorated `score.py` "
        "(`@input_schema('data', NumpyParameterType(np.zeros((1, 64))))`, returns `model.predict(data).tolist()`); "
        "BentoML serves `model.predict(data)` behind `@bentoml.api(batchable=True, batch_dim=0, max_batch_size=64, "
        "max_latency_ms=…)` — the same request body, the same answer",
        f"- in-process loop (mlmagics venv, on the servers' CPU, best of a run before and one after the load): "
        f"`run(**json.loads(body))` — JSON decoding, inference-schema's conversion and the prediction, no HTTP: "
        f"1 row {fmt(ip.get('1', {}).get('calls_per_s'))} calls/s; 64 rows per call "
        f"{fmt(ip.get('64', {}).get('calls_per_s'))} calls/s = {fmt(ip.get('64', {}).get('rows_per_s'))} rows/s "
        f"(what batching could reach at best); 100 rows {fmt(ip.get('100', {}).get('calls_per_s'))} calls/s",
        f"- mlmagics runtimes: this checkout = {st['worktree']} (copied at the start of the run); before batching = "
        f"`git archive {st['before']}` ({st['before_why']}); both from the same venv (`benchmarks/.venv-mlmagics`), "
        "key auth on (Bearer primary key on every request), metrics and request logging at their defaults",
    ]
    noise = _noise(result)
    if noise:
        other = [n[0] for n in noise]
        lines.append(
            f"- interference during the {len(noise)} measured runs (CPU used by neither wrk, the server under test nor "
            f"the driver; the idle servers count here): median {statistics.median(other):.2f}, max {max(other):.2f} CPU "
            f"({worst(noise)[2]}); hypervisor steal max {max(n[1] for n in noise):.2f} CPU; {len(disturbed(noise))} run(s) "
            f"above {DISTURBED_CPU:.2f}"
        )
    lines += ["", "Checks before any load:", ""] + [f"- {c}" for c in result.checks] + [""]
    lines += ["| server | setting | command | notes |", "| --- | --- | --- | --- |"]
    for s in result.servers:
        env = {k: v for k, v in s.env.items() if k.startswith(("BENCH_", "WORKER_COUNT", "BENTOML_DO"))}
        env_text = " ".join(f"{k}={_short(v)}" for k, v in env.items())
        command = " ".join(_short(part) for part in s.command)
        lines.append(f"| {s.server} | {s.setting} | `{(env_text + ' ') if env_text else ''}{command}` | {s.notes} |")
    lines += ["", "Package versions:", "", "| venv | versions |", "| --- | --- |"]
    for name, versions in m["envs"].items():
        shown = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "base" and v)
        lines.append(f"| {name} | {shown} |")
    return lines + [""]


def _short(part: str) -> str:
    """Paths in commands shortened to their last two parts (the temp dir differs each run)."""
    if "/" in part and not part.startswith("-"):
        return "…/" + "/".join(part.rstrip("/").split("/")[-2:])
    return part


def render(result: BatchResult, plot_name: str) -> str:
    """The whole report."""
    title = "# Adaptive batching: mlmagics with and without it, the reference server and BentoML"
    partial = " **Partial run** (--conns / --servers): not every case or server." if result.settings.get("partial") else ""
    intro = (
        f"One run, every server on the same model and the same request bodies, {_workers(result)} each "
        f"({result.settings['date']}). Generated by `python benchmarks/batching_bench.py"
        f"{' --quick' if result.settings['quick'] else ''}`.{partial}"
    )
    return "\n".join(
        [
            title,
            "",
            intro,
            "",
            *noise_warning(_noise(result), ": those numbers are noisier than the machine allows."),
            *targets(result),
            *ratio_table(result),
            f"![good req/s against connections]({plot_name})",
            "",
            *load_table(result),
            *instruction_table(result),
            *setup(result),
        ]
    )


def plot_data(result: BatchResult) -> dict[str, Any]:
    """What plot.py draws: good req/s per connection count (1 row), one line per server."""
    cases = result.one_row()
    lines = []
    for server in result.servers:
        points = [(c.conns, _rps(result, server.key, c)) for c in cases]
        points = [(c, r) for c, r in points if r is not None]
        if points:
            lines.append(
                {
                    "key": server.key,
                    "label": LABELS.get(server.key, server.key),
                    "conns": [p[0] for p in points],
                    "good_rps": [p[1] for p in points],
                }
            )
    return {
        "lines": lines,
        "inprocess": result.inprocess.get("1", {}).get("calls_per_s"),
        "title": f"Good req/s vs connections, 1 row per request, {_workers(result)} ({result.settings['date']}"
        f"{', --quick' if result.settings['quick'] else ''})",
    }
