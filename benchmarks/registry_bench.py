"""Benchmark mlmagics's model registry against MLflow's, side by side, on one PostgreSQL and one S3 endpoint.

Each tool gets a fresh database on the same PostgreSQL server and a fresh bucket on the same
S3 endpoint, and runs in a venv of its own (mlmagics in the project venv, MLflow in
``benchmarks/.venvs/mlflow``, created on first use), driven by a worker script per tool
(``registry/mlmagics_side.py``, ``registry/mlflow_side.py``) that prints its results as JSON.
Measured, for both: registering a 1 KB model, registering a 200 MB model (and the peak RSS of the
registering process), listing 10,000 versions of one name, fetching the latest version of that
name, and 8 processes × 50 concurrent registrations of one name (lost or repeated versions);
for mlmagics alone, registering a 2 GB model within 150 MB of RSS.
The Markdown report goes to stdout and --out; progress goes to stderr.

Example::

    python benchmarks/registry_bench.py --quick
    python benchmarks/registry_bench.py
    python benchmarks/registry_bench.py --versions 2000 --huge-mb 0 --keep
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import benchkit
from benchkit import BENCH_DIR, REPO_ROOT, BenchError
from registry import report

SIDES_DIR = BENCH_DIR / "registry"
MLFLOW_VENV = BENCH_DIR / ".venvs" / "mlflow"
MLFLOW_REQUIREMENTS = ["mlflow==3.17.2", "psycopg[binary]>=3.1", "boto3", "psutil"]
SIDES = tuple(report.LABELS)
NAMES = {  # one registered name per figure, in both registries
    "small": "bench-1kb",
    "large": "bench-large",
    "many": "bench-10k",
    "concurrent": "bench-concurrent",
    "huge": "bench-huge",
}
# The sizes and counts: option → (default, with --quick); an option given overrides both.
SIZES = {
    "small_n": (20, 5), "large_mb": (200, 20), "large_n": (3, 1), "versions": (10_000, 300),
    "populate_procs": (4, 2), "lookup_n": (20, 5), "list_n": (3, 1), "procs": (8, 4), "per_proc": (50, 10),
    "huge_mb": (2048, 256),
}  # fmt: skip

log = benchkit.logger("registry_bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick shrinks every size, explicit flags override it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes and counts (about 1 minute)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "registry.md", help="Markdown report")
    parser.add_argument("--small-n", type=int, help="1 KB registrations to take the median of (20; --quick 5)")
    parser.add_argument("--large-mb", type=int, help="size of the large model in MiB (200; --quick 20)")
    parser.add_argument("--large-n", type=int, help="large registrations, each in a fresh process (3; --quick 1)")
    parser.add_argument("--versions", type=int, help="versions of one name to list and look up in (10,000; --quick 300)")
    parser.add_argument("--populate-procs", type=int, help="processes that populate those versions in parallel (4)")
    parser.add_argument("--lookup-n", type=int, help="latest-version lookups and downloads to take the median of (20; --quick 5)")
    parser.add_argument("--list-n", type=int, help="listings of all versions to take the median of (3; --quick 1)")
    parser.add_argument("--procs", type=int, help="concurrent registering processes (8; --quick 4)")
    parser.add_argument("--per-proc", type=int, help="registrations per concurrent process (50; --quick 10)")
    parser.add_argument(
        "--huge-mb", type=int, help="mlmagics only: the huge model in MiB, a sparse file (2048; --quick 256; 0 skips)"
    )
    parser.add_argument(
        "--rss-limit-mb", type=int, default=150, help="the huge registration's peak RSS must stay below this (150)"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("REGISTRY_BENCH_POSTGRES", "postgresql://mlmagics@127.0.0.1:55432"),
        help="the PostgreSQL server and a role with CREATEDB (password from PGPASSWORD, else mlmagics-test)",
    )
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5005"),
        help="the S3 endpoint (default $AWS_ENDPOINT_URL, else the test services' moto_server)",
    )
    parser.add_argument(
        "--mlmagics-store",
        choices=["auto", "uri", "folder"],
        default="auto",
        help="mlmagics on PostgreSQL+S3 (uri), on a folder (SQLite + local files), or uri when this checkout has it (auto)",
    )
    parser.add_argument(
        "--mlmagics-commit",
        help="run mlmagics as committed at this revision (git archive into the run's temp dir), not the work tree",
    )
    parser.add_argument("--only", choices=["both", *SIDES], default="both", help="registries to run")
    parser.add_argument("--keep", action="store_true", help="keep the databases and buckets (default: dropped at the end)")
    parser.add_argument("--python", type=Path, default=benchkit.PROJECT_PYTHON, help="the project venv's python")
    args = parser.parse_args(argv)
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
        least = 0 if key == "huge_mb" else 1
        if getattr(args, key) < least:
            parser.error(f"--{key.replace('_', '-')} must be at least {least}")
    return args


# -- services and venvs ----------------------------------------------------------------------------------
@dataclass
class Services:
    """Where PostgreSQL and S3 are, as the workers' config and environment carry them."""

    pg: dict[str, Any]
    password: str
    s3_endpoint: str
    home: Path = Path("/nonexistent")  # set to the run's temp dir before any worker starts
    mlmagics_src: Path = REPO_ROOT  # where the mlmagics workers import mlmagics from

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Services:
        url = urlsplit(args.postgres)
        pg = {"host": url.hostname or "127.0.0.1", "port": url.port or 5432, "user": url.username or "mlmagics"}
        return cls(pg, url.password or os.environ.get("PGPASSWORD", "mlmagics-test"), args.s3_endpoint.rstrip("/"))

    def check(self) -> None:
        """Both must answer on TCP; otherwise one line saying how to start them."""
        s3 = urlsplit(self.s3_endpoint)
        for what, host, port in (
            ("PostgreSQL", self.pg["host"], self.pg["port"]),
            ("the S3 endpoint", s3.hostname or "127.0.0.1", s3.port or 80),
        ):
            try:
                socket.create_connection((host, port), timeout=3).close()
            except OSError as err:
                raise BenchError(
                    f"{what} is not answering on {host}:{port} ({err.strerror or err}); start the test services "
                    "(bash .ci/services.sh) or pass --postgres / --s3-endpoint"
                ) from None

    def env(self, side: str) -> dict[str, str]:
        """The worker's environment: credentials and endpoints as each tool reads them, nothing of this shell's AWS set-up."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "PG", "VIRTUAL_ENV", "PYTHON"))}
        env.update(
            PGPASSWORD=self.password,
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            AWS_ENDPOINT_URL=self.s3_endpoint,  # boto3 ≥ 1.28 and mlmagics read this
            PYTHONUNBUFFERED="1",
        )
        if side == "mlflow":
            env.update(MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        else:
            env["PYTHONPATH"] = str(self.mlmagics_src)
            env["MLMAGICS_HOME"] = str(self.home)  # this machine's workspace folders (artifact caches): the run's own
        return env


# -- workers ---------------------------------------------------------------------------------------------
@dataclass
class Worker:
    """One running side worker: its process and what its stderr reader collected."""

    side: str
    operation: str
    process: subprocess.Popen
    reader: threading.Thread = field(init=False)
    stdout_reader: threading.Thread = field(init=False)
    stdout: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


def _collect(stream: IO[str] | None, into: list[str]) -> None:
    """Read a worker's stdout (its RESULT line) while it runs, so no pipe fills up."""
    assert stream is not None
    into.extend(line.rstrip("\n") for line in stream)


