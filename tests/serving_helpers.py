"""Start the real scoring server as a subprocess on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

SEED = Path(__file__).parent / "seed_scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScoringServer:
    """`python -m mlmagics.serving` in its own process group, stopped by `stop()`."""

    def __init__(
        self,
        app_root: Path,
        script: str = "score.py",
        model_dir: str | None = None,
        config: dict | None = None,
        workers: int = 1,
        env: dict | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.app_root = Path(app_root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.app_root / "server.log"
        args = [sys.executable, "-m", "mlmagics.serving", script, "--port", str(self.port), "--workers", str(workers)]
        if model_dir:
            args += ["--model-dir", model_dir]
        if config is not None:
            config_path = self.app_root / "service.json"
            config_path.write_text(json.dumps(config))
            args += ["--config", str(config_path)]
        args += extra_args or []
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args,
            cwd=self.app_root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> dict:
        """Wait until /ready answers 200 or says init failed; returns its JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.url + "/ready", timeout=2)
                if r.status_code == 200 or r.json().get("status") == "Failed":
                    return r.json()
            except (requests.ConnectionError, requests.Timeout):  # nothing accepts before init() ends
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        time.sleep(0.15)  # the server flushes its log every 50 ms
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def post(self, path: str = "/score", data=None, json_body=None, **kw) -> requests.Response:
        return requests.post(self.url + path, data=data, json=json_body, timeout=30, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig) if sig == signal.SIGKILL else self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read `count` HTTP responses (content-length framed) from the socket; fewer if it closes first."""
    buffer, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(buffer) < length:
            buffer += sock.recv(65536)
        out.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return out


def app_with(tmp_path: Path, script_source: str, name: str = "score.py") -> Path:
    app = tmp_path / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / name).write_text(script_source)
    return app


def copy_seed(tmp_path: Path, seed_name: str) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    shutil.copy(SEED / seed_name, app / "score.py")
    return app


def place_model(app_root: Path, model_file: Path, name: str = "sklearn_mnist", version: int = 1) -> Path:
    """Lay a model out as a deployment does: azureml-models/<name>/<version>/<file>."""
    folder = app_root / "azureml-models" / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, folder / model_file.name)
    return app_root / "azureml-models"


def self_signed_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for `name`, localhost and 127.0.0.1 (openssl), as (cert.pem, key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
