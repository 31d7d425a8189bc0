"""Instructions one request costs in a worker, counted by valgrind's callgrind over ``pathcost.py``.

A count, not a time: it hardly moves with the machine's load (runs of one runtime agreed within 0.4 %, a
batched one within 2.8 %: a little of the work follows the clock), so a difference of 1-2 % between two
runtimes shows where req/s on a shared VM (runs spreading by 10-60 %) cannot. What it leaves out: the kernel
(sockets, scheduling), the wait for the CPU and the GIL, and cache misses: it compares the work two
runtimes do per request, not how the machine runs it.

Per request = (the whole process's instructions for ``large`` requests − for ``small``) / (large − small):
start-up, imports and init() cancel out. Two callgrind runs of a minute or so each.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import BENCH_DIR, clean_env

PATHCOST = BENCH_DIR / "servebench" / "pathcost.py"


@dataclass(frozen=True)
class PathCase:
    """How pathcost.py loads the worker: connections with a request each in flight, rows per body, batching."""

    conns: int = 1
    rows: int = 1
    batch_rows: int = 0  # max_batch_size; 0: batching off
    batch_latency_ms: float = 10.0

    def args(self) -> list[str]:
        out = ["--conns", str(self.conns), "--rows", str(self.rows)]
        return out + (["--batch-rows", str(self.batch_rows), "--batch-latency-ms", f"{self.batch_latency_ms:g}"]
                      if self.batch_rows else [])  # fmt: skip


def available() -> bool:
    return shutil.which("valgrind") is not None


def count(python: Path, code_root: Path, app: dict[str, Any], requests: int, case: PathCase = PathCase()) -> int:
    """Instructions callgrind counts for pathcost.py answering ``requests`` (the whole process), the runtime taken
    from ``code_root`` (a checkout or an exported revision)."""
    # Run to run, two identical counts differed by ~15 M instructions (1 % of a request's count per 1,000 requests):
    # OpenBLAS's worker threads spin for as long as the machine lets them (their count is time, not work), and the
    # hash seed changes set and dict layouts. With one BLAS thread and a fixed seed they differ by ~30 k.
    env = clean_env(PYTHONPATH=str(code_root), AZUREML_MODEL_DIR=app["model_dir"], PYTHONHASHSEED="0",
                    OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # fmt: skip
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(python), str(PATHCOST), app["score_py"],
         str(requests), *case.args()],
        capture_output=True, text=True, env=env, cwd=app["app_root"], timeout=1800, check=False,
    )  # fmt: skip
    found = [line for line in done.stderr.splitlines() if "Collected :" in line]
    if done.returncode != 0 or not found:
        said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("==")]  # not valgrind's
        raise RuntimeError(f"pathcost.py under callgrind exited {done.returncode}: {(said or ['(nothing said)'])[-1][:300]}")
    return int(found[-1].split(":")[-1])


def per_request(python: Path, code_root: Path, app: dict[str, Any], case: PathCase, small: int, large: int) -> float:
    """(instructions for ``large`` requests − for ``small``) / (large − small); both whole rounds of ``case.conns``."""
    small, large = _rounded(small, case.conns), _rounded(large, case.conns)
    if small < case.conns or large <= small:
        raise ValueError(f"need {case.conns} <= small ({small}) < large ({large}), whole rounds of {case.conns} requests")
    return (count(python, code_root, app, large, case) - count(python, code_root, app, small, case)) / (large - small)


def _rounded(requests: int, conns: int) -> int:
    return requests // conns * conns
