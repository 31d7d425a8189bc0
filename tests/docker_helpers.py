"""What the Docker tests need: a real engine, the locally built base image, a registry on 127.0.0.1.

Docker Hub is unreachable from CI, so builds start FROM `mlmagics/test-base:bookworm`
(`.ci/base-image.sh` builds it; `.ci/services.sh` starts dockerd and the registry). With
CI=true a missing piece fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import requests

TEST_BASE = "mlmagics/test-base:bookworm"
REGISTRY = "127.0.0.1:5000"
# Per test run: two runs on one engine (two engineers, CI and a developer) must not retag each other's images.
TEST_REPO = f"mlmagics-test-{os.getpid()}"


def unavailable(reason: str) -> None:
    """Fail in CI (the machine is set up to have it), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require_engine():
    """A docker client and the base image tests build from (MLMAGICS_BASE_IMAGE or the local test base)."""
    from mlmagics.core import TargetUnavailable
    from mlmagics.core.targets.docker.engine import engine

    try:
        client = engine()
    except TargetUnavailable as e:
        unavailable(f"{e} (sudo bash .ci/services.sh starts one)")
    base = os.environ.get("MLMAGICS_BASE_IMAGE") or TEST_BASE
    try:
        client.images.get(base)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound, imported lazily
        unavailable(f"the base image {base} is not on the engine (sudo bash .ci/base-image.sh builds it)")
    return client, base


def remove_workspace(client, workspace) -> None:
    """Delete a test workspace's services (and their collected data) and images, then whatever a test that failed
    half-way left on the engine under the workspace's label."""
    from mlmagics.core import Image, Webservice

    for service in Webservice.list(workspace):
        service.delete()
    for image in Image.list(workspace):
        image.delete()
    leftovers = {"label": f"org.mlmagics.workspace={workspace.path}"}
    for container in client.containers.list(all=True, filters=leftovers):
        container.remove(force=True)
    for volume in client.volumes.list(filters=leftovers):  # collected data outlives its service: not a test's
        volume.remove(force=True)


def require_registry(address: str = REGISTRY) -> str:
    try:
        requests.get(f"http://{address}/v2/", timeout=3).raise_for_status()
    except requests.RequestException as e:
        unavailable(f"no registry at http://{address}/v2/ ({e}); sudo bash .ci/services.sh starts one")
    return address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AuthRegistry:
    """Debian's docker-registry on a free 127.0.0.1 port with htpasswd (bcrypt) users; stop() ends it."""

    def __init__(self, folder: Path, user: str, password: str) -> None:
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            unavailable("docker-registry is not installed (sudo bash .ci/services.sh installs it)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import crypt
            except ImportError:  # Python 3.13 removed it
                pytest.skip("the crypt module (bcrypt for htpasswd) is not in this Python")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "htpasswd").write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        self.address = f"127.0.0.1:{free_port()}"
        (folder / "config.yml").write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
            f"http: {{addr: {self.address}}}\n"
            f"auth: {{htpasswd: {{realm: mlmagics-test, path: {folder / 'htpasswd'}}}}}\n"
        )
        self._log = open(folder / "registry.log", "wb")
        self.process = subprocess.Popen([binary, "serve", str(folder / "config.yml")], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=1).status_code == 401:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the test registry did not start: {(folder / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
