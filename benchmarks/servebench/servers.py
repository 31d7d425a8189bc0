"""How each server under test is installed and started, and the package versions in play."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFERENCE_PIN = "azureml-inference-server-http==1.5.1"
SCHEMA_PIN = "inference-schema[numpy-support]==1.8"
# Versions shown in the report, per environment.
REFERENCE_PACKAGES = (
    "azureml-inference-server-http",
    "gunicorn",
    "flask",
    "inference-schema",
    "scikit-learn",
    "numpy",
)
PROJECT_PACKAGES = (
    "mlmagics",
    "httptools",
    "uvloop",
    "scikit-learn",
    "numpy",
    "joblib",
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


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without venv/PYTHONPATH leftovers, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(extra)
    return env


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


def reference_requirements(project: dict[str, Any]) -> list[str]:
    """The reference venv's pins: the server, inference-schema, and the project's model stack."""
    return [REFERENCE_PIN, SCHEMA_PIN] + [f"{name}=={project[name]}" for name in ("scikit-learn", "numpy", "joblib")]


def _reference_matches(python: Path, requirements: list[str]) -> bool:
    """Whether the venv at ``python`` already holds exactly the pinned versions."""
    if not python.exists():
        return False
    pins = dict(req.replace("[numpy-support]", "").split("==") for req in requirements)
    try:
        installed = versions(python, tuple(pins))
    except (subprocess.SubprocessError, OSError, json.JSONDecodeError):
        return False
    return all(installed.get(name) == version for name, version in pins.items())


def ensure_reference_venv(venv: Path, project: dict[str, Any], log_path: Path) -> Path:
    """Create/refresh ``venv`` with the reference server; return its python. pip output goes to ``log_path``."""
    python = venv / "bin" / "python"
    requirements = reference_requirements(project)
    if _reference_matches(python, requirements):
        return python
    print(
        f"serving_bench: installing the reference server into {venv} (once; pip log {log_path})",
        file=sys.stderr,
    )
    with log_path.open("w") as log:
        if not python.exists():
            # Same interpreter as the project venv, so the pickled model loads the same way.
            subprocess.run(
                [project["base"], "-m", "venv", str(venv)],
                check=True,
                stdout=log,
                stderr=log,
            )
        pip = [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            *requirements,
        ]
        done = subprocess.run(
            pip,
            check=False,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            timeout=1800,
        )
    if done.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed ({done.returncode}); see {log_path}")
    return python


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
    """``python -m mlmagics.serving`` from the checkout, auth on, metrics and request logging at their defaults."""
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
