"""Benchmark adaptive batching side by side: mlmagics with and without it, the reference, BentoML.

Six servers, 2 workers each, on one model (servebench's LogisticRegression on load_digits)
and the same request bodies: azureml-inference-server-http; mlmagics as it was before
batching; mlmagics with batching off; mlmagics with ``max_batch_size`` 64 and
``max_batch_latency_ms`` 10; BentoML with ``@bentoml.api(batchable=True)`` at
``max_latency_ms`` 1000 and at 10. wrk loads them with 1 row per request at 1, 8, 16, 32
and 64 connections and with 100 rows at 8, the servers taking turns run by run; a Lua
counter keeps 2xx answers apart from the rest. Also measured: the in-process per-call
``run()`` loop of one process. Each server runs in a venv of its own
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
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchbench import apps, load
from batchbench import report as batch_report
from batchbench import servers as batch_servers
from batchbench.report import BatchResult
from batchbench.servers import Server
from servebench import probe, procs, servers
from servebench.report import Case

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
FIXTURE = BENCH_DIR / "servebench" / "fixture.py"
INPROC = BENCH_DIR / "batchbench" / "inproc.py"
PLOT = BENCH_DIR / "batchbench" / "plot.py"
CONNECTIONS = (1, 8, 16, 32, 64)
CASES = [Case("sklearn", 1, c) for c in CONNECTIONS] + [Case("sklearn", 100, 8)]
SERVER_KEYS = ("reference", "mlmagics-before", "mlmagics-off", "mlmagics-batch", "bentoml-1000", "bentoml-10")


class BenchError(RuntimeError):
    """A precondition failed; the message is one line telling what to do."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[batching_bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per case and server (default: 3 runs of 5 s)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "batching.md", help="Markdown report")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server (default 2)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (overrides --quick/default)")
    parser.add_argument("--repeat", type=int, help="measured runs per case and server (default 3, --quick 1)")
    parser.add_argument("--conns", type=int, nargs="+", help="only these 1-row connection counts (default: all, and 100 rows)")
    parser.add_argument("--servers", nargs="+", choices=SERVER_KEYS, help="only these servers (default: all six)")
    parser.add_argument("--before", help="revision of the runtime before batching (default: found with git log)")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin wrk (taskset -c 0) and the servers (taskset -c 1)"
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=REPO_ROOT / ".venv" / "bin" / "python",
        help="the project venv's python (trains the model, draws the plot)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or (args.repeat is not None and args.repeat < 1):
        parser.error("--workers and --repeat must be at least 1")
    args.plot = args.plot or args.out.with_suffix(".png")
    return args


def timings(args: argparse.Namespace) -> dict[str, Any]:
    # Full: 6 cases x 6 servers x (1 s warm-up + 3 x 5 s + settling) ~ 10 min of wrk, ~11.5 min in all.
    return {
        "seconds": args.duration or (2 if args.quick else 5),
        "warmup": 1,
        "repeat": args.repeat or (1 if args.quick else 3),
        "inprocess_s": 1.0 if args.quick else 3.0,
    }


def preflight(args: argparse.Namespace) -> None:
    if not shutil.which("wrk"):
        raise BenchError("wrk not found on PATH (apt-get install wrk)")
    if not args.python.exists():
        raise BenchError(f"project python {args.python} not found (create the venv or pass --python)")
    if args.pin and not shutil.which("taskset"):
        raise BenchError("taskset not found on PATH (apt-get install util-linux) or pass --no-pin")


