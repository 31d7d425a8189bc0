"""Benchmark mlmagics's scoring server against azureml-inference-server-http, side by side.

Both servers serve the same v1 ``score.py`` (a LogisticRegression on load_digits);
wrk loads them with 1- and 100-row bodies at 1, 8 and 64 connections, each case
repeated with the servers alternating run by run, and the report shows the
medians. A trivial echo script (``run`` returns its input) served the same way
at 8 and 64 connections isolates each server's own overhead. Also measured:
cold start for both scripts, idle memory of the process tree, and the
in-process ``run()`` limit. wrk and the servers are pinned to different CPUs
when there are two or more. Each server runs in a venv of its own holding its own
requirements and the same model stack (``benchmarks/.venv-reference``,
``benchmarks/.venv-mlmagics``, created on first use), as its image would.
The Markdown report goes to stdout and --out.

Example::

    python benchmarks/serving_bench.py --quick
    python benchmarks/serving_bench.py --repeat 5 --no-pin
    python benchmarks/serving_bench.py --workers 2 --out benchmarks/results/serving-2w.md
    python benchmarks/serving_bench.py --only reference
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchkit
from benchkit import BENCH_DIR, REPO_ROOT, BenchError
from servebench import probe, procs, report, servers, wrk
from servebench.report import BenchResult, Case, ServerRun

FIXTURE = BENCH_DIR / "servebench" / "fixture.py"
ROW_COUNTS = (1, 100)
CONNECTIONS = (1, 8, 64)
ECHO_CONNECTIONS = (8, 64)
SKLEARN_CASES = [Case("sklearn", rows, conns) for rows in ROW_COUNTS for conns in CONNECTIONS]
ECHO_CASES = [Case("trivial", 1, conns) for conns in ECHO_CONNECTIONS]


log = benchkit.logger("serving_bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick shortens every timed step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 run of 2 s per case, 1 cold start per script (default: 3 runs of 5 s, 3 cold starts)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "results" / "serving.md",
        help="Markdown report",
    )
    parser.add_argument(
        "--only",
        choices=["both", *report.SERVERS],
        default="both",
        help="servers to run",
    )
    benchkit.add_load_options(parser, workers=1)
    parser.add_argument(
        "--python",
        type=Path,
        default=benchkit.PROJECT_PYTHON,
        help="the project venv's python (trains the model; each server runs in a venv of its own)",
    )
    args = parser.parse_args(argv)
    benchkit.check_load_options(parser, args)
    return args


def timings(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per measured run, warm-up, repeats, cold-start spawns and in-process loop length."""
    # Full: 8 cases x 2 servers x (1 s warm-up + 3 x 5 s) ~ 4.5 min of wrk, ~5.5 min in all.
    return {**benchkit.load_timings(args), "cold_starts": 1 if args.quick else 3}


def run_fixture(python: Path, *args: str, prefix: list[str] | None = None) -> dict[str, Any]:
    """Run ``servebench/fixture.py`` with ``python`` (under ``prefix``, e.g. taskset) and return its JSON."""
    return benchkit.run_json([*(prefix or []), str(python), str(FIXTURE), *args], f"fixture {args[0]}")


def measure_inprocess(python: Path, tmp: Path, seconds: float, pinning: procs.Pinning) -> dict[str, Any]:
    """The in-process run() limit and answers per payload (fixture ``inprocess``), on the servers' CPU."""
    log("measuring the in-process run() limit")
    return run_fixture(python, "inprocess", "--root", str(tmp), "--seconds", str(seconds), prefix=pinning.server)


@dataclass
class ScriptApp:
    """One scoring script as served: its server specs, request bodies and the decoded answers to expect."""

    name: str
    specs: list[servers.ServerSpec]
    bodies: dict[int, Path]
    expected: dict[int, Any]


@dataclass
class Bench:
    """What every step of one run needs: the server registry, timings, CPU pinning and the result being filled."""

    registry: procs.Registry
    timing: dict[str, Any]
    pinning: procs.Pinning
    result: BenchResult


def mlmagics_auth(tmp: Path) -> tuple[Path, str]:
    """Write the mlmagics service.json (key auth on) once for both scripts; return it and the primary key."""
    key = secrets.token_urlsafe(24)
    return servers.write_service_config(tmp / "service.json", key, secrets.token_urlsafe(24)), key


