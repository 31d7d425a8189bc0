"""A listening socket handed over by a holder process (serving/listener.py): two servers of different
versions accept on it in turn, so the address never changes and no request is lost — the Docker
target's updates rest on this. Real processes and real HTTP; no Docker needed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from mlmagics.serving.listener import ListenerUnavailable, receive

VERSIONED = """
import time
VERSION = {version!r}

def init():
    time.sleep(0.3)
    if VERSION == "broken":
        raise RuntimeError("the new model does not load")

def run(raw_data):
    return VERSION
"""


@pytest.fixture
def holder(tmp_path, free_port):
    """A holder of 127.0.0.1:<port>; yields (port, socket path)."""
    yield from hold(str(tmp_path / "listener.sock"), free_port())


def hold(path: str, port: int):
    process = subprocess.Popen(
        [sys.executable, "-m", "mlmagics.serving.listener", "hold", "--host", "127.0.0.1", "--port", str(port), "--socket", path],
        stdout=subprocess.PIPE,
    )
    try:  # a failed assertion (here, or in a test's `for ... in hold(...)` body) must not leave the holder running
        deadline = time.monotonic() + 10
        while not Path(path).exists():
            assert time.monotonic() < deadline and process.poll() is None, "the holder did not start"
            time.sleep(0.02)
        yield port, path
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def start_server(tmp_path, serve, app_with):
    """`start_server(name, version, socket_path, port, **env)`: a server of VERSIONED in tmp_path/name that takes its
    listening socket from the holder; returns (server, its state file)."""

    def start(name: str, version: str, socket_path: str, port: int, **env):
        app = app_with(tmp_path / name, VERSIONED.format(version=version))
        state = app / "state.json"
        server = serve(app, ready=False, env=env, extra_args=["--listen-from", socket_path, "--state-file", str(state)])
        server.url = f"http://127.0.0.1:{port}"  # the holder's port, not one of its own
        return server, state

    return start


def wait_state(state_file: Path, done, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads(state_file.read_text())
            if done(state):
                return state
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{state_file} never reached the expected state")


def ready(state: dict) -> bool:
    return bool(state["workers"]) and all(w == "ready" for w in state["workers"].values())


class Load:
    def __init__(self, url: str) -> None:
        self.answers: list = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,))
        self.thread.start()

    def _run(self, url: str) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            try:
                r = session.post(url + "/score", data="{}", timeout=10)
                self.answers.append(r.json() if r.status_code == 200 else r.status_code)
            except requests.RequestException as e:
                self.answers.append(type(e).__name__)

    def stop(self) -> list:
        self.stop_event.set()
        self.thread.join()
        return self.answers


def test_two_versions_hand_the_same_socket_over_without_losing_a_request(start_server, holder):
    port, path = holder
    first, first_state = start_server("a", "v1", path, port)
    wait_state(first_state, ready)
    load = Load(first.url)
    second, second_state = start_server("b", "v2", path, port)
    wait_state(second_state, ready)
    assert first.stop() == 0, "the old version drains and exits"
    time.sleep(0.3)
    answers = load.stop()
    assert set(answers) == {"v1", "v2"}, Counter(answers)
    assert answers[0] == "v1" and answers[-1] == "v2"
    assert second.post(data="{}").json() == "v2", "the same address, now the new version"


def test_a_new_version_whose_init_fails_takes_no_request_from_the_running_one(start_server, holder):
    port, path = holder
    first, first_state = start_server("a", "v1", path, port)
    wait_state(first_state, ready)
    load = Load(first.url)
    broken, broken_state = start_server("b", "broken", path, port, MLMAGICS_SERVE_INIT_FAILURE="false")
    state = wait_state(broken_state, lambda s: s.get("init_failure"))
    assert "the new model does not load" in state["init_failure"]["message"]
    time.sleep(1.0)  # it stays up, with its failure on record, and accepts nothing
    assert broken.process.poll() is None
    answers = load.stop()
    assert set(answers) == {"v1"}, Counter(answers)


def test_without_a_holder_the_server_says_so():
    with pytest.raises(ListenerUnavailable, match="no listening socket handed over at /nonexistent/listener.sock"):
        receive("/nonexistent/listener.sock", timeout=0.3)


def test_only_the_holders_own_user_may_ask_for_the_socket(free_port):
    """Whoever connects gets the listening socket: the hand-over socket is 0600, never world-writable."""
    import os
    import shutil
    import stat
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mlmagics-listener-"))
    folder.chmod(0o755)  # others may reach the folder: only the socket's own mode keeps them out
    try:
        for port, path in hold(str(folder / "listener.sock"), free_port()):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert receive(path, timeout=2).getsockname()[1] == port, "its own user gets the socket"
            system_python = shutil.which("python3", path="/usr/bin:/bin")  # the venv's may live where nobody can read
            if os.geteuid() == 0 and system_python:  # another user: only root can switch to one here
                asks = subprocess.run(
                    [system_python, "-c", f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"],
                    user=65534, group=65534, capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                assert asks.returncode != 0 and "PermissionError" in asks.stderr, asks.stderr
    finally:
        shutil.rmtree(folder)
