"""Benchmark adaptive batching side by side: mlmagics with and without it, the reference, BentoML.

Six servers, 2 workers each, on one model (servebench's LogisticRegression on load_digits)
and the same request bodies: azureml-inference-server-http; mlmagics as it was before
batching; mlmagics with batching off; mlmagics with ``max_batch_size`` 64 and
``max_batch_latency_ms`` 10; BentoML with ``@bentoml.api(batchable=True)`` at
``max_latency_ms`` 1000 and at 10. wrk loads them with 1 row per request at 1, 8, 16, 32
and 64 connections and with 100 rows at 8, the servers taking turns run by run; a Lua
counter keeps 2xx answers apart from the rest. Also measured: the in-process per-call
``run()`` loop of one process, and (callgrind, after the load) the instructions one request
costs in each mlmagics runtime — the count that reads "without batching, nothing gets slower"
where this machine's req/s spreads too much to. Each server runs in a venv of its own
(``benchmarks/.venv-reference``, ``.venv-mlmagics``, ``.venv-bentoml``, created on first use).
The Markdown report goes to stdout and --out, the plot to --plot.

Example::

    python benchmarks/batching_bench.py --quick
    python benchmarks/batching_bench.py
    python benchmarks/batching_bench.py --repeat 5 --duration 4 --no-pin
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit
from batchbench import apps, costs, load
from batchbench import report as batch_report
from batchbench import servers as batch_servers
from batchbench.report import BatchResult
from batchbench.servers import Server
from benchkit import BENCH_DIR, REPO_ROOT, BenchError
from servebench import instructions, probe, procs, servers
from servebench.report import Case

FIXTURE = BENCH_DIR / "servebench" / "fixture.py"
INPROC = BENCH_DIR / "batchbench" / "inproc.py"
PLOT = BENCH_DIR / "batchbench" / "plot.py"
CONNECTIONS = (1, 8, 16, 32, 64)
CASES = [Case("sklearn", 1, c) for c in CONNECTIONS] + [Case("sklearn", 100, 8)]
SERVER_KEYS = tuple(batch_report.LABELS)
WRK_LOG = "batching-wrk.log"  # wrk's raw output of every measured run, next to the report

log = benchkit.logger("batching_bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per case and server (default: 3 runs of 5 s)")
    parser.add_argument(
        "--out", type=Path, help="Markdown report (default results/batching.md; --instructions-only: batching-instructions.md)"
    )
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument(
        "--conns",
        type=int,
        nargs="+",
        choices=CONNECTIONS,
        help="only these 1-row connection counts (default: all, and 100 rows)",
    )
    parser.add_argument("--servers", nargs="+", choices=SERVER_KEYS, help="only these servers (default: all six)")
    parser.add_argument("--before", help="revision of the runtime before batching (default: found with git log)")
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="skip counting instructions per request with callgrind after the load (~10 min; --quick: one case, ~3 min)",
    )
    parser.add_argument(
        "--instructions-only",
        action="store_true",
        help="only count instructions per request (no servers, no load): the report has the counts alone",
    )
    benchkit.add_load_options(parser, workers=2)
    parser.add_argument(
        "--python",
        type=Path,
        default=benchkit.PROJECT_PYTHON,
        help="the project venv's python (trains the model, draws the plot)",
    )
    args = parser.parse_args(argv)
    benchkit.check_load_options(parser, args)
    if args.instructions_only and not args.instructions:
        parser.error("--instructions-only and --no-instructions exclude each other")
    # a counts-only report must not overwrite the load's report by default
    args.out = args.out or BENCH_DIR / "results" / ("batching-instructions.md" if args.instructions_only else "batching.md")
    args.plot = args.plot or args.out.with_suffix(".png")
    return args


def prepare_envs(args: argparse.Namespace, out_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The three servers' venvs (created once) and the package versions in each."""
    project = servers.versions(args.python, servers.PROJECT_PACKAGES)
    pythons = {"mlmagics": servers.runtime_venv(project, out_dir / "batching-mlmagics-pip.log", log)}
    missing = servers.mlmagics_missing(pythons["mlmagics"], REPO_ROOT)
    if missing:
        raise BenchError(f"mlmagics server unavailable: {missing}")
    envs = {
        "project venv (trains the model)": project,
        "mlmagics venv (the runtime comes from the checkout)": servers.versions(pythons["mlmagics"], servers.RUNTIME_PACKAGES),
    }
    if args.instructions_only:  # the count runs the mlmagics runtimes only
        return envs, pythons
    pythons["reference"] = servers.reference_venv(project, out_dir / "batching-reference-pip.log", log)
    pythons["bentoml"] = benchkit.ensure_venv(
        BENCH_DIR / ".venv-bentoml",
        batch_servers.bentoml_requirements(project),
        project["base"],
        out_dir / "batching-bentoml-pip.log",
        "BentoML",
        log,
    )
    envs["reference venv"] = servers.versions(pythons["reference"], servers.REFERENCE_PACKAGES)
    envs["BentoML venv"] = servers.versions(pythons["bentoml"], batch_servers.BENTOML_PACKAGES)
    return envs, pythons


