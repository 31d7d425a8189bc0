"""What the benchmark drivers share: one-line failures, progress on stderr, how a run ends, venvs, the machine.

Every ``*_bench.py`` imports it (``benchmarks/`` is on their ``sys.path``), and so do ``servebench`` and
``batchbench`` (the environment, the venvs, ``git archive``, BenchError). Standard library only, like the drivers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PROJECT_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


class BenchError(RuntimeError):
    """A precondition or a step failed; the message is one line telling what (and what to do)."""


def logger(name: str) -> Callable[[str], None]:
    """``log(message)`` for the driver ``name``: progress on stderr, so stdout carries only the report."""

    def log(message: str) -> None:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)

    return log


# -- how a run ends -----------------------------------------------------------------------------------------
def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def ends_in_one_line(name: str, stopped: str, failures: Mapping[type[Exception], tuple[int, str]]) -> Iterator[None]:
    """The run inside: SIGTERM/SIGHUP become SystemExit, so every ``finally`` stops what it started; an exception
    in ``failures`` (→ exit code, the words before its message) or Ctrl-C (130, then ``stopped``) ends the program
    with one line on stderr."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        yield
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {stopped}", file=sys.stderr)
        raise SystemExit(130) from None
    except tuple(failures) as err:
        code, words = next(ending for kind, ending in failures.items() if isinstance(err, kind))
        print(f"{name}: {words}{err}", file=sys.stderr)
        raise SystemExit(code) from None


def publish(markdown: str, out: Path, log: Callable[[str], None]) -> None:
    """The report on stdout and in ``out``."""
    print(markdown)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n")
    log(f"report written to {out}")


# -- other processes -----------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without venv/PYTHONPATH leftovers, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(extra)
    return env


def run_json(cmd: list[str], what: str, timeout: float = 300) -> Any:
    """Run ``cmd`` (in a clean environment) and decode the JSON it prints; a failure is a BenchError naming ``what``
    and the last line of its stderr."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"{what} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout)


def ensure_venv(
    venv: Path, requirements: list[str], base_python: str, log_path: Path, what: str, log: Callable[[str], None]
) -> Path:
    """Create ``venv`` from ``base_python`` holding ``requirements`` (once: a stamp file records what it holds,
    the text of the files named with ``-r`` included, so an edit to them reinstalls). Returns its python; pip's
    output goes to ``log_path``."""
    python = venv / "bin" / "python"
    stamp = venv / "bench-requirements.txt"
    files = [requirements[i + 1] for i, arg in enumerate(requirements[:-1]) if arg == "-r"]
    wanted = "\n".join(requirements) + "".join(Path(f).read_text() for f in files) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"installing {what} into {venv} (once; pip log {log_path})")
    with log_path.open("w") as out:
        if not python.exists():
            # From the project venv's interpreter where given, so a pickled model loads the same way.
            subprocess.run([base_python, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements]
        done = subprocess.run(pip, check=False, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), timeout=1800)
    if done.returncode != 0:
        raise BenchError(f"pip install into {venv} failed ({done.returncode}); see {log_path}")
    stamp.write_text(wanted)
    return python


def export_package(repo: Path, revision: str, dest: Path) -> Path:
    """``mlmagics/`` as committed at ``revision``, extracted into ``dest`` (``git archive``: the repository is only
    read, and edits made meanwhile do not leak in); returns ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision, "mlmagics"], cwd=repo, capture_output=True, timeout=60, check=False)
    if archive.returncode != 0:
        raise BenchError(f"git archive {revision} failed: {archive.stderr.decode(errors='replace').strip()[-200:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # git's own archive, still kept inside dest where Python has extraction filters (3.11.4 on)
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


# -- the machine ---------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU count and model, and the platform, for a report's setup section."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "platform": platform.platform()}


# -- the wrk benchmarks (serving_bench.py, batching_bench.py) -----------------------------------------------
def add_load_options(parser: argparse.ArgumentParser, workers: int) -> None:
    """--workers, --duration, --repeat and --no-pin: how the servers run and wrk loads them."""
    parser.add_argument("--workers", type=int, default=workers, help=f"worker processes of every server (default {workers})")
    parser.add_argument("--duration", type=float, help="seconds per measured run (overrides --quick/default)")
    parser.add_argument(
        "--repeat",
        type=int,
        help="measured runs per case and server, servers taking turns; the report shows medians (default 3, --quick 1)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin wrk (taskset -c 0) and the servers (taskset -c 1…) to separate CPUs",
    )


def check_load_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What add_load_options added must be positive."""
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be more than 0")


def load_timings(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per measured run, warm-up, repeats and the in-process loop's length, from --quick and the options."""
    return {
        "seconds": args.duration or (2 if args.quick else 5),
        "warmup": 1,
        "repeat": args.repeat or (1 if args.quick else 3),
        "inprocess_s": 1.0 if args.quick else 3.0,
    }


def preflight(args: argparse.Namespace) -> None:
    """Fail early, in one line, on anything a wrk benchmark needs and this machine lacks."""
    if not shutil.which("wrk"):
        raise BenchError("wrk not found on PATH (apt-get install wrk)")
    if not args.python.exists():
        raise BenchError(f"project python {args.python} not found (create the venv or pass --python)")
    if args.pin and not shutil.which("taskset"):
        raise BenchError("taskset not found on PATH (apt-get install util-linux) or pass --no-pin")


def wrk_machine(envs: dict[str, Any]) -> dict[str, Any]:
    """machine(), this driver's Python, wrk's version and the package versions of each venv."""
    wrk_version = (
        subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False).stdout.split()
        if shutil.which("wrk")
        else []  # a run without load (batching_bench.py --instructions-only) needs no wrk
    )
    return {
        **machine(),
        "python": platform.python_version(),
        "wrk": wrk_version[1] if len(wrk_version) > 1 else "?",
        "envs": envs,
    }
