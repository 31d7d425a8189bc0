"""The Docker engine the Docker target talks to, and the settings it reads.

    client = engine()           # docker.DockerClient; TargetUnavailable with one line if there is none

| setting | environment variable | default |
| --- | --- | --- |
| engine | `DOCKER_HOST` (the docker CLI's) | `unix:///var/run/docker.sock` |
| base image | `MLMAGICS_BASE_IMAGE` | `python:<the notebook's Python>-slim`, e.g. `python:3.11-slim` |
| image repository | `MLMAGICS_IMAGE_REPO` | `mlmagics` (images are tagged `mlmagics/<name>:<version>`) |

A base image given to `image_configuration(base_image=...)` or `image.build(base_image=...)`
wins over the environment variable. The base image needs `python3` with `venv` and
pip >= 22.3 (every official Python image has them; on Debian, `python3-venv python3-pip`).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import TargetUnavailable

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
LABEL = "org.mlmagics"  # prefix of every label mlmagics puts on images, containers and volumes


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def engine(timeout: int = 120) -> Any:
    """A connected `docker.DockerClient`; raises TargetUnavailable with what to do when there is no engine."""
    try:
        import docker
    except ModuleNotFoundError:
        raise TargetUnavailable("the docker target needs the Python package 'docker': pip install 'docker>=7.0'") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # noqa: BLE001 - every failure to connect means the same thing to the user
        raise TargetUnavailable(
            f"no Docker engine at {engine_url()}: start dockerd (or Docker Desktop) or set DOCKER_HOST"
        ) from None
    return client


def base_image(python: str, requested: str | None = None) -> str:
    """The image builds start FROM: the one requested, else $MLMAGICS_BASE_IMAGE, else python:<python>-slim."""
    return requested or os.environ.get("MLMAGICS_BASE_IMAGE") or f"python:{python}-slim"


def image_repo() -> str:
    return (os.environ.get("MLMAGICS_IMAGE_REPO") or "mlmagics").strip("/")


def short_error(error: Exception) -> str:
    """The engine's own explanation of an API error, on one line."""
    explanation = getattr(error, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else explanation or str(error)
    return " ".join(str(text).split())
