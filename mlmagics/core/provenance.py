"""Who made a model, image or service, and from where: recorded with each, shown by every face.

    created_by()   # {'user': 'ana', 'host': 'ana-laptop', 'source': 'train.ipynb', 'ci': ''}

In a team's workspace this answers "whose is this, and can I operate it from here?".
"""

from __future__ import annotations

import getpass
import inspect
import os
import socket
import sys
from pathlib import Path
from typing import Any

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
# CI systems' variables for "this job": the first one set wins
_CI_JOBS = (
    ("GITHUB_RUN_ID", lambda e: f"GitHub Actions {e.get('GITHUB_WORKFLOW', '')} run {e['GITHUB_RUN_ID']}"),
    ("CI_JOB_ID", lambda e: f"GitLab CI {e.get('CI_PROJECT_PATH', '')} job {e['CI_JOB_ID']}"),
    ("BUILD_BUILDID", lambda e: f"Azure Pipelines {e.get('BUILD_DEFINITIONNAME', '')} build {e['BUILD_BUILDID']}"),
    ("BUILD_TAG", lambda e: f"Jenkins {e['BUILD_TAG']}"),
    ("MLMAGICS_CI_JOB", lambda e: e["MLMAGICS_CI_JOB"]),
)


MAX_FIELD = 500  # characters of each field: the environment and the caller's `source` are unbounded


def created_by(source: str | None = None) -> dict[str, str]:
    """The user, the host, the notebook or file, and the CI job (if any) of what is being made now."""
    record = {"user": _user(), "host": socket.gethostname(), "source": source or detect_source(), "ci": ci_job()}
    return {key: str(value)[:MAX_FIELD] for key, value in record.items()}


def describe(record: dict[str, Any] | None) -> str:
    """'ana@ana-laptop (train.ipynb)' or 'ci@runner-3 (GitHub Actions … run 42)'; '' when nothing was recorded."""
    if not record or not record.get("user"):
        return ""
    where = record.get("ci") or record.get("source") or ""
    return f"{record['user']}@{record.get('host', '?')}" + (f" ({where})" if where else "")


def ci_job() -> str:
    env = os.environ
    for variable, describe_job in _CI_JOBS:
        if env.get(variable):
            return " ".join(describe_job(env).split())
    return "CI" if env.get("CI", "").lower() in ("true", "1") else ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's user), and no $USER
        return f"uid {os.getuid()}"


def detect_source() -> str:
    """Where a registration came from: the notebook when known, else the calling file."""
    for var in ("MLMAGICS_SOURCE", "JPY_SESSION_NAME"):
        if os.environ.get(var):
            return os.environ[var]
    if "IPython" in sys.modules:
        shell = sys.modules["IPython"].get_ipython()
        if shell is not None:
            for key in ("__vsc_ipynb_file__", "__session__"):
                if shell.user_ns.get(key):
                    return str(shell.user_ns[key])
            return "notebook or IPython session"
    for frame in inspect.stack()[2:]:
        filename = frame.filename
        if not filename.startswith(_PACKAGE_DIR) and not filename.startswith("<"):
            return filename
    return "unknown"
