"""The scoring runtime's tests talk to real servers (`serve`, tests/conftest.py) over HTTP and raw sockets."""

from __future__ import annotations

import itertools
import shutil
import socket
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def connect():
    """`connect(server)`: a raw TCP connection to a scoring server (10 s timeout)."""

    def open_to(server) -> socket.socket:
        return socket.create_connection(("127.0.0.1", server.port), timeout=10)

    return open_to


@pytest.fixture(scope="session")
def read_responses():
    """`read_responses(sock, count)`: `count` HTTP responses (content-length framed) as (status, headers, body);
    fewer if the connection closes first."""

    def read(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
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

    return read


@pytest.fixture
def server_of(serve, app_with, tmp_path):
    """`server_of(source, ready=True, **config)`: a scoring server of the script `source`, in a folder of its own, with
    `config` as its service.json (`serve`'s `ready`)."""
    folders = itertools.count()

    def start(source: str, ready: bool = True, **config):
        return serve(app_with(tmp_path / f"s{next(folders)}", source), ready=ready, config=config)

    return start


@pytest.fixture(scope="session")
def copy_seed(seed_scripts):
    """`copy_seed(folder, seed_name)`: folder/app with the seed script `seed_name` as its score.py; returns folder/app."""

    def copy(tmp_path: Path, seed_name: str) -> Path:
        app = tmp_path / "app"
        app.mkdir(exist_ok=True)
        shutil.copy(seed_scripts / seed_name, app / "score.py")
        return app

    return copy


@pytest.fixture(scope="session")
def place_model():
    """`place_model(app_root, model_file, name="sklearn_mnist", version=1)`: the model laid out as a deployment lays
    it out, azureml-models/<name>/<version>/<file>; returns app_root/azureml-models."""

    def place(app_root: Path, model_file: Path, name: str = "sklearn_mnist", version: int = 1) -> Path:
        folder = app_root / "azureml-models" / name / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(model_file, folder / model_file.name)
        return app_root / "azureml-models"

    return place
