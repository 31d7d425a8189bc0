"""The Docker engine the Docker target talks to, and the settings it reads.

    client = engine()           # docker.DockerClient; TargetUnavailable with one line if there is none

| setting | environment variable | default |
| --- | --- | --- |
| engine | `DOCKER_HOST` (the docker CLI's) | `unix:///var/run/docker.sock` |
| base image | `MLMAGICS_BASE_IMAGE` | `python:<the notebook's Python>-slim`, e.g. `python:3.11-slim` |
| image repository | `MLMAGICS_IMAGE_REPO` | `mlmagics` (images are tagged `mlmagics/<name>:<version>`) |

A base image given to `image_configuration(base_image=...)` or `DockerWebservice.build_image(image, base_image=...)`
wins over the environment variable. The base image needs `python3` with `venv` and
pip >= 22.3 (every official Python image has them; on Debian, `python3-venv python3-pip`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from ...errors import TargetUnavailable

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
LABEL = "org.mlmagics"  # prefix of every label mlmagics puts on images, containers and volumes


def sdk() -> Any:
    """The Docker SDK for Python, imported on first use: the rest of mlmagics need not wait for it, and
    without the docker extra it is not there at all (every path to it goes through here or engine())."""
    try:
        import docker
    except ImportError:
        raise TargetUnavailable("the docker target needs the Docker SDK for Python: pip install 'mlmagics[docker]'") from None
    return docker


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def engine(timeout: int = 120) -> Any:
    """A connected `docker.DockerClient`; raises TargetUnavailable with what to do when there is no engine
    (or no SDK). The other modules of this target use the SDK only after this succeeded."""
    docker = sdk()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # noqa: BLE001 - every failure to connect means the same thing to the user
        raise TargetUnavailable(
            f"no Docker engine at {engine_url()}: start dockerd (or Docker Desktop) or set DOCKER_HOST"
        ) from None
    global _bridge_checked
    if not _bridge_checked and engine_url() == DEFAULT_ENGINE:
        _bridge_checked = True
        if bridge_address_unstable():
            warnings.warn(BRIDGE_WARNING, stacklevel=2)
    return client


_bridge_checked = False
BRIDGE_WARNING = (
    "docker0's MAC address is not fixed on this host, so it changes whenever a container starts or stops, "
    "and open connections to services can stall for seconds meanwhile. Fix it once, as root: "
    "ip link set docker0 address 02:42:ac:11:00:01"
)


def bridge_address_unstable(device: Path = Path("/sys/class/net/docker0")) -> bool:
    """Whether the local engine's bridge takes its MAC from its ports (the kernel's default unless one was set):
    then every container that starts or stops can move it, and containers keep sending to the old one."""
    try:
        return (device / "addr_assign_type").read_text().strip() != "3"  # 3: NET_ADDR_SET, set by someone
    except OSError:
        return False  # no such bridge here (Docker Desktop, a remote engine)


def base_image(python: str, requested: str | None = None) -> str:
    """The image builds start FROM: the one requested, else $MLMAGICS_BASE_IMAGE, else python:<python>-slim."""
    return requested or os.environ.get("MLMAGICS_BASE_IMAGE") or f"python:{python}-slim"


@contextmanager
def engine_errors(doing: str) -> Iterator[None]:
    """The engine going away in the middle of `doing` (a restart, a crash) as one TargetUnavailable line;
    the SDK would raise its connection pool's exceptions, a traceback that names no engine."""
    try:
        yield
    except requests.exceptions.HTTPError:  # docker.errors.APIError: the engine answered, the caller reads its answer
        raise
    except requests.exceptions.RequestException as e:  # ConnectionError, a stream cut short, a read timeout
        raise TargetUnavailable(f"the Docker engine at {engine_url()} stopped answering while {doing} ({_cause(e)})") from None


def _cause(error: BaseException) -> str:
    """The innermost reason of a transport error ('No such file or directory', 'Connection refused', ...)."""
    seen = {id(error)}
    while True:  # requests wraps urllib3's errors, which wrap the OSError, in args or .reason
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    return getattr(error, "strerror", None) or " ".join(str(error).split()) or type(error).__name__


def wait_for_engine(seconds: float) -> bool:
    """Whether the engine answers within `seconds` (it may be restarting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            engine(timeout=5)
            return True
        except TargetUnavailable:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def short_error(error: Exception) -> str:
    """The engine's own explanation of an API error, on one line."""
    explanation = getattr(error, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else explanation or str(error)
    return " ".join(str(text).split())