def build_specs(
    wanted: list[str],
    script: str,
    app: dict[str, Any],
    pythons: dict[str, Path],
    args: argparse.Namespace,
    auth: tuple[Path, str] | None,
    out_dir: Path,
    pinning: procs.Pinning,
) -> list[servers.ServerSpec]:
    """The server specs for one script's app root, each on its own free port, logging into ``out_dir``."""
    specs = []
    if "reference" in wanted:
        specs.append(
            servers.reference_spec(
                pythons["reference"],
                app,
                procs.free_port(),
                args.workers,
                out_dir / "serving-reference.log",
            )
        )
    if "mlmagics" in wanted and auth:
        specs.append(
            servers.mlmagics_spec(
                pythons["mlmagics"],
                REPO_ROOT,
                app,
                port=procs.free_port(),
                workers=args.workers,
                config=auth[0],
                key=auth[1],
                log_path=out_dir / "serving-mlmagics.log",
            )
        )
    # taskset execs the server, so the pid (and process group) stays the server's own.
    return [dataclasses.replace(spec, script=script, command=[*pinning.server, *spec.command]) for spec in specs]


def start(registry: procs.Registry, spec: servers.ServerSpec) -> procs.Spawned:
    """Spawn the server described by ``spec``; the registry stops it on the way out."""
    return registry.spawn(spec.label, spec.command, cwd=spec.cwd, env=spec.env, log_path=spec.log_path)


def measure_cold_starts(bench: Bench, script: ScriptApp) -> None:
    """Spawn each server alone, servers alternating; time spawn → GET / 200 → correct POST /score (1 row)."""
    count = bench.timing["cold_starts"]
    body = script.bodies[1].read_bytes()
    for attempt in range(count):
        for spec in script.specs:
            spawned = start(bench.registry, spec)
            try:
                cold = probe.wait_ready(spawned, spec.port, body, script.expected[1], spec.headers)
            finally:
                bench.registry.stop(spawned)
            bench.result.servers[spec.name].cold_starts.setdefault(script.name, []).append(cold)
            log(f"{spec.label} cold start {attempt + 1}/{count}: GET / {cold.get_s:.2f} s, POST /score {cold.score_s:.2f} s")


def check_answers(spec: servers.ServerSpec, script: ScriptApp) -> None:
    """Every payload must give exactly the in-process answer (so both servers agree)."""
    for rows, body in script.bodies.items():
        answer = probe.score(spec.port, body.read_bytes(), spec.headers)
        if answer != script.expected[rows]:
            raise probe.ServerFailed(
                f"{spec.label} answered {str(answer)[:80]} for {rows} row(s); expected {str(script.expected[rows])[:80]}"
            )


def check_same_bytes(script: ScriptApp) -> dict[str, bytes]:
    """Every server must send byte-identical responses for the 1-row body; return them by server."""
    body = script.bodies[1].read_bytes()
    wires = {spec.name: probe.score_wire(spec.port, body, spec.headers) for spec in script.specs}
    if len(set(wires.values())) > 1:
        shown = "; ".join(f"{name}: {wire[:60]!r} ({len(wire)} bytes)" for name, wire in wires.items())
        raise probe.ServerFailed(f"the servers answer the {script.name} script differently: {shown}")
    return wires


def start_checked(bench: Bench, script: ScriptApp) -> dict[str, procs.Spawned]:
    """Start every server for the script's load phase and check its answers before any load."""
    running = {}
    body = script.bodies[1].read_bytes()
    for spec in script.specs:
        running[spec.name] = start(bench.registry, spec)
        probe.wait_ready(running[spec.name], spec.port, body, script.expected[1], spec.headers)
        check_answers(spec, script)
    if script.name == "trivial":
        bench.result.echo_wire = check_same_bytes(script)
    return running


def write_luas(script: ScriptApp, lua_dir: Path) -> dict[tuple[str, int], Path]:
    """One wrk script per (server, payload) of ``script``, in ``lua_dir``."""
    return {
        (spec.name, rows): wrk.write_lua(lua_dir / f"post-{script.name}-{spec.name}-{rows}.lua", body, spec.headers)
        for spec in script.specs
        for rows, body in script.bodies.items()
    }


def measured_run(bench: Bench, spec: servers.ServerSpec, lua: Path, case: Case, server_pid: int) -> wrk.WrkResult:
    """One wrk run of ``case``, noting how much CPU other processes and the hypervisor took meanwhile."""
    before, started = procs.cpu_snapshot(server_pid), time.monotonic()
    result = wrk.run(spec.score_url, lua, case.conns, bench.timing["seconds"], prefix=bench.pinning.wrk)
    noise = procs.interference(before, procs.cpu_snapshot(server_pid), time.monotonic() - started)
    result.other_cpu, result.steal_cpu = noise.other, noise.steal
    return result


