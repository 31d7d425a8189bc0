"""registry_bench.py's report: the results of one run as Markdown (standard library only)."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

LABELS = {"mlmagics": "mlmagics", "mlflow": "MLflow"}
MIB_TO_MB = 2**20 / 1e6


@dataclass
class Result:
    settings: dict[str, Any]
    machine: dict[str, Any]
    sides: dict[str, dict[str, Any]]
    prepared: dict[str, dict[str, Any]]
    figures: dict[str, Any]
    storage: dict[str, dict[str, int]]
    total_s: float


def concurrency_check(returned_lists: list[list[int]], stored: list[int], total: int) -> dict[str, Any]:
    """Versions the callers were given against the versions the registry holds, and against 1..total.

    lost: given to a caller but not in the registry; repeated: given to more than one caller (or held twice);
    missing / unexpected: 1..total not held / held but outside 1..total (a failed call leaves one missing).
    """
    returned = [v for versions in returned_lists for v in versions]
    given = Counter(returned)
    held = set(stored)
    expected = set(range(1, total + 1))
    return {
        "returned": len(returned),
        "stored": len(stored),
        "lost": len(set(returned) - held),
        "repeated": sum(n - 1 for n in given.values() if n > 1) + (len(stored) - len(held)),
        "missing": len(expected - held),
        "unexpected": len(held - expected),
    }


# -- formatting ------------------------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    return f"{seconds:,.0f} s"


def megabytes(mib: float | None) -> str:
    return "—" if mib is None else f"{mib * MIB_TO_MB:,.0f} MB"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "—"
    value = ours / theirs
    shown = f"{value:.2f}" if value < 10 else f"{value:.0f}"
    if 0.95 <= value <= 1.05:
        return f"**{shown}** (about the same)"
    return f"**{shown}**" + (f" ({1 / value:.1f}× faster)" if value < 1 else f" ({value:.1f}× slower)")


def mem_ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"**{ours / theirs:.2f}**"


def short(label: str) -> str:
    """The label, no number, cut at '(', ':' or ';' ('3. (populating 10 versions: …)' → 'populating 10 versions')."""
    text = re.sub(r"^\d+\.\s*", "", label)
    text = text[1:] if text.startswith("(") else text
    return re.split(r"[;(:]|,\s", text)[0].strip()


def _get(figures: dict[str, Any], figure: str, side: str) -> Any:
    return figures.get(figure, {}).get(side)


def _ran(by_side: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """(label, result) of each side, in LABELS' order, that has a result in ``by_side``."""
    by_side = by_side or {}
    return [(label, by_side[side]) for side, label in LABELS.items() if by_side.get(side)]