def inprocess(python: Path, app_json: Path, seconds: float, pinning: procs.Pinning) -> dict[str, Any]:
    log("measuring the in-process run() loop")
    cmd = [*pinning.server, str(python), str(INPROC), "--app", str(app_json), "--seconds", str(seconds)]
    return benchkit.run_json(cmd, "the in-process loop")


def wait_ready(spawned: procs.Spawned, server: Server, body: bytes, expected: Any, timeout: float = 120) -> float:
    """Poll the ready path for 200, then POST until the expected answer; seconds since spawn."""

    def ready() -> bool:
        status, _ = probe.request(server.port, "GET", server.ready_path, headers=server.headers)
        if status != 200:
            raise probe.ServerFailed(f"GET {server.ready_path} {status}")
        answer = post(server, body)
        if answer != expected:
            raise probe.ServerFailed(f"wrong answer {str(answer)[:80]}, expected {str(expected)[:80]}")
        return True

    return probe.poll(spawned, ready, f"200 on GET {server.ready_path} and the right answer", timeout)


def post(server: Server, body: bytes, shed_ok: bool = False) -> Any:
    """POST ``body``; the decoded answer (None for a 503 when ``shed_ok``), else ServerFailed unless 200."""
    status, wire = probe.request(
        server.port, "POST", server.score_path, body, {"Content-Type": "application/json", **server.headers}
    )
    if status == 503 and shed_ok:
        return None
    if status != 200:
        raise probe.ServerFailed(f"{server.key} answered {status}: {wire[:200]!r}")
    return probe.decode_answer(wire)


def check(server: Server, app: dict[str, Any], expected: dict[str, Any]) -> str:
    """The 1- and 100-row answers (a 503 is retried), then 16 one-digit requests at once, 3 rounds: every 200
    must be that request's own right answer; a 503 (a server shedding load) is counted and reported."""
    for rows in ("1", "100"):
        body = Path(app["bodies"][rows]).read_bytes()
        for _ in range(20):
            answer = post(server, body, shed_ok=True)
            if answer is not None:
                break
            time.sleep(0.1)
        if answer != expected[rows]:
            raise probe.ServerFailed(f"{server.key}: {rows}-row answer {str(answer)[:80]}, expected {str(expected[rows])[:80]}")
    singles = [Path(p).read_bytes() for p in app["singles"]]
    shed = total = 0
    with concurrent.futures.ThreadPoolExecutor(len(singles)) as pool:
        for _ in range(3):
            answers = list(pool.map(lambda body: post(server, body, shed_ok=True), singles))
            wrong = [i for i, (a, e) in enumerate(zip(answers, expected["singles"], strict=True)) if a is not None and a != e]
            if wrong:
                raise probe.ServerFailed(f"{server.key}: concurrent one-digit requests {wrong} got wrong answers")
            shed += sum(a is None for a in answers)
            total += len(answers)
    shed_text = f" ({shed} of them answered 503)" if shed else ""
    return (
        f"{server.key}: 1- and 100-row answers equal the in-process ones; of 3 × {len(singles)} concurrent "
        f"one-digit requests each 200 was that request's own right answer{shed_text}"
    )


