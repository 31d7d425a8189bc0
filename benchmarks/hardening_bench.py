"""What the runtime's hardening costs, and whether its memory stays flat under a long mixed load.

1. **Cost of the limits** — first counted: the instructions one request costs in a worker (valgrind's
   callgrind over `servebench/pathcost.py`, the same count whatever else the machine does), before
   and after. Then timed: the scoring runtime as it was before the hardening (a git revision,
   ``--before``, checked out into a temporary worktree) and as it is in this checkout, serving the
   same scripts from the same runtime venv, one worker, pinned, measured alternately run by run at
   1 row / 8 connections: the seed's sklearn script (the issue's figure) and the echo script (where
   the server's own cost shows most). Medians of ``--repeat`` runs and the ratio after/before.
2. **Soak** — this checkout's server (2 workers, key auth on) under moderate load for ``--soak``
   seconds: wrk paced at ``--rate`` requests/s of good traffic, and beside it a stream of hostile
   requests (deep JSON, bodies without a key, bodies over the limit, endless URLs and headers, slow
   heads, malformed bytes). Every 10 s each worker's RSS is sampled; the report gives the table, the
   drift over the second half (MiB per minute, a least-squares fit), the answers the hostile client
   got by status, and a plot.

Example::

    python benchmarks/hardening_bench.py                      # about 13 minutes
    python benchmarks/hardening_bench.py --repeat 3 --soak 60 # a quick look, about 2 minutes

The Markdown report goes to stdout and ``--out`` (default ``benchmarks/results/hardening.md``), the
plot next to it (``hardening-soak.png``); progress to stderr. 127.0.0.1 only; every step is bounded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import benchkit
from benchkit import BENCH_DIR, REPO_ROOT
from servebench import instructions, probe, procs, servers, wrk

FIXTURE = BENCH_DIR / "servebench" / "fixture.py"
KEY = "hardening-bench-key"
DEFAULT_BEFORE = "58e2449"  # main just before the hardening (issue 11)
PACED_LUA = """\
local f = assert(io.open({body}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function delay() return {delay_ms} end
"""


log = benchkit.logger("hardening_bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help=f"git revision of the runtime before (default {DEFAULT_BEFORE})")
    parser.add_argument("--repeat", type=int, default=7, help="measured runs per version and script (default 7)")
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run (default 5)")
    parser.add_argument("--soak", type=float, default=600, help="soak seconds (default 600; 0 skips it)")
    parser.add_argument("--rate", type=int, default=800, help="good requests per second during the soak (default 800)")
    parser.add_argument("--python", type=Path, default=REPO_ROOT / ".venv" / "bin" / "python", help="project venv python")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "hardening.md")
    return parser.parse_args(argv)


def runtime_venv(python: Path, out_dir: Path) -> Path:
    """The venv the scoring runtime runs in, as an image holds it (shared with serving_bench.py)."""
    return servers.runtime_venv(servers.versions(python, servers.PROJECT_PACKAGES), out_dir / "hardening-pip.log", log)


def worktree(revision: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "-f", str(where), revision],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return where


def start(registry: procs.Registry, runtime: Path, code_root: Path, app: dict, *, workers: int, config: Path,
          pinning: procs.Pinning, log_path: Path, body: bytes) -> tuple[procs.Spawned, servers.ServerSpec]:  # fmt: skip
    """Start the runtime found under `code_root` and wait (60 s at most) until it scores `body`."""
    port = procs.free_port()
    spec = servers.mlmagics_spec(runtime, code_root, app, port=port, workers=workers, config=config, key=KEY, log_path=log_path)
    spawned = registry.spawn(spec.label, [*pinning.server, *spec.command], cwd=spec.cwd, env=spec.env, log_path=log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            probe.score_wire(port, body, spec.headers)
            return spawned, spec
        except (OSError, probe.ServerFailed) as e:
            if spawned.exited() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{spec.label} did not start ({e}); log {log_path}:\n{procs.log_tail(log_path)}") from None
            time.sleep(0.1)


def cost_of_limits(args, runtime: Path, before_root: Path, fixture: dict, tmp: Path, out_dir: Path) -> list[str]:
    pinning = procs.plan_pinning(True, 1)
    config = servers.write_service_config(tmp / "service.json", KEY, "second-key")
    apps = {"sklearn": fixture, "echo": {**fixture["trivial"], "bodies": fixture["bodies"]}}
    results: dict[tuple[str, str], list[wrk.WrkResult]] = {}
    with procs.Registry() as registry:
        for attempt in range(args.repeat):
            order = [("before", before_root), ("after", REPO_ROOT)]
            if attempt % 2:
                order.reverse()  # alternate who goes first: the machine's drift falls on both
            for script, app in apps.items():
                body_path = Path(fixture["bodies"]["1"])
                body = body_path.read_bytes()
                for label, root in order:
                    spawned, spec = start(registry, runtime, root, app, workers=1, config=config, pinning=pinning,
                                          log_path=tmp / f"hardening-{label}.log", body=body)  # fmt: skip
                    lua = wrk.write_lua(tmp / f"{script}.lua", body_path, spec.headers)
                    wrk.run(spec.score_url, lua, 8, 1, prefix=pinning.wrk)  # warm-up
                    result = wrk.run(spec.score_url, lua, 8, args.duration, prefix=pinning.wrk)
                    results.setdefault((script, label), []).append(result)
                    log(f"run {attempt + 1}/{args.repeat} {script:7} {label:6} {result.requests_per_s:8.0f} req/s, "
                        f"p99 {result.p99_ms:.2f} ms{' ⚠ ' + result.error_text() if result.errors else ''}")  # fmt: skip
                    registry.stop(spawned)
    lines = [
        "## Cost of the limits: 1 row / 8 connections, one worker, before and after, alternating",
        "",
        f"Medians of {args.repeat} runs of {args.duration:g} s; before = `{args.before}`, after = this checkout. "
        f"Pinning: {pinning.description}.",
        "",
        "| script | before req/s | after req/s | after / before | p99 before | p99 after | spread after (min–max) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for script in apps:
        before, after = wrk.median(results[(script, "before")]), wrk.median(results[(script, "after")])
        spread = [r.requests_per_s for r in results[(script, "after")]]
        lines.append(
            f"| {script} | {before.requests_per_s:,.0f} | {after.requests_per_s:,.0f} | "
            f"{after.requests_per_s / before.requests_per_s:.3f} | {before.p99_ms:.2f} ms | {after.p99_ms:.2f} ms | "
            f"{min(spread):,.0f}–{max(spread):,.0f} |"
        )
    return lines


# -- instructions per request (deterministic) ----------------------------------------------------------------------
def instruction_costs(runtime: Path, before_root: Path, fixture: dict) -> list[str]:
    lines = [
        "## Instructions per request (callgrind: the same count on a busy or a quiet machine)",
        "",
        "One request's whole path in a worker (parse, admit, queue, `run()`, answer; "
        "`servebench/pathcost.py`), key auth on, `max_request_wait_time` 500 ms in both: "
        "(instructions for 1200 requests − for 200) / 1000.",
        "",
    ]
    if not instructions.available():
        return lines + ["valgrind is not installed (apt-get install valgrind): not counted."]
    lines += ["| script | before | after | after / before |", "| --- | ---: | ---: | ---: |"]
    apps = {"sklearn": fixture, "echo": fixture["trivial"]}
    for script, app in apps.items():
        per = {}
        for label, root in (("before", before_root), ("after", REPO_ROOT)):
            per[label] = instructions.per_request(runtime, root, app, instructions.PathCase(), 200, 1200)
            log(f"{script} {label}: {per[label]:,.0f} instructions per request")
        lines.append(f"| {script} | {per['before']:,.0f} | {per['after']:,.0f} | {per['after'] / per['before']:.3f} |")
    return lines


# -- soak ---------------------------------------------------------------------------------------------------------
def _exchange(port: int, data: bytes, pause: float = 0.0, read: bool = True) -> int:
    """Send `data` (byte by byte, `pause` apart, when pausing), return the status answered (0: none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            if pause:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    time.sleep(pause)
            else:
                sock.sendall(data)
            if not read:
                return 0
            head = sock.recv(4096)
            return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else 0
    except (OSError, ValueError, IndexError):
        return 0


HOSTILE = {
    "deep JSON query": b"GET /score?data=" + b"[" * 1200 + b"]" * 1200 + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + KEY.encode() + b"\r\n\r\n",
    "body without key": b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 94000000\r\n\r\n" + b"x" * 65536,
    "body over the limit": b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
    + b"\r\nContent-Length: 200000000\r\n\r\n",
    "endless URL": b"GET /" + b"a" * 200_000,
    "endless header": b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 200_000,
    "60,000 headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(60_000)),
    "malformed": b"NOT HTTP\r\n\r\n",
    "no Host": b"GET / HTTP/1.1\r\n\r\n",
}


def hostile_client(port: int, stop: threading.Event, seen: Counter) -> None:
    kinds = list(HOSTILE.items())
    n = 0
    while not stop.is_set():
        name, data = kinds[n % len(kinds)]
        seen[(name, _exchange(port, data))] += 1
        if n % 50 == 0:  # now and then a slow head, one byte every 0.5 s (the server cuts it at 10 s)
            threading.Thread(target=lambda: seen.update([("slow head", _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                             + b"X: " + b"s" * 40 + b"\r\n\r\n", pause=0.5))]), daemon=True).start()  # fmt: skip
        n += 1
        stop.wait(0.05)


def soak(args, runtime: Path, fixture: dict, tmp: Path, out_dir: Path) -> list[str]:
    config = servers.write_service_config(tmp / "soak.json", KEY, "second-key")
    body_path = Path(fixture["bodies"]["1"])
    pinning = procs.plan_pinning(True, 2)
    samples: list[tuple[float, dict[int, float]]] = []
    seen: Counter = Counter()
    with procs.Registry() as registry:
        spawned, spec = start(registry, runtime, REPO_ROOT, fixture, workers=2, config=config, pinning=pinning,
                              log_path=tmp / "hardening-soak.log", body=body_path.read_bytes())  # fmt: skip
        workers = procs.process_tree(spawned.pid)[1:]
        lua = tmp / "paced.lua"
        delay_ms = max(1, round(8 * 1000 / args.rate))  # 8 connections, each pausing delay_ms between requests
        lua.write_text(PACED_LUA.format(body=json.dumps(str(body_path)), key=KEY, delay_ms=delay_ms))
        stop = threading.Event()
        load: dict = {}
        runner = threading.Thread(target=lambda: load.update(result=wrk.run(spec.score_url, lua, 8, args.soak)))
        hostile = threading.Thread(target=hostile_client, args=(spec.port, stop, seen), daemon=True)
        started = time.monotonic()
        runner.start()
        hostile.start()
        while runner.is_alive():
            elapsed = time.monotonic() - started
            samples.append((elapsed, {pid: procs.tree_memory(pid).rss_mib for pid in workers}))
            if len(samples) % 6 == 1:
                log(f"soak {elapsed:5.0f}/{args.soak:.0f} s: worker RSS "
                    + ", ".join(f"{rss:.1f}" for rss in samples[-1][1].values()) + " MiB")  # fmt: skip
            runner.join(10)
        stop.set()
        hostile.join(20)
        alive = procs.process_tree(spawned.pid)[1:]
    result: wrk.WrkResult = load["result"]
    lines = [
        f"## Soak: {args.soak:.0f} s at ~{args.rate} good req/s with a hostile client beside it (2 workers)",
        "",
        f"Good traffic: {result.requests:,} requests, {result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.2f} ms, "
        f"{result.error_text() or 'no error'}. Workers at the start {workers}, at the end {alive}"
        f"{' (the same)' if alive == workers else ' — REPLACED'}.",
        "",
        "| time | " + " | ".join(f"worker {pid} RSS (MiB)" for pid in workers) + " |",
        "| ---: | " + " | ".join("---:" for _ in workers) + " |",
    ]
    step = max(1, len(samples) // 12)
    for elapsed, rss in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {elapsed:.0f} s | " + " | ".join(f"{rss.get(pid, 0):.1f}" for pid in workers) + " |")
    half = samples[len(samples) // 2 :]
    lines += ["", "Drift over the second half (least-squares slope): " + ", ".join(
        f"worker {pid} {_slope([t for t, _ in half], [r[pid] for _, r in half]) * 60:+.3f} MiB/min" for pid in workers
    ) + ".", "", "| hostile request | answers by status (0: closed without one) |", "| --- | --- |"]  # fmt: skip
    by_kind: dict[str, Counter] = {}
    for (name, status), count in seen.items():
        by_kind.setdefault(name, Counter())[status] += count
    for name, statuses in sorted(by_kind.items()):
        lines.append(f"| {name} | " + ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items())) + " |")
    _plot(samples, workers, args.out.with_name("hardening-soak.png"), args.python)
    lines += ["", f"![worker RSS during the soak]({args.out.with_name('hardening-soak.png').name})"]
    return lines


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def _plot(samples, workers, path: Path, python: Path) -> None:
    """The RSS curve, drawn by the project venv's matplotlib (this driver needs only the standard library)."""
    data = json.dumps({"t": [t for t, _ in samples], "workers": {str(p): [r.get(p, 0) for _, r in samples] for p in workers}})
    code = """
import json, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = json.loads(sys.stdin.read())
fig, ax = plt.subplots(figsize=(7, 3.2))
for pid, rss in d["workers"].items():
    ax.plot(d["t"], rss, label=f"worker {pid}")
top = max(max(rss) for rss in d["workers"].values())
ax.set_xlabel("seconds"); ax.set_ylabel("RSS (MiB)"); ax.set_ylim(0, top * 1.3); ax.legend(loc="lower right"); ax.grid(alpha=0.3)
ax.set_title("Worker memory under good and hostile load")
fig.tight_layout(); fig.savefig(sys.argv[1], dpi=110)
"""
    subprocess.run([str(python), "-c", code, str(path)], input=data, text=True, check=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = runtime_venv(args.python, out_dir)
    with tempfile.TemporaryDirectory(prefix="hardening-bench-") as tmp_name:
        tmp = Path(tmp_name)
        fixture = json.loads(subprocess.run([str(args.python), str(FIXTURE), "prepare", "--root", str(tmp)],
                                            capture_output=True, text=True, check=True, timeout=300).stdout)  # fmt: skip
        before_root = worktree(args.before, tmp / "before")
        try:
            lines = [f"# Hardening: cost and soak ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
                     f"{os.cpu_count()} CPUs)", ""]  # fmt: skip
            lines += instruction_costs(runtime, before_root, fixture) + [""]
            lines += cost_of_limits(args, runtime, before_root, fixture, tmp, out_dir)
            if args.soak > 0:
                lines += [""] + soak(args, runtime, fixture, tmp, out_dir)
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(before_root)],
                           capture_output=True, timeout=60)  # fmt: skip
    report = "\n".join(lines) + "\n"
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
