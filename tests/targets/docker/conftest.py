"""The Docker target's tests run on a real engine (`docker_engine`, tests/conftest.py), with images built FROM
the local test base image and tagged in this run's own repository; test_units.py needs no engine."""

from __future__ import annotations

import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import requests

from mlmagics.core import Image, Webservice, Workspace


def _remove_workspace(client, workspace: Workspace) -> None:
    for service in Webservice.list(workspace):
        service.delete()
    for image in Image.list(workspace):
        image.delete()
    leftovers = {"label": f"org.mlmagics.workspace={workspace.path}"}
    for container in client.containers.list(all=True, filters=leftovers):
        container.remove(force=True)
    for volume in client.volumes.list(filters=leftovers):  # collected data outlives its service: not a test's
        volume.remove(force=True)


@pytest.fixture(scope="session")
def remove_workspace():
    """`remove_workspace(client, workspace)`: delete a test workspace's services (and their collected data) and
    images, then whatever a test that failed half-way left on the engine under the workspace's label."""
    return _remove_workspace


@pytest.fixture(scope="module")
def docker_client(docker_engine, image_repo):
    """The engine's client; for the module, images build FROM the test base image (MLMAGICS_BASE_IMAGE) and are
    tagged in this run's repository (MLMAGICS_IMAGE_REPO)."""
    client, base = docker_engine
    patch = pytest.MonkeyPatch()
    patch.setenv("MLMAGICS_BASE_IMAGE", base)
    patch.setenv("MLMAGICS_IMAGE_REPO", image_repo)
    yield client
    patch.undo()


@pytest.fixture(scope="module")
def docker_ws(docker_client, tmp_path_factory):
    """The module's workspace: its services, images, containers and volumes are removed from the engine after its
    last test."""
    workspace = Workspace(tmp_path_factory.mktemp("docker") / "ws")
    yield workspace
    _remove_workspace(docker_client, workspace)


class AuthRegistry:
    """Debian's docker-registry on a free 127.0.0.1 port with htpasswd (bcrypt) users; stop() ends it."""

    def __init__(self, folder: Path, user: str, password: str, port: int, unavailable) -> None:
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
        self.address = f"127.0.0.1:{port}"
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


@pytest.fixture
def auth_registry(free_port, unavailable):
    """`auth_registry(folder, user, password)`: a registry that asks for that user's password; stopped afterwards."""
    started: list[AuthRegistry] = []

    def start(folder: Path, user: str, password: str) -> AuthRegistry:
        started.append(AuthRegistry(folder, user, password, free_port(), unavailable))
        return started[-1]

    yield start
    for registry in started:
        registry.stop()