def settle(pid: int, limit_s: float = 3.0) -> None:
    """Wait until the server's tree is idle (it may still be working off queued requests)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = procs.cpu_snapshot(pid).server
        time.sleep(0.1)
        if procs.cpu_snapshot(pid).server - before < 0.01:
            return


def measured(server: Server, lua: Path, case: Case, pid: int, timing: dict[str, Any], pinning: procs.Pinning) -> load.Run:
    """One measured run, with the interference around it and (batching) the batch counters."""
    counters = load.batch_counters(server.port, server.headers) if server.batch_metrics else {}
    before, started = procs.cpu_snapshot(pid), time.monotonic()
    run = load.measure(server.url, lua, case.conns, timing["seconds"], pinning.wrk)
    after, wall = procs.cpu_snapshot(pid), time.monotonic() - started
    noise = procs.interference(before, after, wall)
    run.other_cpu, run.steal_cpu = noise.other, noise.steal
    run.server_cpu = (after.server - before.server) / wall
    if server.batch_metrics:
        run.batch = load.batch_figures(counters, load.batch_counters(server.port, server.headers), run.good)
    return run


def run_matrix(
    result: BatchResult,
    running: dict[str, procs.Spawned],
    luas: dict[tuple[str, int], Path],
    timing: dict[str, Any],
    pinning: procs.Pinning,
    wrk_log: Path,
) -> None:
    """Every case ``repeat`` times, the servers taking turns (order rotated by one each round)."""
    order = result.servers
    for case in result.cases:
        for attempt in range(timing["repeat"]):
            shift = attempt % len(order)
            for server in order[shift:] + order[:shift]:
                pid, lua = running[server.key].pid, luas[server.key, case.rows]
                if attempt == 0:
                    load.measure(server.url, lua, case.conns, timing["warmup"], pinning.wrk)
                    settle(pid)
                run = measured(server, lua, case, pid, timing, pinning)
                settle(pid)
                result.runs.setdefault(server.key, {}).setdefault(case, []).append(run)
                note(run, server.key, case, attempt, wrk_log)


def note(run: load.Run, key: str, case: Case, attempt: int, wrk_log: Path) -> None:
    """A measured run: wrk's own output into the wrk log, one line of progress."""
    with wrk_log.open("a") as out:
        out.write(
            f"\n### {key}, {case.name}, run {attempt + 1} (other {run.other_cpu:.2f} CPU, "
            f"steal {run.steal_cpu:.2f} CPU)\n{run.result.raw}"
        )
    extra = f", non-2xx {run.non_2xx}" if run.non_2xx else ""
    if run.batch:
        extra += f", {run.batch['rows_per_call']:.1f} rows/batched call"
    log(
        f"{key:15} {case.name:>18} run {attempt + 1}: {run.good_rps:7.0f} good req/s, "
        f"p50 {run.result.p50_ms:.2f} ms, p99 {run.result.p99_ms:.2f} ms{extra}; "
        f"server {run.server_cpu:.2f} CPU, other {run.other_cpu:.2f} CPU"
    )


def servers_to_run(
    args: argparse.Namespace,
    app: dict[str, Any],
    pythons: dict[str, Path],
    runtimes: dict[str, tuple[Path, str]],
    tmp: Path,
    out_dir: Path,
    pinning: procs.Pinning,
) -> list[Server]:
    """The servers of this run (``--servers``), their configs written, their logs and wrk's emptied."""
    key = secrets.token_urlsafe(24)
    configs = {
        "off": batch_servers.write_mlmagics_config(tmp / "service-off.json", key, batching=False),
        "on": batch_servers.write_mlmagics_config(tmp / "service-batch.json", key, batching=True),
    }
    specs = batch_servers.build(app, pythons, runtimes, configs, key, args.workers, out_dir, pinning)
    specs = [s for s in specs if not args.servers or s.key in args.servers]
    for path in {s.log_path for s in specs} | {out_dir / WRK_LOG}:
        path.write_text("")
    return specs