def run_case(
    bench: Bench,
    spec: servers.ServerSpec,
    lua: Path,
    case: Case,
    attempt: int,
    server_pid: int,
) -> wrk.WrkResult:
    """One measured run of ``case`` (warmed up first on the first attempt); raw output goes to the wrk log."""
    repeat = bench.timing["repeat"]
    if attempt == 0:
        wrk.run(spec.score_url, lua, case.conns, bench.timing["warmup"], prefix=bench.pinning.wrk)
    result = measured_run(bench, spec, lua, case, server_pid)
    with bench.result.wrk_log.open("a") as out:
        out.write(
            f"\n### {spec.name}, {case.name}, run {attempt + 1}/{repeat} "
            f"(other processes {result.other_cpu:.2f} CPU, steal {result.steal_cpu:.2f} CPU)\n{result.raw}"
        )
    flag = f" ⚠ {result.error_text()}" if result.errors else ""
    log(
        f"{spec.name:9} {case.name:>17} run {attempt + 1}/{repeat}: "
        f"{result.requests_per_s:8.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms; other CPU {result.other_cpu:.2f}{flag}"
    )
    return result


def run_matrix(
    bench: Bench,
    script: ScriptApp,
    cases: list[Case],
    luas: dict[tuple[str, int], Path],
    running: dict[str, procs.Spawned],
) -> None:
    """Every case ``repeat`` times, the servers taking turns run by run (ref, mlm, ref, mlm, …)."""
    for case in cases:
        runs = bench.result.cases.setdefault(case, {})
        for attempt in range(bench.timing["repeat"]):
            for spec in script.specs:
                lua = luas[spec.name, case.rows]
                result = run_case(bench, spec, lua, case, attempt, running[spec.name].pid)
                runs.setdefault(spec.name, []).append(result)


def load_phase(bench: Bench, script: ScriptApp, cases: list[Case], lua_dir: Path, *, memory: bool) -> None:
    """Start and check the script's servers, optionally record memory, run its cases, stop the servers."""
    luas = write_luas(script, lua_dir)
    running = start_checked(bench, script)
    servers_run = bench.result.servers
    if memory:
        for spec in script.specs:
            wrk.run(spec.score_url, luas[spec.name, 1], 8, bench.timing["warmup"], prefix=bench.pinning.wrk)
        time.sleep(1.0)  # let the servers settle after the warm-up before reading memory
        for spec in script.specs:
            servers_run[spec.name].idle = procs.tree_memory(running[spec.name].pid)
    run_matrix(bench, script, cases, luas, running)
    for spec in script.specs:
        if memory:
            servers_run[spec.name].after_load = procs.tree_memory(running[spec.name].pid)
        bench.registry.stop(running[spec.name])


