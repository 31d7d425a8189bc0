"""AZUREML_DEBUG_PORT: a real debugger session, driven the way VS Code drives it.

The test plays the IDE: it starts debugpy's own adapter, asks it (over the Debug Adapter Protocol)
to listen for the debuggee, starts the server with AZUREML_DEBUG_PORT, sets a breakpoint in `run()`,
and sees a request stop there and continue.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

SCRIPT = """\
def init():
    global prefix
    prefix = "scored: "

def run(raw_data):
    answer = prefix + raw_data
    return answer
"""
BREAK_LINE = 6  # `answer = prefix + raw_data`


class DapClient:
    """The IDE's side of the Debug Adapter Protocol, talking to `python -m debugpy.adapter` over stdio."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "debugpy.adapter"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.seq = 0
        self.messages: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return
            self.messages.put(json.loads(stream.read(length)))

    def send(self, command: str, **arguments) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()
        return self.seq

    def wait(self, kind: str, name: str, timeout: float = 30) -> dict:
        """The next event or response named `name` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if message.get("type") == kind and name in (message.get("event"), message.get("command")):
                return message
        raise AssertionError(f"no {kind} {name!r} from the debug adapter within {timeout} s")

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


def listening(port: int) -> bool:
    return any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp"))


@pytest.fixture
def ide():
    client = DapClient()
    yield client
    client.close()


def test_a_debugger_attaches_before_init_and_a_breakpoint_in_run_stops_a_request(tmp_path, serve, ide, app_with, free_port):
    app = app_with(tmp_path, SCRIPT)
    debug_port = free_port()
    ide.send("initialize", clientID="mlmagics-test", adapterID="debugpy", pathFormat="path", linesStartAt1=True)
    ide.wait("response", "initialize")
    ide.send("attach", listen={"host": "127.0.0.1", "port": debug_port}, justMyCode=True)
    deadline = time.monotonic() + 20
    while not listening(debug_port) and time.monotonic() < deadline:
        time.sleep(0.1)

    server = serve(app, ready=False, env={"AZUREML_DEBUG_PORT": str(debug_port)})
    ide.wait("event", "initialized")  # the server connected; until configurationDone, init() waits
    with pytest.raises(requests.RequestException):
        requests.get(server.url + "/ready", timeout=0.5)
    breakpoints = ide.send("setBreakpoints", source={"path": str(app / "score.py")}, breakpoints=[{"line": BREAK_LINE}])
    assert ide.wait("response", "setBreakpoints")["request_seq"] == breakpoints
    ide.send("configurationDone")
    ide.wait("response", "configurationDone")
    assert server.wait_ready()["status"] == "Ready"

    answers: list[requests.Response] = []
    request = threading.Thread(target=lambda: answers.append(server.post(data="hello")))
    request.start()
    stopped = ide.wait("event", "stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    ide.send("stackTrace", threadId=stopped["body"]["threadId"])
    top = ide.wait("response", "stackTrace")["body"]["stackFrames"][0]
    assert (top["name"], Path(top["source"]["path"]).name, top["line"]) == ("run", "score.py", BREAK_LINE)
    assert not answers  # the request is held at the breakpoint
    ide.send("continue", threadId=stopped["body"]["threadId"])
    request.join(30)
    assert answers[0].status_code == 200 and answers[0].json() == "scored: hello"
    logs = [r["msg"] for r in server.log_records()]
    assert (
        f"AZUREML_DEBUG_PORT is set: connecting to the debugger at 127.0.0.1:{debug_port}; init() waits for it "
        "(never set it in production)" in logs
    )
    assert "debugger attached" in logs


def test_without_a_listening_debugger_or_debugpy_the_server_says_what_to_do(tmp_path, serve, app_with, free_port):
    app = app_with(tmp_path, SCRIPT)
    nobody = serve(app, env={"AZUREML_DEBUG_PORT": str(free_port())})
    failed = nobody.get("/ready").json()
    assert failed["stage"] == "debugger"
    assert failed["message"].startswith("cannot connect to the debugger at 127.0.0.1:")
    assert failed["message"].endswith("Start the IDE's listening debug configuration first.")

    shadow = tmp_path / "no-debugpy" / "debugpy"  # debugpy made unimportable, as in an image without it
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named debugpy')\n")
    missing = serve(app, env={"AZUREML_DEBUG_PORT": "5678", "PYTHONPATH": f"{shadow.parent}:{Path(__file__).parents[2]}"})
    assert missing.get("/ready").json()["message"] == (
        "AZUREML_DEBUG_PORT is set but debugpy is not installed: add debugpy to the environment, or unset AZUREML_DEBUG_PORT"
    )
    assert missing.post(data="x").status_code == 503  # the server stays up and says why