def run(args: argparse.Namespace) -> BatchResult:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    if args.instructions_only:  # no wrk, no servers: only callgrind over the runtimes
        if not instructions.available():
            raise BenchError("valgrind not found on PATH (apt-get install valgrind)")
    else:
        benchkit.preflight(args)
    # Full: 6 cases x 6 servers x (1 s warm-up + 3 x 5 s + settling) ~ 10 min of wrk, ~11.5 min in all.
    timing = benchkit.load_timings(args)
    pinning = procs.plan_pinning(args.pin, args.workers)
    log(f"CPU pinning: {pinning.description}")
    out_dir = args.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    envs, pythons = prepare_envs(args, out_dir)
    before_rev, before_why = (args.before, "--before") if args.before else apps.before_batching(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp_name, procs.Registry() as registry:
        tmp = Path(tmp_name)
        log(f"training the model and writing the apps under {tmp}")
        fixture_app = benchkit.run_json([str(args.python), str(FIXTURE), "prepare", "--root", str(tmp)], "the fixture")
        app = apps.write_apps(fixture_app, tmp)
        app_json = tmp / "batch-app.json"
        app_json.write_text(json.dumps(app))
        runtimes = {
            "now": (apps.snapshot_worktree(REPO_ROOT, tmp / "runtime-now"), apps.describe_worktree(REPO_ROOT)),
            "before": (benchkit.export_package(REPO_ROOT, before_rev, tmp / "runtime-before"), before_rev[:7]),
        }
        specs = [] if args.instructions_only else servers_to_run(args, app, pythons, runtimes, tmp, out_dir, pinning)
        cases = [c for c in CASES if not args.conns or (c.rows == 1 and c.conns in args.conns)]
        wrk_log = out_dir / WRK_LOG
        result = BatchResult(
            settings={
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "quick": args.quick,
                "workers": args.workers,
                "pinning": pinning.description,
                "worktree": runtimes["now"][1],
                "before": before_rev[:10],
                "before_why": before_why,
                "partial": bool(args.conns or args.servers),
                **timing,
            },
            machine={**benchkit.wrk_machine(envs), "train_accuracy": round(fixture_app["train_accuracy"], 4)},
            servers=specs,
            cases=cases,
        )
        if args.instructions_only:
            count_instructions(args, result, pythons["mlmagics"], runtimes, app)
            result.total_s = time.monotonic() - started
            return result
        inproc = inprocess(pythons["mlmagics"], app_json, timing["inprocess_s"], pinning)
        expected = {"1": inproc["1"]["answer"], "100": inproc["100"]["answer"], "singles": inproc["singles"]}
        running = {}
        for server in specs:  # start all, then wait: the starts overlap
            running[server.key] = registry.spawn(
                server.key, server.command, cwd=server.cwd, env=server.env, log_path=server.log_path
            )
        one_row = Path(app["bodies"]["1"]).read_bytes()
        for server in specs:
            ready_s = wait_ready(running[server.key], server, one_row, expected["1"])
            log(f"{server.key} ready after {ready_s:.1f} s (starts overlapping)")
            result.checks.append(check(server, app, expected))
        luas = {
            (s.key, rows): load.write_lua(tmp / f"post-{s.key}-{rows}.lua", Path(app["bodies"][str(rows)]), s.headers)
            for s in specs
            for rows in {c.rows for c in cases}
        }
        run_matrix(result, running, luas, timing, pinning, wrk_log)
        for server in specs:
            registry.stop(running[server.key])
        again = inprocess(pythons["mlmagics"], app_json, timing["inprocess_s"], pinning)
        for rows in map(str, apps.BODY_ROWS):  # a limit is the best achievable: the better of the two runs
            best = max(inproc[rows], again[rows], key=lambda figures: figures["calls_per_s"])
            result.inprocess[rows] = {"calls_per_s": best["calls_per_s"], "rows_per_s": best["rows_per_s"]}
        count_instructions(args, result, pythons["mlmagics"], runtimes, app)
    result.machine["load_before"], result.machine["load_after"] = load_before, os.getloadavg()[0]
    result.total_s = time.monotonic() - started
    return result


def count_instructions(
    args: argparse.Namespace, result: BatchResult, python: Path, runtimes: dict[str, tuple[Path, str]], app: dict[str, Any]
) -> None:
    """Instructions per request of the mlmagics runtimes (batchbench/costs.py), unless skipped or valgrind is missing."""
    if not args.instructions:
        result.instructions_note = "not counted (--no-instructions)"
        return
    if not instructions.available():
        result.instructions_note = "not counted: valgrind is not installed (apt-get install valgrind)"
        return
    keys = [key for key in batch_servers.MLMAGICS if not args.servers or key in args.servers]
    cases = [case for case, _, _ in (costs.QUICK_CASES if args.quick else costs.CASES) if case in result.cases]
    if not keys or not cases:
        result.instructions_note = "not counted: no mlmagics server or counted case among those chosen (--servers, --conns)"
        return
    roots = {name: root for name, (root, _) in runtimes.items()}
    result.instructions, result.instructions_failed = costs.count_all(python, roots, app, keys, cases, log)


def draw(args: argparse.Namespace, result: BatchResult) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as data:
        json.dump(batch_report.plot_data(result), data)
    try:
        done = subprocess.run(
            [str(args.python), str(PLOT), data.name, str(args.plot)],
            capture_output=True,
            text=True,
            env=benchkit.clean_env(),
            timeout=120,
            check=False,
        )
    finally:
        os.unlink(data.name)
    if done.returncode != 0:
        log(f"plot failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    else:
        log(f"plot written to {args.plot}")


def main(argv: list[str] | None = None) -> int:
    """Run, print the report and write it to --out, then draw the plot; one-line errors, never stray servers."""
    args = parse_args(argv)
    with benchkit.ends_in_one_line("batching_bench", "every server it started has been stopped", probe.FAILURES):
        result = run(args)
    if args.instructions_only:
        benchkit.publish(batch_report.render_counts(result), args.out, log)
        return 0
    benchkit.publish(batch_report.render(result, args.plot.name), args.out, log)
    draw(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
