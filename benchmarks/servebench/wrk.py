"""Drive wrk with a POST Lua script and parse its ``--latency`` report."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_TEMPLATE = """\
-- written by benchmarks/serving_bench.py
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
{extra_headers}
"""

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def write_lua(path: Path, body_path: Path, headers: dict[str, str]) -> Path:
    """Write a wrk script that POSTs the file at ``body_path`` with ``headers``."""
    # A JSON string literal is a valid Lua string literal for these ASCII values.
    extra = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    path.write_text(LUA_TEMPLATE.format(body_path=json.dumps(str(body_path)), extra_headers=extra))
    return path


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    raw: str
    # Set by the driver: CPUs' worth of other processes' work and of hypervisor steal during the run.
    other_cpu: float = float("nan")
    steal_cpu: float = float("nan")

    @property
    def errors(self) -> int:
        """Non-2xx/3xx responses plus socket errors of every kind."""
        return self.non_2xx + sum(self.socket_errors.values())

    def error_text(self) -> str:
        """A short human description of the errors, empty when there were none."""
        parts = [f"{self.non_2xx} non-2xx"] if self.non_2xx else []
        parts += [f"{n} socket {kind}" for kind, n in self.socket_errors.items() if n]
        return ", ".join(parts)


def _duration_ms(text: str) -> float:
    """'1.23ms' -> 1.23; '850.00us' -> 0.85; '1.02s' -> 1020.0."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unknown wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(raw: str) -> WrkResult:
    """Parse wrk's stdout (run with ``--latency``)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", raw)
    total = re.search(r"(\d+) requests in", raw)
    if not rps or not total:
        raise ValueError(f"could not parse wrk output:\n{raw}")
    percentiles = {p: _duration_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", raw, re.MULTILINE)}
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", raw)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", raw)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=percentiles.get("50", float("nan")),
        p99_ms=percentiles.get("99", float("nan")),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {},
        raw=raw,
    )


def median(runs: list[WrkResult]) -> WrkResult:
    """Median req/s, p50 and p99 of repeated runs (each independently); requests and errors summed."""
    sockets: dict[str, int] = {}
    for one in runs:
        for kind, count in one.socket_errors.items():
            sockets[kind] = sockets.get(kind, 0) + count
    return WrkResult(
        requests_per_s=statistics.median(r.requests_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=sum(r.requests for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sockets,
        raw="",
    )


def run(
    url: str,
    lua: Path,
    connections: int,
    seconds: float,
    timeout_s: float = 10.0,
    prefix: list[str] | None = None,
) -> WrkResult:
    """Run ``[prefix] wrk -t<min(c,2)> -c<c> -d<s>s --latency -s <lua> <url>`` and parse it.

    ``prefix`` is e.g. ``["taskset", "-c", "0"]`` to pin wrk to a CPU.
    """
    cmd = [
        *(prefix or []),
        "wrk",
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + timeout_s + 30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    result = parse(done.stdout)
    result.raw = " ".join(cmd) + "\n" + done.stdout
    return result