@dataclass
class Run:
    """What every step needs: the side's pythons, configs and environments, the worker log, the temp dir."""

    pythons: dict[str, Path]
    configs: dict[str, dict[str, Any]]
    services: Services
    worker_log: IO[str]
    tmp: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, side: str, operation: str, *options: str) -> Worker:
        """Spawn ``<side>_side.py <operation>``; its progress lines are shown live and every line goes to the log."""
        command = [
            str(self.pythons[side]),
            str(SIDES_DIR / f"{side}_side.py"),
            operation,
            "--config",
            json.dumps(self.configs[side]),
            *options,
        ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.services.env(side),
            cwd=self.tmp,
            start_new_session=True,  # stopped by process group on the way out
        )
        worker = Worker(side, operation, process)
        worker.reader = threading.Thread(target=self._read, args=(worker,), daemon=True)
        worker.stdout_reader = threading.Thread(target=_collect, args=(process.stdout, worker.stdout), daemon=True)
        worker.reader.start()
        worker.stdout_reader.start()
        RUNNING.add(process)
        return worker

    def _read(self, worker: Worker) -> None:
        """Every stderr line into the worker log; the worker's own progress lines (``[<side>] …``) shown too."""
        assert worker.process.stderr is not None
        for line in worker.process.stderr:
            line = line.rstrip("\n")
            with self.lock:
                self.worker_log.write(f"{worker.side} {worker.operation} {worker.process.pid}: {line}\n")
                self.worker_log.flush()
                if line.startswith(f"[{worker.side}]"):
                    print(f"  {line}", file=sys.stderr, flush=True)
            worker.tail = [*worker.tail[-30:], line]

    def finish(self, worker: Worker, timeout: float) -> dict[str, Any]:
        """Wait for the worker and return its RESULT; a failure or a timeout is a BenchError with its last line."""
        try:
            worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(worker.process)
            raise BenchError(f"{worker.side} {worker.operation} took more than {timeout:.0f} s; stopped") from None
        worker.reader.join(timeout=10)
        worker.stdout_reader.join(timeout=10)
        RUNNING.discard(worker.process)
        results = [line[len("RESULT ") :] for line in worker.stdout if line.startswith("RESULT ")]
        if worker.process.returncode != 0 or not results:
            failed = [line for line in worker.tail if "FAILED" in line] or worker.tail[-1:] or ["no output"]
            raise BenchError(f"{worker.side} {worker.operation} failed: {failed[-1]} (full output: {self.worker_log.name})")
        return json.loads(results[-1])

    def call(self, side: str, operation: str, *options: str, timeout: float = 900) -> dict[str, Any]:
        return self.finish(self.start(side, operation, *options), timeout)


