"""Instructions per request of the three mlmagics runtimes (callgrind over ``servebench/pathcost.py``).

The report's deterministic reading of "without batching, nothing gets slower": req/s on this machine spreads
by more than the 3 % that target allows, an instruction count does not (see ``servebench/instructions.py``
for what it leaves out). Counted after the load, two callgrind runs at a time.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servebench import instructions
from servebench.instructions import PathCase
from servebench.report import Case

from batchbench.servers import BATCH_SETTINGS

# (the load case it stands for, the requests of the smaller and the larger count)
CASES = (
    (Case("sklearn", 1, 1), 200, 1200),
    (Case("sklearn", 1, 64), 128, 1088),
    (Case("sklearn", 100, 8), 40, 240),
)
QUICK_CASES = (CASES[1],)
RUNTIMES = ("mlmagics-before", "mlmagics-off", "mlmagics-batch")


def path_case(key: str, case: Case) -> PathCase:
    batching = key == "mlmagics-batch"
    return PathCase(
        conns=case.conns,
        rows=case.rows,
        batch_rows=BATCH_SETTINGS["max_batch_size"] if batching else 0,
        batch_latency_ms=BATCH_SETTINGS["max_batch_latency_ms"],
    )


def count_all(
    python: Path, roots: dict[str, Path], app: dict[str, Any], quick: bool, log: Callable[[str], None]
) -> dict[str, dict[Case, float]]:
    """Instructions per request for each runtime key in ``roots`` ("mlmagics-before", …) and case."""
    jobs = [(key, case, small, large) for case, small, large in (QUICK_CASES if quick else CASES) for key in RUNTIMES
            if key in roots]  # fmt: skip
    out: dict[str, dict[Case, float]] = {}
    log(f"counting instructions per request with callgrind: {len(jobs)} counts of two runs each, two at a time")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            pool.submit(instructions.per_request, python, roots[key], app, path_case(key, case), small, large): (key, case)
            for key, case, small, large in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            key, case = futures[future]
            out.setdefault(key, {})[case] = future.result()
            log(f"{key:15} {case.name:>18}: {out[key][case]:,.0f} instructions per request")
    return out