def prepare_envs(args: argparse.Namespace, wanted: list[str], out_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The venvs each server runs in (created once), and the package versions of all three.

    Returns the versions per venv and each server's python. Both servers get a venv of their own
    with the same model stack, as their images would; the project venv only trains the model.
    """
    project = servers.versions(args.python, servers.PROJECT_PACKAGES)
    envs = {"project venv (trains the model)": project}
    pythons = {}
    if "reference" in wanted:
        pythons["reference"] = servers.reference_venv(project, out_dir / "serving-reference-pip.log", log)
        envs["reference venv"] = servers.versions(pythons["reference"], servers.REFERENCE_PACKAGES)
    # The in-process loop runs in the mlmagics venv even with --only reference: the script's own speed
    # is measured where no server's packages are loaded.
    pythons["mlmagics"] = servers.runtime_venv(project, out_dir / "serving-mlmagics-pip.log", log)
    envs["mlmagics venv (what an image holds; the runtime from this checkout)"] = servers.versions(
        pythons["mlmagics"], servers.RUNTIME_PACKAGES
    )
    if "mlmagics" in wanted:
        missing = servers.mlmagics_missing(pythons["mlmagics"], REPO_ROOT)
        if missing:
            raise BenchError(f"mlmagics server unavailable: {missing}; run with --only reference")
    return envs, pythons


def script_apps(
    app: dict[str, Any],
    expected: dict[int, Any],
    spec_for: Callable[[str, dict[str, Any]], list[servers.ServerSpec]],
) -> dict[str, ScriptApp]:
    """The sklearn app (both payloads) and the trivial echo app (1-row body, answer = the body)."""
    bodies = {rows: Path(app["bodies"][str(rows)]) for rows in ROW_COUNTS}
    sklearn_app = {key: app[key] for key in ("app_root", "score_py", "model_dir", "shim_dir")}
    trivial_app = {**app["trivial"], "shim_dir": app["shim_dir"]}
    return {
        "sklearn": ScriptApp("sklearn", spec_for("sklearn", sklearn_app), bodies, expected),
        "trivial": ScriptApp(
            "trivial",
            spec_for("trivial", trivial_app),
            {1: bodies[1]},
            {1: json.loads(bodies[1].read_bytes())},
        ),
    }


def new_result(
    args: argparse.Namespace,
    timing: dict[str, Any],
    pinning: procs.Pinning,
    envs: dict[str, Any],
    specs: list[servers.ServerSpec],
    inproc: dict[str, Any],
    wanted: list[str],
    out_dir: Path,
) -> BenchResult:
    """An empty result for this run: settings, machine, the (sklearn) server commands, the in-process limit."""
    return BenchResult(
        settings={
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "workers": args.workers,
            "pinned": pinning.server_cpus is not None,
            "pinning": pinning.description,
            **timing,
        },
        machine=benchkit.wrk_machine(envs),
        servers={s.name: ServerRun(command=s.command, notes=s.notes, log_path=s.log_path) for s in specs},
        cases={},
        inprocess={r: inproc[str(r)]["calls_per_s"] for r in ROW_COUNTS},
        answers={rows: inproc[str(rows)]["answer"] for rows in ROW_COUNTS},
        wrk_log=out_dir / "serving-wrk.log",
        skipped={s: f"--only {args.only}" for s in report.SERVERS if s not in wanted},
    )


def run(args: argparse.Namespace) -> str:
    """The whole benchmark; returns the Markdown report."""
    started, load_before = time.monotonic(), os.getloadavg()[0]
    wanted = list(report.SERVERS) if args.only == "both" else [args.only]
    benchkit.preflight(args)
    timing = timings(args)
    pinning = procs.plan_pinning(args.pin, args.workers)
    log(f"CPU pinning: {pinning.description}")
    out_dir = args.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    envs, pythons = prepare_envs(args, wanted, out_dir)
    with (
        tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp_name,
        procs.Registry() as registry,
    ):
        tmp = Path(tmp_name)
        log(f"training the model and writing the app roots under {tmp}")
        app = run_fixture(args.python, "prepare", "--root", str(tmp))
        inproc = measure_inprocess(pythons["mlmagics"], tmp, timing["inprocess_s"], pinning)
        auth = mlmagics_auth(tmp) if "mlmagics" in wanted else None

        def spec_for(script: str, script_app: dict[str, Any]) -> list[servers.ServerSpec]:
            return build_specs(wanted, script, script_app, pythons, args, auth, out_dir, pinning)

        apps = script_apps(app, {rows: inproc[str(rows)]["answer"] for rows in ROW_COUNTS}, spec_for)
        result = new_result(args, timing, pinning, envs, apps["sklearn"].specs, inproc, wanted, out_dir)
        for path in {spec.log_path for spec in apps["sklearn"].specs} | {result.wrk_log}:
            path.write_text("")
        bench = Bench(registry, timing, pinning, result)
        for script in apps.values():
            measure_cold_starts(bench, script)
        load_phase(bench, apps["sklearn"], SKLEARN_CASES, tmp, memory=True)
        load_phase(bench, apps["trivial"], ECHO_CASES, tmp, memory=False)
        # A limit is the best achievable: keep the better of the runs before and after.
        again = measure_inprocess(pythons["mlmagics"], tmp, timing["inprocess_s"], pinning)
        for rows in ROW_COUNTS:
            result.inprocess[rows] = max(result.inprocess[rows], again[str(rows)]["calls_per_s"])
    result.machine["load_before"] = load_before
    result.machine["load_after"] = os.getloadavg()[0]
    result.total_s = time.monotonic() - started
    return report.render(result)


def main(argv: list[str] | None = None) -> int:
    """Run, print the report and write it to --out; one-line errors, never stray servers."""
    args = parse_args(argv)
    with benchkit.ends_in_one_line("serving_bench", "every server it started has been stopped", probe.FAILURES):
        markdown = run(args)
    benchkit.publish(markdown, args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
