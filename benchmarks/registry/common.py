"""What both side workers share: the operations the driver asks for, timing, memory, files, the barrier.

A side worker is ``python <side>.py <operation> --config <json> [options]``, run by
``registry_bench.py`` in the side's own venv. It logs progress to stderr as lines starting
with ``[<side>]`` and prints its result as one ``RESULT {json}`` line on stdout. A side
(``mlmagics_side.py``, ``mlflow_side.py``) supplies a ``Side`` object; everything else is here,
so both sides are timed the same way.

Needs only the standard library, psycopg (the fresh database) and boto3 (the fresh bucket),
which both venvs hold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

WARMUP_NAME = "warmup"
CHUNK = 1 << 20


class Side(Protocol):
    """One registry as a user drives it; ``open`` connects, the rest are the timed calls."""

    label: str

    def open(self, config: dict[str, Any]) -> None: ...
    def describe(self) -> dict[str, Any]: ...
    def prepare(self, config: dict[str, Any]) -> dict[str, Any]: ...
    def register(self, path: Path, name: str) -> tuple[int, dict[str, float]]: ...
    def list_versions(self, name: str) -> list[int]: ...
    def latest(self, name: str) -> int: ...
    def download_latest(self, name: str, target: Path) -> Path: ...
    def forget_local_copies(self) -> bool: ...
    def download_elsewhere(self, name: str, target: Path, folder: Path) -> tuple[str, float] | None: ...
    def extra_latest(self, name: str) -> tuple[str, Callable[[], int]] | None: ...
    def populate_one(self, path: Path, name: str) -> int: ...


def log(label: str, message: str) -> None:
    print(f"[{label}] {message}", file=sys.stderr, flush=True)


# -- memory ------------------------------------------------------------------------------------------
def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now; VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the next peak is the next call's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- files -------------------------------------------------------------------------------------------
def small_file(folder: Path, size: int, tag: str) -> Path:
    """A file of ``size`` random bytes (distinct content every call: no store can skip it as a duplicate)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model-{tag}.bin"
    path.write_bytes(os.urandom(size))
    return path


def big_file(path: Path, size: int, *, sparse: bool) -> Path:
    """A file of ``size`` bytes written 1 MiB at a time (never held in memory): random content, or a sparse
    file (holes that take no disk) with 16 random bytes at the start of every MiB: its digest is new, and no two of
    its chunks are equal in a store that keeps files in chunks of a MiB or more, so every byte is sent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        if sparse:
            out.truncate(size)
            for offset in range(0, size, CHUNK):
                out.seek(offset)
                out.write(os.urandom(min(16, size - offset)))
        else:
            left = size
            while left > 0:
                out.write(os.urandom(min(CHUNK, left)))
                left -= CHUNK
    return path


# -- services (each side makes its own fresh database and bucket) ----------------------------------------
def _server(config: dict[str, Any]) -> Any:
    """A connection to the shared server's ``postgres`` database (the password from PGPASSWORD)."""
    import psycopg

    pg = config["pg"]
    return psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname="postgres", autocommit=True)


def create_database(config: dict[str, Any]) -> None:
    """CREATE DATABASE ``config['database']`` on the shared server (the role needs CREATEDB)."""
    with _server(config) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{config["database"]}"')
        db.execute(f'CREATE DATABASE "{config["database"]}"')


def drop_database(config: dict[str, Any]) -> None:
    with _server(config) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{config["database"]}" WITH (FORCE)')


def s3_client(config: dict[str, Any]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=config["s3_endpoint"])


def create_bucket(config: dict[str, Any]) -> None:
    s3_client(config).create_bucket(Bucket=config["bucket"])


def delete_bucket(config: dict[str, Any]) -> int:
    """Empty and delete the bucket (the S3 endpoint may hold it in memory); returns the objects it held."""
    s3 = s3_client(config)
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=config["bucket"]):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=config["bucket"], Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    s3.delete_bucket(Bucket=config["bucket"])
    return removed


def bucket_bytes(config: dict[str, Any]) -> dict[str, int]:
    """Objects and bytes in the side's bucket (what its artifacts cost in storage)."""
    s3 = s3_client(config)
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=config["bucket"]):
        for item in page.get("Contents", []):
            count += 1
            size += item["Size"]
    return {"objects": count, "bytes": size}


# -- the barrier (concurrent registrations start together) -------------------------------------------------
def wait_for_go(barrier: Path, worker: int, timeout: float = 300.0) -> None:
    """Say this worker is ready (``ready-<n>``), then wait for the driver's ``go`` file."""
    (barrier / f"ready-{worker}").touch()
    deadline = time.monotonic() + timeout
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no 'go' in {barrier} after {timeout:.0f} s")
        time.sleep(0.005)