def prepare_envs(args: argparse.Namespace, out_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The three servers' venvs (created once) and the package versions in each."""
    project = servers.versions(args.python, servers.PROJECT_PACKAGES)
    base = project["base"]
    pythons = {
        "reference": servers.ensure_venv(
            BENCH_DIR / ".venv-reference",
            servers.reference_requirements(project),
            base,
            out_dir / "batching-reference-pip.log",
            "the reference server",
        ),
        "mlmagics": servers.ensure_venv(
            BENCH_DIR / ".venv-mlmagics",
            servers.runtime_requirements(project, REPO_ROOT / "mlmagics" / "serving" / "requirements.txt"),
            base,
            out_dir / "batching-mlmagics-pip.log",
            "the mlmagics runtime's requirements",
        ),
        "bentoml": servers.ensure_venv(
            BENCH_DIR / ".venv-bentoml",
            batch_servers.bentoml_requirements(project),
            base,
            out_dir / "batching-bentoml-pip.log",
            "BentoML",
        ),
    }
    missing = servers.mlmagics_missing(pythons["mlmagics"], REPO_ROOT)
    if missing:
        raise BenchError(f"mlmagics server unavailable: {missing}")
    envs = {
        "project venv (trains the model)": project,
        "reference venv": servers.versions(pythons["reference"], servers.REFERENCE_PACKAGES),
        "mlmagics venv (the runtime comes from the checkout)": servers.versions(pythons["mlmagics"], servers.RUNTIME_PACKAGES),
        "BentoML venv": servers.versions(pythons["bentoml"], batch_servers.BENTOML_PACKAGES),
    }
    return envs, pythons


def run_json(cmd: list[str], what: str, timeout: float = 300) -> Any:
    done = subprocess.run(cmd, capture_output=True, text=True, env=servers.clean_env(), timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"{what} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout)


def inprocess(python: Path, app_json: Path, seconds: float, pinning: procs.Pinning) -> dict[str, Any]:
    log("measuring the in-process run() loop")
    cmd = [*pinning.server, str(python), str(INPROC), "--app", str(app_json), "--seconds", str(seconds)]
    return run_json(cmd, "the in-process loop")


def wait_ready(registry_entry: procs.Spawned, server: Server, body: bytes, expected: Any, timeout: float = 120) -> float:
    """Poll the ready path for 200, then POST until the expected answer; seconds since spawn."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = registry_entry.exited()
        if code is not None:
            raise probe.ServerFailed(
                f"{server.key} exited with code {code}; log {server.log_path}:\n{procs.log_tail(server.log_path)}"
            )
        try:
            status, _ = probe.request(server.port, "GET", server.ready_path, headers=server.headers)
            if status == 200 and post(server, body) == expected:
                return time.monotonic() - registry_entry.started
            last = f"GET {server.ready_path} {status}"
        except (OSError, probe.ServerFailed, ValueError) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.05)
    raise probe.ServerFailed(
        f"{server.key} not ready within {timeout:.0f} s ({last}); log {server.log_path}:\n{procs.log_tail(server.log_path)}"
    )


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
                with wrk_log.open("a") as out:
                    out.write(
                        f"\n### {server.key}, {case.name}, run {attempt + 1} (other {run.other_cpu:.2f} CPU, "
                        f"steal {run.steal_cpu:.2f} CPU)\n{run.result.raw}"
                    )
                extra = f", non-2xx {run.non_2xx}" if run.non_2xx else ""
                if run.batch:
                    extra += f", {run.batch['rows_per_call']:.1f} rows/batched call"
                log(
                    f"{server.key:15} {case.name:>18} run {attempt + 1}: {run.good_rps:7.0f} good req/s, "
                    f"p50 {run.result.p50_ms:.2f} ms, p99 {run.result.p99_ms:.2f} ms{extra}; "
                    f"server {run.server_cpu:.2f} CPU, other {run.other_cpu:.2f} CPU"
                )


def machine_info(envs: dict[str, Any]) -> dict[str, Any]:
    cpu_model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version[1] if len(wrk_version) > 1 else "?",
        "envs": envs,
    }


def run(args: argparse.Namespace) -> BatchResult:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    preflight(args)
    timing = timings(args)
    pinning = procs.plan_pinning(args.pin, args.workers)
    log(f"CPU pinning: {pinning.description}")
    out_dir = args.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    envs, pythons = prepare_envs(args, out_dir)
    before_rev, before_why = (args.before, "--before") if args.before else apps.before_batching(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp_name, procs.Registry() as registry:
        tmp = Path(tmp_name)
        log(f"training the model and writing the apps under {tmp}")
        fixture_app = run_json([str(args.python), str(FIXTURE), "prepare", "--root", str(tmp)], "the fixture")
        app = apps.write_apps(fixture_app, tmp)
        app_json = tmp / "batch-app.json"
        app_json.write_text(json.dumps(app))
        inproc = inprocess(pythons["mlmagics"], app_json, timing["inprocess_s"], pinning)
        runtimes = {
            "now": (apps.snapshot_worktree(REPO_ROOT, tmp / "runtime-now"), apps.describe_worktree(REPO_ROOT)),
            "before": (apps.snapshot_revision(REPO_ROOT, before_rev, tmp / "runtime-before"), before_rev[:7]),
        }
        key = secrets.token_urlsafe(24)
        configs = {
            "off": batch_servers.write_mlmagics_config(tmp / "service-off.json", key, batching=False),
            "on": batch_servers.write_mlmagics_config(tmp / "service-batch.json", key, batching=True),
        }
        specs = batch_servers.build(app, pythons, runtimes, configs, key, args.workers, out_dir, pinning)
        specs = [s for s in specs if not args.servers or s.key in args.servers]
        cases = [c for c in CASES if not args.conns or (c.rows == 1 and c.conns in args.conns)]
        wrk_log = out_dir / "batching-wrk.log"
        for path in {s.log_path for s in specs} | {wrk_log}:
            path.write_text("")
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
            machine={**machine_info(envs), "train_accuracy": round(fixture_app["train_accuracy"], 4)},
            servers=specs,
            cases=cases,
        )
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
        for rows in ("1", "64", "100"):
            best = inproc[rows] if inproc[rows]["calls_per_s"] >= again[rows]["calls_per_s"] else again[rows]
            result.inprocess[rows] = {"calls_per_s": best["calls_per_s"], "rows_per_s": best["rows_per_s"]}
    result.machine["load_before"], result.machine["load_after"] = load_before, os.getloadavg()[0]
    result.total_s = time.monotonic() - started
    return result


def draw(args: argparse.Namespace, result: BatchResult) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as data:
        json.dump(batch_report.plot_data(result), data)
    try:
        done = subprocess.run(
            [str(args.python), str(PLOT), data.name, str(args.plot)],
            capture_output=True,
            text=True,
            env=servers.clean_env(),
            timeout=120,
            check=False,
        )
    finally:
        os.unlink(data.name)
    if done.returncode != 0:
        log(f"plot failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    else:
        log(f"plot written to {args.plot}")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        result = run(args)
    except BenchError as err:
        print(f"batching_bench: {err}", file=sys.stderr)
        return 2
    except probe.ServerFailed as err:
        print(f"batching_bench: server failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("batching_bench: interrupted; every server it started has been stopped", file=sys.stderr)
        return 130
    markdown = batch_report.render(result, args.plot.name)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown + "\n")
    log(f"report written to {args.out}")
    draw(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
