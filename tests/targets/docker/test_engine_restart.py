"""dockerd restarted in the middle of a deploy: one clear line, a Failed record, nothing left on the engine.

This test stops the Docker daemon for real, so it stops every container on the engine for a few seconds.
It is alone in its module; it runs only as root on the local engine, and outside CI only when no other
container is running (someone else's tests); and it puts the daemon back the way .ci/services.sh starts
it (`setsid -w dockerd`, log in /tmp/mlmagics-dockerd.log) even when it fails. The registry on
127.0.0.1:5000 is a host process (.ci/services.sh), untouched by a dockerd restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mlmagics.core import DockerWebservice, Recorder, TargetUnavailable, Webservice, Workspace
from mlmagics.core.targets.docker.engine import DEFAULT_ENGINE, bridge_address_unstable, engine, engine_url, wait_for_engine

DOCKERD_LOG = Path("/tmp/mlmagics-dockerd.log")  # where .ci/services.sh logs the daemon it starts
BRIDGE = Path("/sys/class/net/docker0")


class Dockerd:
    """The local Docker daemon, stopped and started as .ci/services.sh does."""

    @staticmethod
    def pid() -> int | None:
        found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
        return int(found[0]) if len(found) == 1 else None

    def stop(self) -> None:
        pid = self.pid()
        assert pid, "no dockerd to stop"
        os.kill(pid, signal.SIGTERM)  # it stops its containers, then exits
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, "dockerd did not stop within 60 s"
            time.sleep(0.1)

    def start(self) -> None:
        if wait_for_engine(0):
            return
        if self.pid() is None:
            with DOCKERD_LOG.open("a") as log:
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                log.write(f"=== started by tests/targets/docker/test_engine_restart.py at {now}\n")  # as .ci/services.sh marks it
                log.flush()
                # setsid: its own session, so the daemon outlives this test run (as the one .ci/services.sh starts)
                subprocess.Popen(["setsid", "-w", "dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)  # fmt: skip
        assert wait_for_engine(60), f"dockerd did not answer within 60 s; see {DOCKERD_LOG}"


@pytest.fixture
def dockerd(tmp_path, docker_engine, image_repo, remove_workspace, unavailable):
    client, base = docker_engine
    if os.geteuid() != 0 or engine_url() != DEFAULT_ENGINE or Dockerd.pid() is None:
        unavailable("restarting dockerd needs root and the local engine, started as .ci/services.sh does")
    running = client.containers.list()
    if running and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"{len(running)} other containers run on this engine; restarting dockerd would stop them")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLMAGICS_BASE_IMAGE", base)
    patch.setenv("MLMAGICS_IMAGE_REPO", image_repo)
    daemon = Dockerd()
    ws = Workspace(tmp_path / "ws")
    try:
        yield daemon, ws
    finally:
        daemon.start()  # whatever happened, the engine is back for whoever comes next
        remove_workspace(engine(), ws)  # a new client: the engine restarted
        patch.undo()


class RestartAfterThePortHolder(Recorder):
    """Stops dockerd right after the port holder started, before the server container exists, and starts it
    again a second later: the deploy's next call finds no engine."""

    def __init__(self, daemon: Dockerd) -> None:
        super().__init__()
        self.daemon = daemon
        self.restarter: threading.Thread | None = None

    def log(self, line: str) -> None:
        super().log(line)
        if line.startswith("port holder ") and self.restarter is None:
            self.daemon.stop()
            self.restarter = threading.Thread(target=lambda: (time.sleep(1), self.daemon.start()))
            self.restarter.start()


def test_dockerd_restarted_during_a_deploy_is_one_line_and_leaves_nothing_behind(dockerd, tmp_path, echo_image):
    daemon, ws = dockerd
    image = echo_image(ws, tmp_path / "app")
    DockerWebservice.build_image(image)
    mac = (BRIDGE / "address").read_text().strip() if BRIDGE.exists() else None
    progress = RestartAfterThePortHolder(daemon)
    started = time.monotonic()
    with pytest.raises(TargetUnavailable) as info:
        Webservice.deploy_from_image(ws, "restarted", image, DockerWebservice.deploy_configuration(), progress=progress)
    took = time.monotonic() - started
    progress.restarter.join()
    message = str(info.value)
    print(f"the deploy failed after {took:.1f} s: {message}")
    assert "\n" not in message, "one line, not a traceback of the docker SDK"
    assert message.startswith(f"the Docker engine at {DEFAULT_ENGINE} stopped answering while deploying restarted (")
    assert any("waiting" in line and "to remove what was started" in line for line in progress.lines), progress.lines

    client = engine()  # a new client: the engine restarted
    mine = {"label": [f"org.mlmagics.workspace={ws.path}", "org.mlmagics.service=restarted"]}
    assert client.containers.list(all=True, filters=mine) == [], "the port holder did not come back with the engine"
    assert client.volumes.list(filters=mine) == []
    record = Webservice(ws, "restarted")
    assert (record.state, record.error) == ("Failed", message)
    if mac is not None:  # .ci/services.sh's fix of docker0's address survives a dockerd restart
        assert not bridge_address_unstable() and (BRIDGE / "address").read_text().strip() == mac

    record.delete()  # the name can be used again, and the engine serves as before
    again = Webservice.deploy_from_image(ws, "restarted", image, DockerWebservice.deploy_configuration())
    again.wait_for_deployment()
    assert again.run("{}")["version"] == "v1"