# -- operations -------------------------------------------------------------------------------------------
def summary(times: list[float]) -> dict[str, Any]:
    return {"times": times, "median": statistics.median(times), "min": min(times), "max": max(times)}


def timed(call: Callable[[], Any], n: int) -> tuple[list[float], Any]:
    """``call()`` ``n`` times (``n`` ≥ 1): the seconds each call took, and what the last one returned."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - started)
    return times, value


def op_small(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``--n`` registrations of a fresh ``--size``-byte file, after one untimed warm-up registration."""
    side.register(small_file(tmp, args.size, "warmup"), WARMUP_NAME)
    times, splits, versions = [], [], []
    for i in range(args.n):
        path = small_file(tmp, args.size, str(i))
        started = time.perf_counter()
        version, split = side.register(path, args.name)
        times.append(time.perf_counter() - started)
        versions.append(version)
        splits.append(split)
        if (i + 1) % max(1, args.n // 4) == 0 or i + 1 == args.n:
            log(side.label, f"registered {args.size} B {i + 1}/{args.n}: {times[-1] * 1000:.0f} ms (version {version})")
    parts = {key: statistics.median(s[key] for s in splits) for key in splits[0]} if splits and splits[0] else {}
    return {**summary(times), "versions": versions, "parts_median": parts}


def op_large(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One registration of a ``--size``-byte file (random, or sparse with ``--sparse``) in this fresh process,
    with its peak RSS; the file is written before and deleted after."""
    side.register(small_file(tmp, 1024, "warmup"), WARMUP_NAME)
    path = big_file(tmp / f"large-{os.getpid()}.bin", args.size, sparse=args.sparse)
    try:
        rss_before = status_kib("VmRSS")
        peak_reset = reset_peak()
        started = time.perf_counter()
        version, split = side.register(path, args.name)
        seconds = time.perf_counter() - started
        peak = status_kib("VmHWM") if peak_reset else _maxrss_kib()
    finally:
        path.unlink(missing_ok=True)
    log(side.label, f"registered {args.size / 2**20:,.0f} MiB in {seconds:.2f} s, version {version}, "
        f"peak RSS {peak / 1024:.0f} MiB (before the call {rss_before / 1024:.0f} MiB)")  # fmt: skip
    return {
        "seconds": seconds,
        "version": version,
        "parts": split,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_is_call_only": peak_reset,
        "mib_per_s": args.size / 2**20 / seconds,
    }


def _maxrss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def op_populate(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``--n`` versions of ``--name`` through the side's quick populate call (errors counted, not fatal)."""
    path = small_file(tmp, 16, f"populate-{args.worker}")
    ok, errors, samples = 0, 0, []
    started = last = time.perf_counter()
    step = max(1, args.n // 5)
    rates = []  # registrations/s in each fifth: does registering slow down as versions pile up?
    while ok < args.n:
        try:
            side.populate_one(path, args.name)
            ok += 1
            if ok % step == 0:
                now = time.perf_counter()
                rates.append(step / (now - last))
                last = now
                log(side.label, f"populate worker {args.worker}: {ok}/{args.n} (now {rates[-1]:.1f}/s)")
        except Exception as err:  # noqa: BLE001 -- counted and reported: a failed registration is a finding
            errors += 1
            if len(samples) < 3:
                samples.append(_one_line(err))
            if errors > max(50, args.n):
                raise
    return {"seconds": time.perf_counter() - started, "ok": ok, "errors": errors, "error_samples": samples, "rates": rates}


def op_list(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """List every version of ``--name``, ``--n`` times (after one untimed call)."""
    count = len(side.list_versions(args.name))
    times = []
    for i in range(args.n):
        started = time.perf_counter()
        versions = side.list_versions(args.name)
        times.append(time.perf_counter() - started)
        log(side.label, f"list {i + 1}/{args.n}: {len(versions):,} versions in {times[-1]:.2f} s")
    return {**summary(times), "count": count}


def op_latest(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The latest version of ``--name``, ``--n`` times; then the side's other way, if it has one; then a download."""
    side.latest(args.name)
    times, version = timed(lambda: side.latest(args.name), args.n)
    log(side.label, f"latest of {args.name}: version {version}, median {statistics.median(times) * 1000:.1f} ms")
    result: dict[str, Any] = {**summary(times), "version": version}
    extra = side.extra_latest(args.name)
    if extra:
        how, call = extra
        call()
        extra_times, extra_version = timed(call, args.n)
        result["extra"] = {"how": how, **summary(extra_times), "version": extra_version}
        log(side.label, f"latest by {how}: version {extra_version}, median {statistics.median(extra_times) * 1000:.1f} ms")
    # As a machine with no copy of the model would: a side that keeps local copies forgets them before each
    # download (untimed), so every download reads the artifact store.
    cold, caches = [], False
    for i in range(args.n + 1):
        caches = side.forget_local_copies()
        started = time.perf_counter()
        side.download_latest(args.name, tmp / f"download-{i}")
        if i:  # the first is a warm-up
            cold.append(time.perf_counter() - started)
    result["download"] = summary(cold)
    log(side.label, f"latest + download (no local copy): median {result['download']['median'] * 1000:.1f} ms")
    if caches:  # and again, now that this machine has a copy
        warm = []
        for i in range(args.n):
            started = time.perf_counter()
            side.download_latest(args.name, tmp / f"download-again-{i}")
            warm.append(time.perf_counter() - started)
        result["download_cached"] = summary(warm)
        log(side.label, f"latest + download (a local copy): median {result['download_cached']['median'] * 1000:.1f} ms")
    elsewhere = [side.download_elsewhere(args.name, tmp / f"download-elsewhere-{i}", tmp / f"machine-{i}") for i in range(args.n)]
    if elsewhere[0]:
        result["download_elsewhere"] = {"how": elsewhere[0][0], **summary([e[1] for e in elsewhere if e])}
        log(side.label, f"{elsewhere[0][0]}: median {result['download_elsewhere']['median'] * 1000:.1f} ms")
    return result


def op_concurrent(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``--n`` registrations of ``--name`` as fast as possible, started with the other workers at the barrier."""
    side.register(small_file(tmp, 1024, "warmup"), WARMUP_NAME)
    files = [small_file(tmp, 1024, f"c{args.worker}-{i}") for i in range(args.n)]
    wait_for_go(Path(args.barrier), args.worker)
    versions, errors, samples = [], 0, []
    started, started_at = time.perf_counter(), time.time()
    for path in files:
        try:
            versions.append(side.register(path, args.name)[0])
        except Exception as err:  # noqa: BLE001 -- a failed registration is what this operation counts
            errors += 1
            if len(samples) < 3:
                samples.append(_one_line(err))
    seconds = time.perf_counter() - started
    log(side.label, f"concurrent worker {args.worker}: {len(versions)} versions, {errors} errors in {seconds:.1f} s")
    return {
        "versions": versions,
        "errors": errors,
        "error_samples": samples,
        "seconds": seconds,
        "started_at": started_at,
        "ended_at": time.time(),
    }


def op_versions(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Every version number the registry holds for ``--name`` (checked after the concurrent run)."""
    return {"versions": side.list_versions(args.name)}


def op_storage(side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    return bucket_bytes(args.config)


OPERATIONS: dict[str, Callable[[Side, argparse.Namespace, Path], dict[str, Any]]] = {
    "small": op_small,
    "large": op_large,
    "populate": op_populate,
    "list": op_list,
    "latest": op_latest,
    "concurrent": op_concurrent,
    "versions": op_versions,
    "storage": op_storage,
}


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("operation", choices=[*OPERATIONS, "prepare", "cleanup", "describe"])
    parser.add_argument("--config", type=json.loads, required=True, help="the run's settings (JSON)")
    parser.add_argument("--name", default="bench")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--sparse", action="store_true")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--barrier")
    return parser.parse_args(argv)


def main(side: Side, argv: list[str] | None = None) -> int:
    """Run one operation with ``side`` and print ``RESULT {json}``; a failure is one line on stderr, exit 1."""
    args = parse(sys.argv[1:] if argv is None else argv)
    tmp = Path(args.config["tmp"]) / f"{side.label}-{args.operation}-{os.getpid()}"
    try:
        if args.operation == "prepare":
            result = side.prepare(args.config)
        elif args.operation == "cleanup":
            drop_database(args.config)
            result = {"objects_removed": delete_bucket(args.config)}
        else:
            side.open(args.config)
            result = side.describe() if args.operation == "describe" else OPERATIONS[args.operation](side, args, tmp)
    except Exception as err:  # noqa: BLE001 -- the driver shows this one line and the log keeps the traceback
        traceback.print_exc()
        log(side.label, f"FAILED {args.operation}: {_one_line(err)}")
        return 1
    finally:
        remove_tree(tmp)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def remove_tree(path: Path) -> None:
    """Remove a file or folder, read-only ones too (registries make their copies read-only)."""
    import shutil

    if path.is_file() or path.is_symlink():
        path.unlink()
    elif path.exists():
        for folder, dirs, _files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(folder, d), 0o755)
            os.chmod(folder, 0o755)
        shutil.rmtree(path, ignore_errors=True)