RUNNING: set[subprocess.Popen] = set()


def stop(process: subprocess.Popen) -> None:
    """Stop a worker's process group (TERM, then KILL)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    RUNNING.discard(process)


# -- the figures -----------------------------------------------------------------------------------------
def fig_small(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    log(f"1. register a 1 KB model, median of {args.small_n} (after a warm-up registration)")
    return {side: run.call(side, "small", "--name", NAMES["small"], "--n", str(args.small_n), "--size", "1024") for side in sides}


def fig_large(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    log(f"2. register a {args.large_mb} MiB model (random bytes), {args.large_n}× each, a fresh process per registration")
    results: dict[str, Any] = {side: [] for side in sides}
    for attempt in range(args.large_n):
        for side in sides:  # alternating, so both see the same machine
            results[side].append(run.call(side, "large", "--name", NAMES["large"], "--size", str(args.large_mb << 20)))
            log(f"   {side} {attempt + 1}/{args.large_n}: {results[side][-1]['seconds']:.2f} s")
    return results


def _errors(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The failed calls of all the workers of one figure, and the first three of their messages."""
    return {"errors": sum(p["errors"] for p in parts), "error_samples": [s for p in parts for s in p["error_samples"]][:3]}


def fig_populate(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    procs = args.populate_procs
    log(f"3. populate {args.versions:,} versions of {NAMES['many']} with {procs} processes in parallel")
    results = {}
    for side in sides:
        shares = [args.versions // procs + (1 if i < args.versions % procs else 0) for i in range(procs)]
        started = time.perf_counter()
        workers = [
            run.start(side, "populate", "--name", NAMES["many"], "--n", str(n), "--worker", str(i))
            for i, n in enumerate(shares) if n
        ]  # fmt: skip
        parts = [run.finish(worker, timeout=1800) for worker in workers]
        wall = time.perf_counter() - started
        results[side] = {
            "seconds": wall,
            "procs": len(workers),
            "ok": sum(p["ok"] for p in parts),
            **_errors(parts),
            # all workers together, fifth by fifth of each one's share
            "rates": [sum(rates) for rates in zip(*(p["rates"] for p in parts), strict=False)],
        }
        log(f"   {side}: {results[side]['ok']:,} versions in {wall:.1f} s ({results[side]['ok'] / wall:.0f}/s), "
            f"{results[side]['errors']} failed attempts")  # fmt: skip
    return results


def fig_list(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    log(f"3. list all {args.versions:,} versions of {NAMES['many']}, median of {args.list_n}")
    return {side: run.call(side, "list", "--name", NAMES["many"], "--n", str(args.list_n)) for side in sides}


def fig_latest(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    log(
        f"4. the latest version of {NAMES['many']} ({args.versions:,} present), median of {args.lookup_n}; then latest + download"
    )
    return {side: run.call(side, "latest", "--name", NAMES["many"], "--n", str(args.lookup_n)) for side in sides}


def fig_concurrent(run: Run, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    total = args.procs * args.per_proc
    log(f"5. {args.procs} processes × {args.per_proc} registrations of {NAMES['concurrent']} at once ({total} in all)")
    results = {}
    for side in sides:
        barrier = Path(tempfile.mkdtemp(prefix=f"barrier-{side}-", dir=run.tmp))
        workers = [
            run.start(side, "concurrent", "--name", NAMES["concurrent"], "--n", str(args.per_proc),
                      "--worker", str(i), "--barrier", str(barrier))
            for i in range(args.procs)
        ]  # fmt: skip
        deadline = time.monotonic() + 300
        while len(list(barrier.glob("ready-*"))) < args.procs:
            if any(w.process.poll() is not None for w in workers) or time.monotonic() > deadline:
                for worker in workers:
                    stop(worker.process)
                raise BenchError(f"{side}: a concurrent worker failed or was not ready after 300 s (see the worker log)")
            time.sleep(0.05)
        (barrier / "go").touch()
        parts = [run.finish(worker, timeout=1800) for worker in workers]
        # from the first worker's start to the last one's end, as the workers saw it (not their exits)
        wall = max(p["ended_at"] for p in parts) - min(p["started_at"] for p in parts)
        stored = run.call(side, "versions", "--name", NAMES["concurrent"])["versions"]
        results[side] = report.concurrency_check([p["versions"] for p in parts], stored, total)
        results[side].update(seconds=wall, **_errors(parts))
        c = results[side]
        log(f"   {side}: {c['returned']} versions returned, {c['errors']} calls failed, {c['stored']} stored; "
            f"lost {c['lost']}, repeated {c['repeated']}, missing from 1..{total}: {c['missing']} ({wall:.1f} s)")  # fmt: skip
    return results


def fig_huge(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    log(f"6. mlmagics: register a {args.huge_mb:,} MiB model (a sparse file in {run.tmp}, deleted after)")
    return run.call("mlmagics", "large", "--name", NAMES["huge"], "--size", str(args.huge_mb << 20), "--sparse", timeout=1800)


# -- the run ---------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    memory = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), 0)  # noqa: E741
    return {**benchkit.machine(), "memory_gib": memory / 2**20, "disk_tmp": _filesystem(tempfile.gettempdir())}


def _filesystem(path: str) -> str:
    done = subprocess.run(["df", "-hT", path], capture_output=True, text=True, timeout=30, check=False)
    lines = done.stdout.splitlines()
    return " ".join(lines[1].split()[:3]) if len(lines) > 1 else "?"


def export_commit(revision: str, target: Path) -> tuple[Path, str]:
    """``mlmagics/`` as committed at ``revision``, extracted into ``target`` (for the workers' PYTHONPATH); returns
    the folder and the commit it came from (resolved now: others may commit while the benchmark runs)."""
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
    )  # fmt: skip
    if resolved.returncode != 0:
        raise BenchError(f"--mlmagics-commit {revision}: not a commit of {REPO_ROOT}")
    commit = resolved.stdout.strip()
    benchkit.export_package(REPO_ROOT, commit, target)
    log(f"mlmagics as committed at {commit[:10]} ({revision}), from {target}")
    return target, commit


def checkout(revision: str | None, commit: str | None) -> str:
    """The commit mlmagics ran from, and whether its package had uncommitted changes (the workers import the work tree)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False)
        return done.stdout.strip()

    if revision and commit:
        return f"{commit[:10]} (mlmagics/ exported from git: --mlmagics-commit {revision})"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "mlmagics")
    return f"{commit}" + (f" with uncommitted changes in mlmagics/ ({len(dirty.splitlines())} files)" if dirty else "")


def server_versions(services: Services, python: Path) -> dict[str, str]:
    """PostgreSQL's server version (asked through psycopg in the project venv) and the S3 endpoint's Server header."""
    code = (
        "import psycopg, sys; c = psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3], dbname='postgres');"
        "print(c.execute('SHOW server_version').fetchone()[0])"
    )
    pg = subprocess.run(
        [str(python), "-c", code, services.pg["host"], str(services.pg["port"]), services.pg["user"]],
        capture_output=True, text=True, env=services.env("mlmagics"), timeout=60, check=False,
    )  # fmt: skip
    import urllib.request

    try:
        with urllib.request.urlopen(services.s3_endpoint + "/", timeout=5) as answer:
            s3 = answer.headers.get("Server", "?")
    except OSError as err:
        s3 = f"? ({err})"
    return {"postgresql": pg.stdout.strip() or f"? ({pg.stderr.strip()[-200:]})", "s3_endpoint": s3}


def configs_for(sides: list[str], stamp: str, services: Services, tmp: Path, store: str) -> dict[str, dict[str, Any]]:
    """Each side's fresh database and bucket (named by this run's stamp), and what its worker needs."""
    return {
        side: {
            "pg": services.pg,
            "database": f"registry_bench_{stamp}_{side}",
            "bucket": f"registry-bench-{stamp}-{side}",
            "s3_endpoint": services.s3_endpoint,
            "tmp": str(tmp),
            "store": store,
            "folder": str(tmp / "mlmagics-folder-workspace"),
            "names": sorted(set(NAMES.values()) | {"warmup"}),
        }
        for side in sides
    }


def run(args: argparse.Namespace) -> str:
    """The whole benchmark; returns the Markdown report."""
    started, load_before = time.monotonic(), os.getloadavg()[0]
    sides = list(SIDES) if args.only == "both" else [args.only]
    services = Services.from_args(args)
    services.check()
    if not args.python.exists():
        raise BenchError(f"project python {args.python} not found (make install, or pass --python)")
    out_dir = args.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    pythons = {"mlmagics": args.python}
    if "mlflow" in sides:
        pip_log, what = out_dir / "registry-mlflow-pip.log", f"{' '.join(MLFLOW_REQUIREMENTS)} (1–2 minutes)"
        pythons["mlflow"] = benchkit.ensure_venv(MLFLOW_VENV, MLFLOW_REQUIREMENTS, sys.executable, pip_log, what, log)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    worker_log_path = out_dir / "registry-workers.log"
    with (
        tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp_name,
        worker_log_path.open("w") as worker_log,
    ):
        tmp = Path(tmp_name)
        services.home = tmp / "mlmagics-home"
        commit = None
        if args.mlmagics_commit:
            services.mlmagics_src, commit = export_commit(args.mlmagics_commit, tmp / "mlmagics-src")
        ran_from = checkout(args.mlmagics_commit, commit)
        configs = configs_for(sides, stamp, services, tmp, args.mlmagics_store)
        bench = Run(pythons, configs, services, worker_log, tmp)
        prepared: dict[str, Any] = {}
        try:
            log(f"fresh databases and buckets (stamp {stamp}); worker output in {worker_log_path}")
            for side in sides:
                prepared[side] = bench.call(side, "prepare", timeout=300)
            if "mlmagics" in sides:
                configs["mlmagics"]["store"] = prepared["mlmagics"]["store"]
                if prepared["mlmagics"]["store"] != "uri":
                    log("⚠ mlmagics runs on a FOLDER workspace (SQLite + local disk): this checkout has no "
                        "Workspace(metadata=, artifacts=) yet, so its figures are not on PostgreSQL/S3")  # fmt: skip
            described = {side: bench.call(side, "describe", timeout=300) for side in sides}
            figures: dict[str, Any] = {}
            figures["small"] = fig_small(bench, sides, args)
            figures["large"] = fig_large(bench, sides, args)
            figures["populate"] = fig_populate(bench, sides, args)
            figures["list"] = fig_list(bench, sides, args)
            figures["latest"] = fig_latest(bench, sides, args)
            figures["concurrent"] = fig_concurrent(bench, sides, args)
            if "mlmagics" in sides and args.huge_mb:
                figures["huge"] = fig_huge(bench, args)
            storage = {side: bench.call(side, "storage") for side in sides if configs[side]["store"] != "folder"}
        finally:
            for process in list(RUNNING):
                stop(process)
            if not args.keep:
                for side in prepared:
                    if configs[side]["store"] != "folder":
                        try:
                            bench.call(side, "cleanup", timeout=300)
                        except BenchError as err:
                            log(f"cleanup: {err}")
                log("dropped the run's databases and buckets (--keep keeps them)")
    result = report.Result(
        settings={
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            **{k: getattr(args, k) for k in (*SIZES, "rss_limit_mb")},
            "postgres": f"{services.pg['user']}@{services.pg['host']}:{services.pg['port']}",
            "s3_endpoint": services.s3_endpoint,
            "checkout": ran_from,
            "command": "python benchmarks/registry_bench.py" + "".join(f" {without_password(a)}" for a in sys.argv[1:]),
        },  # fmt: skip
        machine={
            **machine_info(),
            **server_versions(services, args.python),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },  # fmt: skip
        sides=described,
        prepared=prepared,
        figures=figures,
        storage=storage,
        total_s=time.monotonic() - started,
    )
    return report.render(result)


def without_password(arg: str) -> str:
    """``arg`` with the password of any URL in it replaced by ``***`` (the report shows the command line)."""
    return re.sub(r"(://[^/@\s:]*):[^/\s]*@", r"\1:***@", arg)


def main(argv: list[str] | None = None) -> int:
    """Run, print the report and write it to --out; one-line errors, never stray workers or databases left."""
    args = parse_args(argv)
    with benchkit.ends_in_one_line("registry_bench", "its workers have been stopped", {BenchError: (1, "")}):
        markdown = run(args)
    benchkit.publish(markdown, args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
