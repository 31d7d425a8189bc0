"""How each server under test is installed and started, and the package versions in play."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import BENCH_DIR, REPO_ROOT, clean_env, ensure_venv

REFERENCE_PIN = "azureml-inference-server-http==1.5.1"
SCHEMA_PIN = "inference-schema[numpy-support]==1.8"
RUNTIME_REQUIREMENTS = REPO_ROOT / "mlmagics" / "serving" / "requirements.txt"
# Versions shown in the report, per environment.
REFERENCE_PACKAGES = (
    "azureml-inference-server-http",
    "gunicorn",
    "flask",
    "inference-schema",
    "scikit-learn",
    "numpy",
    "joblib",
    "pandas",
)
PROJECT_PACKAGES = ("mlmagics", "scikit-learn", "numpy", "joblib", "pandas")
RUNTIME_PACKAGES = (
    "httptools",
    "uvloop",
    "prometheus-client",
    "werkzeug",
    "inference-schema",
    "scikit-learn",
    "numpy",
    "joblib",
    "pandas",
)

_VERSIONS_CODE = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "base": sys._base_executable}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def versions(python: Path, packages: tuple[str, ...]) -> dict[str, Any]:
    """Python version, base interpreter and installed versions of ``packages`` for ``python``."""
    done = subprocess.run(
        [str(python), "-c", _VERSIONS_CODE, *packages],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
        timeout=60,
    )
    return json.loads(done.stdout)


def model_stack(project: dict[str, Any]) -> list[str]:
    """What both servers' venvs share: inference-schema and the project's model stack, pinned alike."""
    return [SCHEMA_PIN] + [f"{name}=={project[name]}" for name in ("scikit-learn", "numpy", "joblib")]


def reference_venv(project: dict[str, Any], log_path: Path, log: Callable[[str], None]) -> Path:
    """``benchmarks/.venv-reference`` (created once): the reference server and the shared model stack."""
    requirements = [REFERENCE_PIN, *model_stack(project)]
    return ensure_venv(BENCH_DIR / ".venv-reference", requirements, project["base"], log_path, "the reference server", log)


def runtime_venv(project: dict[str, Any], log_path: Path, log: Callable[[str], None]) -> Path:
    """``benchmarks/.venv-mlmagics`` (created once), as a deployed image has it: the runtime's own requirements and
    the shared model stack; the runtime itself comes from a checkout on PYTHONPATH.

    Not the project venv: that one holds Jupyter, pandas and the rest, and scikit-learn imports
    pandas whenever it is installed (0.2-0.4 s of cold start here) — a cost neither server's image has.
    """
    requirements = ["-r", str(RUNTIME_REQUIREMENTS), *model_stack(project)]
    return ensure_venv(
        BENCH_DIR / ".venv-mlmagics", requirements, project["base"], log_path, "the mlmagics runtime's requirements", log
    )


def mlmagics_missing(python: Path, repo_root: Path) -> str | None:
    """None if ``python -m mlmagics.serving`` can be found, else a one-line reason."""
    code = "import importlib.util as u; print(bool(u.find_spec('mlmagics.serving.__main__')))"
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(repo_root)),
        cwd=repo_root,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"importing mlmagics.serving with {python} failed: {last}"
    if done.stdout.strip() != "True":
        return f"no mlmagics.serving.__main__ (expected {repo_root / 'mlmagics/serving/__main__.py'})"
    return None


@dataclass
class ServerSpec:
    """Everything needed to start one server and talk to it."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    script: str = "sklearn"

    @property
    def label(self) -> str:
        """``server/script``, for logs and error messages."""
        return f"{self.name}/{self.script}"

    @property
    def score_url(self) -> str:
        """Where wrk sends its POSTs."""
        return f"http://127.0.0.1:{self.port}/score"


def reference_spec(python: Path, app: dict[str, Any], port: int, workers: int, log_path: Path) -> ServerSpec:
    """``azmlinfsrv`` (gunicorn + Flask) with the shim on PYTHONPATH and WORKER_COUNT workers."""
    azmlinfsrv = python.parent / "azmlinfsrv"
    env = clean_env(
        AZUREML_MODEL_DIR=app["model_dir"],
        PYTHONPATH=app["shim_dir"],
        WORKER_COUNT=str(workers),
        AML_APP_ROOT=app["app_root"],
    )
    return ServerSpec(
        name="reference",
        command=[
            str(azmlinfsrv),
            "--entry_script",
            app["score_py"],
            "--port",
            str(port),
        ],
        env=env,
        cwd=Path(app["app_root"]),
        port=port,
        log_path=log_path,
        notes="no auth; logs every request: an azmlinfsrv line plus the gunicorn access log",
    )


def write_service_config(path: Path, primary_key: str, secondary_key: str) -> Path:
    """Write the mlmagics service.json that turns key auth on."""
    config = {
        "auth_enabled": True,
        "primary_key": primary_key,
        "secondary_key": secondary_key,
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def mlmagics_spec(
    python: Path,
    repo_root: Path,
    app: dict[str, Any],
    *,
    port: int,
    workers: int,
    config: Path,
    key: str,
    log_path: Path,
) -> ServerSpec:
    """``python -m mlmagics.serving`` from the checkout, in the runtime venv; auth on, metrics and logging at defaults."""
    env = clean_env(AZUREML_MODEL_DIR=app["model_dir"], PYTHONPATH=str(repo_root))
    command = [
        str(python),
        "-m",
        "mlmagics.serving",
        app["score_py"],
        "--model-dir",
        app["model_dir"],
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--config",
        str(config),
    ]
    return ServerSpec(
        name="mlmagics",
        command=command,
        env=env,
        cwd=Path(app["app_root"]),
        port=port,
        log_path=log_path,
        headers={"Authorization": f"Bearer {key}"},
        notes="key auth on, Bearer primary key on every request; metrics and request logging at defaults",
    )