# -- the report ------------------------------------------------------------------------------------------
def headline(result: Result) -> list[str]:
    s, f = result.settings, result.figures
    rows: list[tuple[str, str, str, str]] = []
    slower: list[str] = []

    def timed(label: str, ours: float | None, theirs: float | None) -> None:
        rows.append((label, duration(ours), duration(theirs), ratio(ours, theirs)))
        if ours is not None and theirs and ours / theirs > 1.1:
            slower.append(f"{short(label)} ({ours / theirs:.1f}×)")

    def med(figure: str, side: str, key: str = "median") -> float | None:
        value = _get(f, figure, side)
        return None if value is None else value[key]

    def large(side: str, key: str) -> float | None:
        runs = _get(f, "large", side)
        return statistics.median(r[key] for r in runs) if runs else None

    timed(f"1. register a 1 KB model (median of {s['small_n']})", med("small", "mlmagics"), med("small", "mlflow"))
    timed(
        f"2. register a {s['large_mb']} MiB model (median of {s['large_n']})",
        large("mlmagics", "seconds"),
        large("mlflow", "seconds"),
    )
    ours, theirs = large("mlmagics", "peak_rss_mib"), large("mlflow", "peak_rss_mib")
    rows.append(
        (
            f"2. peak RSS of the process registering {s['large_mb']} MiB",
            megabytes(ours),
            megabytes(theirs),
            mem_ratio(ours, theirs),
        )
    )
    timed(
        f"3. list {s['versions']:,} versions of one name (median of {s['list_n']})",
        med("list", "mlmagics"),
        med("list", "mlflow"),
    )
    timed(
        f"3. (populating {s['versions']:,} versions: registrations by {s['populate_procs']} processes, wall time; "
        "not like for like, see below)",
        med("populate", "mlmagics", "seconds"),
        med("populate", "mlflow", "seconds"),
    )
    timed(
        f"4. the latest version, {s['versions']:,} present (median of {s['lookup_n']})",
        med("latest", "mlmagics"),
        med("latest", "mlflow"),
    )
    dl = {side: (_get(f, "latest", side) or {}).get("download", {}).get("median") for side in LABELS}
    timed(
        f"4. the latest version and download it (1 KB, to a machine with no copy; median of {s['lookup_n']})",
        dl["mlmagics"],
        dl["mlflow"],
    )
    conc = {side: _get(f, "concurrent", side) for side in LABELS}
    total = s["procs"] * s["per_proc"]

    def integrity(c: dict[str, Any] | None) -> str:
        if c is None:
            return "—"
        mark = "✓" if c["lost"] == 0 and c["repeated"] == 0 and c["missing"] == 0 and c["unexpected"] == 0 else "✗"
        failed = f", {c['errors']} calls failed" if c["errors"] else ""
        return f"{mark} lost {c['lost']}, repeated {c['repeated']}{failed}"

    label = f"5. {s['procs']} processes × {s['per_proc']} registrations of one name: lost / repeated versions"
    rows.append((f"{label} (1..{total} expected)", integrity(conc["mlmagics"]), integrity(conc["mlflow"]), "—"))
    timed(
        f"5. ({s['procs']} × {s['per_proc']} concurrent registrations, wall time)",
        conc["mlmagics"]["seconds"] if conc["mlmagics"] else None,
        conc["mlflow"]["seconds"] if conc["mlflow"] else None,
    )
    huge = f.get("huge")
    if huge:
        limit_mb = s["rss_limit_mb"]
        peak_mib = huge["peak_rss_mib"]
        peak_mb = peak_mib * MIB_TO_MB
        if peak_mb < limit_mb:
            verdict = f"✓ {peak_mb:,.0f} MB ({peak_mib:,.0f} MiB)"
        elif peak_mib < limit_mb:
            verdict = f"✗ {peak_mb:,.0f} MB (but {peak_mib:,.0f} MiB < {limit_mb} MiB)"
        else:
            verdict = f"✗ {peak_mb:,.0f} MB ({peak_mib:,.0f} MiB)"
        rows.append((f"6. register a {s['huge_mb']:,} MiB model (mlmagics only)", duration(huge["seconds"]), "not run", "—"))
        rows.append((f"6. its peak RSS (must stay < {limit_mb} MB = {limit_mb * 1e6 / 2**20:.0f} MiB)", verdict, "not run", "—"))
    lines = ["| figure | mlmagics | MLflow | mlmagics / MLflow |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if slower:
        lines += ["", "mlmagics is slower than MLflow at: " + "; ".join(slower) + "."]
    return lines


def details(result: Result) -> list[str]:
    f, s = result.figures, result.settings
    out = ["## Details", ""]
    for label, small in _ran(f.get("small")):
        parts = ", ".join(f"{k} {duration(v)}" for k, v in small["parts_median"].items())
        out.append(f"- **1 KB, {label}**: median {duration(small['median'])}, min {duration(small['min'])}, "
                   f"max {duration(small['max'])}" + (f"; of which (medians) {parts}" if parts else ""))  # fmt: skip
    for label, runs in _ran(f.get("large")):
        each = "; ".join(
            f"{duration(r['seconds'])} ({r['mib_per_s']:.0f} MiB/s), peak RSS {megabytes(r['peak_rss_mib'])} "
            f"(RSS before the call {megabytes(r['rss_before_mib'])})"
            for r in runs
        )
        parts = runs[0].get("parts") or {}
        split = ("; first run's parts: " + ", ".join(f"{k} {duration(v)}" for k, v in parts.items())) if parts else ""
        out.append(f"- **{s['large_mb']} MiB, {label}**: {each}{split}")
    for label, pop in _ran(f.get("populate")):
        samples = f" (e.g. {pop['error_samples'][0]})" if pop["error_samples"] else ""
        out.append(
            f"- **populating, {label}**: {pop['ok']:,} versions by {pop['procs']} processes in "
            f"{duration(pop['seconds'])} = {pop['ok'] / pop['seconds']:,.0f} registrations/s; "
            f"{pop['errors']} attempts failed and were retried{samples}"
            + (f"; registrations/s fifth by fifth: {' → '.join(f'{r:.0f}' for r in pop['rates'])}" if pop.get("rates") else "")
        )
    for label, listed in _ran(f.get("list")):
        out.append(f"- **list, {label}**: {listed['count']:,} versions; {', '.join(duration(t) for t in listed['times'])}")
    for label, latest in _ran(f.get("latest")):
        text = (f"- **latest, {label}**: version {latest['version']}, median {duration(latest['median'])} "
                f"(min {duration(latest['min'])}, max {duration(latest['max'])})")  # fmt: skip
        if "extra" in latest:
            extra = latest["extra"]
            text += f"; by {extra['how']}: median {duration(extra['median'])} (version {extra['version']})"
        text += f"; latest + download, no local copy: median {duration(latest['download']['median'])}"
        if "download_elsewhere" in latest:
            text += f"; {latest['download_elsewhere']['how']}: median {duration(latest['download_elsewhere']['median'])}"
        if "download_cached" in latest:
            text += f"; again with this machine's copy (its cache): median {duration(latest['download_cached']['median'])}"
        out.append(text)
    for label, c in _ran(f.get("concurrent")):
        samples = f"; e.g. {c['error_samples'][0]}" if c["error_samples"] else ""
        out.append(
            f"- **concurrent, {label}**: {c['returned']} versions returned to the callers, {c['errors']} calls "
            f"raised{samples}; {c['stored']} versions in the registry; lost {c['lost']}, repeated "
            f"{c['repeated']}, missing from 1..{s['procs'] * s['per_proc']} {c['missing']}, outside it "
            f"{c['unexpected']}; {duration(c['seconds'])} = {c['returned'] / c['seconds']:.0f} registrations/s"
        )
    huge = f.get("huge")
    if huge:
        out.append(
            f"- **{s['huge_mb']:,} MiB, mlmagics**: {duration(huge['seconds'])} ({huge['mib_per_s']:.0f} MiB/s), peak RSS "
            f"{megabytes(huge['peak_rss_mib'])}, RSS before the call {megabytes(huge['rss_before_mib'])} "
            f"(a sparse file: zeros but for its first and last MiB)"
        )
    for label, stored in _ran(result.storage):
        out.append(f"- **bucket at the end, {label}**: {stored['objects']:,} objects, {stored['bytes'] / 1e6:,.1f} MB")
    return out


def render(result: Result) -> str:
    s, m = result.settings, result.machine
    store = result.prepared.get("mlmagics", {}).get("store")
    lines = [
        "# Model registry: mlmagics vs MLflow",
        "",
        f"{s['date']}; `{s['command']}`; {result.total_s / 60:.1f} minutes in all."
        + (" **A --quick smoke run: small sizes, not the real figures.**" if s["quick"] else ""),
        "",
    ]
    if store and store != "uri":
        lines += [
            "> **⚠ mlmagics ran on a folder workspace (SQLite and local files), not on PostgreSQL and S3:** "
            "this checkout's `Workspace` has no `metadata=`/`artifacts=` yet. Its figures are not comparable "
            "with MLflow's on the servers.",
            "",
        ]
    lines += [
        "Both registries in one run, one after the other, on the same PostgreSQL server and the same S3 endpoint, "
        "each with a fresh database and a fresh bucket. **Every figure is a time or a memory size: lower is "
        "better, and the ratio mlmagics / MLflow below 1 means mlmagics is better.**",
        "",
        *headline(result),
        "",
        *details(result),
        "",
        "## What each side does",
        "",
        "- **mlmagics** (project venv): "
        + result.prepared.get("mlmagics", {}).get("workspace", "not run")
        + "; registering is `Model.register(ws, path, name)` (a file); listing `Model.list(ws, name=name)`; the "
        "latest `Model(ws, name)`; downloading `Model(ws, name).download(dir)` (figure 4: with the workspace's "
        "local artifact cache, `ws.path/artifacts/sha256/`, emptied before each download, untimed, so every "
        "download reads S3 as MLflow's does); "
        "populating is a whole `Model.register` of one 16-byte file (its content is stored once; every "
        "registration after the first copies and hashes it and reads its manifest from the store).",
        "- **MLflow** (`benchmarks/.venvs/mlflow`): tracking and registry URI "
        f"`{result.prepared.get('mlflow', {}).get('tracking_uri', 'not run')}`, artifact location "
        f"`{result.prepared.get('mlflow', {}).get('artifact_location', '—')}` (`MLFLOW_S3_ENDPOINT_URL`); "
        "registering is `with mlflow.start_run(): mlflow.log_artifact(path, artifact_path='model')` then "
        "`MlflowClient().create_model_version(name, source=f'{run.info.artifact_uri}/model', run_id=...)` "
        "(the registered names are created beforehand; MLflow 3's `mlflow.register_model('runs:/…/model')` only "
        "takes a *logged model*); listing `mlflow.search_model_versions(filter_string=\"name='…'\")`; the latest "
        "`MlflowClient().search_model_versions(..., order_by=['version_number DESC'], max_results=1)`; downloading "
        "`mlflow.artifacts.download_artifacts(artifact_uri=<its source>)`; populating `create_model_version` "
        "alone, every version pointing at one run's artifact (no upload).",
        "- Every 1 KB and large registration uploads new random bytes (no store can skip a duplicate). Each "
        "worker makes one untimed warm-up registration first (imports, connections); each large registration "
        "runs in a fresh process, its peak RSS read as VmHWM from `/proc/self/status`, reset just before the "
        "call (so it is the call's peak, imports included). The concurrent workers register the same way as "
        "figure 1 and start together at a file barrier.",
        "",
        "## Versions and machine",
        "",
        f"- Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['memory_gib']:.0f} GiB, {m['platform']}; "
        f"/tmp on {m['disk_tmp']}; load average {m['load_before']:.2f} before, {m['load_after']:.2f} after.",
        f"- PostgreSQL {m['postgresql']} at {s['postgres']}; S3 endpoint {s['s3_endpoint']} (`{m['s3_endpoint']}`).",
    ]
    for side, label in LABELS.items():
        info = result.sides.get(side)
        if info:
            packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
            lines.append(f"- {label}: Python {info['python']}; {packages}.")
            if side == "mlmagics":
                lines[-1] = lines[-1][:-1] + f"; this checkout at {s['checkout']}."
    lines += [
        "- Sizes: " + ", ".join(f"{k}={s[k]}" for k in ("small_n", "large_mb", "large_n", "versions", "populate_procs",
                                                          "list_n", "lookup_n", "procs", "per_proc", "huge_mb")) + ".",
    ]  # fmt: skip
    return "\n".join(lines)
