"""Instructions per request of the three mlmagics runtimes (callgrind over ``servebench/pathcost.py``).

The report's deterministic reading of "without batching, nothing gets slower": req/s on this machine spreads
by more than the 3 % that target allows, an instruction count hardly does (see ``servebench/instructions.py``
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

from batchbench.servers import BATCH_SETTINGS, MLMAGICS

# (the load case it stands for, the requests of the smaller and the larger count)
CASES = (
    (Case("sklearn", 1, 1), 200, 1200),
    (Case("sklearn", 1, 64), 128, 1088),
    (Case("sklearn", 100, 8), 40, 240),
)
QUICK_CASES = (CASES[1],)


def path_case(key: str, case: Case) -> PathCase:
    batching = MLMAGICS[key][1]
    return PathCase(
        conns=case.conns,
        rows=case.rows,
        batch_rows=BATCH_SETTINGS["max_batch_size"] if batching else 0,
        batch_latency_ms=BATCH_SETTINGS["max_batch_latency_ms"],
    )


def count_all(
    python: Path,
    runtimes: dict[str, Path],
    app: dict[str, Any],
    keys: list[str],
    cases: list[Case],
    log: Callable[[str], None],
) -> tuple[dict[str, dict[Case, float]], list[str]]:
    """Instructions per request for each of ``keys`` ("mlmagics-before", …) and each of ``cases`` (of CASES), each
    key's runtime root taken from ``runtimes`` ("before", "now"). Returns the counts and, one line each, the counts
    that failed (the others are kept)."""
    plan = [(key, case, small, large) for case, small, large in CASES if case in cases for key in keys]
    counted: dict[str, dict[Case, float]] = {}
    failed: list[str] = []
    log(f"counting instructions per request with callgrind: {len(plan)} counts of two runs each, two at a time")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            pool.submit(instructions.per_request, python, runtimes[MLMAGICS[key][0]], app, path_case(key, case), small,
                        large): (key, case)
            for key, case, small, large in plan
        }  # fmt: skip
        for future in concurrent.futures.as_completed(futures):
            key, case = futures[future]
            try:
                counted.setdefault(key, {})[case] = future.result()
            except Exception as err:  # noqa: BLE001 - one failed count must not lose the others
                failed.append(f"{key}, {case.name}: {str(err).splitlines()[0][:200]}")
                log(f"{key:15} {case.name:>18}: not counted ({failed[-1]})")
                continue
            log(f"{key:15} {case.name:>18}: {counted[key][case]:,.0f} instructions per request")
    return counted, failed
