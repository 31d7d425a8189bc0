"""The Kubernetes target's tests: no API server can be installed on these machines, so they run on recorded
API responses (api_responses/), the official schemas (`validate_manifest`, tests/conftest.py) and a stand-in
for the API server's HTTP interface (`api`). test_live.py runs against a cluster when one is configured."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

API_RESPONSES = Path(__file__).parent / "api_responses"
PLURALS = {
    "Secret": "secrets",
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test in this folder is a Kubernetes test (pytest calls this hook with the conftest files of the test's
    own folder, so it marks this folder's tests only)."""
    item.add_marker(pytest.mark.kubernetes)


def deserialize(data: Any, klass: str) -> Any:
    """An API response (parsed JSON) as the official client's model, through the client's own deserializer."""
    from kubernetes.client import ApiClient

    text = json.dumps(data)
    client = ApiClient()
    try:
        return client.deserialize(text, klass, "application/json")  # kubernetes >= 33
    except TypeError:  # older clients take a response object with .data

        class Response:
            data = text

        return client.deserialize(Response(), klass)


@pytest.fixture(scope="session")
def api_responses() -> Path:
    """The recorded API responses: one folder per rollout situation (api_responses/README.md)."""
    return API_RESPONSES


@pytest.fixture(scope="session")
def load_scenario():
    """`load_scenario(name)`: (V1Deployment, [V1Pod], [CoreV1Event]) of the recorded situation api_responses/<name>/."""

    def load(name: str) -> tuple[Any, list[Any], list[Any]]:
        folder = API_RESPONSES / name
        deployment = deserialize(json.loads((folder / "deployment.json").read_text()), "V1Deployment")
        pods = deserialize(json.loads((folder / "pods.json").read_text()), "V1PodList").items
        events = deserialize(json.loads((folder / "events.json").read_text()), "CoreV1EventList").items
        return deployment, pods, events

    return load


INIT_FAILED_LOG = "\n".join(
    [
        json.dumps({"time": "2026-03-02T09:12:48.1", "level": "INFO", "logger": "user_script", "msg": "calling init()"}),
        json.dumps({"time": "2026-03-02T09:12:48.2", "level": "ERROR", "logger": "user_script",
                    "msg": "init() raised RuntimeError: the model file is corrupt",
                    "traceback": "Traceback (most recent call last):\nRuntimeError: the model file is corrupt"}),
    ]
)  # fmt: skip


@pytest.fixture
def api(tmp_path, monkeypatch):
    """The stand-in for the API server, named by KUBECONFIG; no Deployment exists yet, and the pods' log says init()
    failed."""
    with ApiStandIn(log=INIT_FAILED_LOG) as stand_in:
        monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path / "kubeconfig")))
        yield stand_in


class ApiStandIn:
    """A stand-in for the Kubernetes API server's HTTP interface — NOT a cluster: no state, no controllers.

    It records every request the official client sends (method, path, query, content type, body) and
    answers reads with recorded API responses from api_responses/<scenario>/ (next to this file). It shows that
    mlmagics sends the right requests (server-side apply, label selectors, deletes) and reads real
    answers right; whether a cluster accepts them is what test_live.py checks when
    MLMAGICS_TEST_KUBE_CONTEXT names one.
    """

    def __init__(self, scenario: str | None = None, namespace: str = "ml", log: str = "") -> None:
        self.scenario = scenario  # None: the Deployment does not exist (404) and lists are empty
        self.namespace = namespace
        self.log = log
        self.requests: list[dict[str, Any]] = []
        self.existing: list[dict[str, Any]] = []  # objects (full manifests) the lists of their kind report
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> dict[str, Any]:
                url = urlparse(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                entry = {
                    "method": self.command,
                    "path": url.path,
                    "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                    "content_type": self.headers.get("content-type"),
                    "body": json.loads(body) if body else None,
                }
                stand_in.requests.append(entry)
                return entry

            def _answer(self, status: int, data: Any, content_type: str = "application/json") -> None:
                payload = data.encode() if isinstance(data, str) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                status, data, kind = stand_in.read(self._record())
                self._answer(status, data, kind)

            def do_PATCH(self) -> None:
                entry = self._record()
                self._answer(200, entry["body"])  # apply answers with the object

            def do_DELETE(self) -> None:
                self._record()
                self._answer(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ApiStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path, context: str = "stand-in") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                    "contexts": [
                        {"name": context, "context": {"cluster": "stand-in", "user": "tester", "namespace": self.namespace}}
                    ],
                    "current-context": context,
                }
            )
        )
        return path

    def read(self, entry: dict[str, Any]) -> tuple[int, Any, str]:
        path = entry["path"]
        not_found = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
            "message": f'{path.rsplit("/", 2)[-2]} "{path.rsplit("/", 1)[-1]}" not found',
        }
        if path.endswith("/log"):
            return 200, self.log, "text/plain"
        folder = API_RESPONSES / self.scenario if self.scenario else None
        kind = path.rsplit("/", 2)
        if "/deployments/" in path:
            if folder is None:
                return 404, not_found, "application/json"
            return 200, json.loads((folder / "deployment.json").read_text()), "application/json"
        if path.endswith("/pods"):
            if folder is None:
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}, "application/json"
            return 200, json.loads((folder / "pods.json").read_text()), "application/json"
        if path.endswith("/events"):
            if folder is None:
                return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []}, "application/json"
            data = json.loads((folder / "events.json").read_text())
            wanted = entry["query"].get("fieldSelector", "")
            name = next((p.split("=", 1)[1] for p in wanted.split(",") if p.startswith("involvedObject.name=")), None)
            data["items"] = [e for e in data["items"] if name is None or e["involvedObject"]["name"] == name]
            return 200, data, "application/json"
        # a list of Services, Secrets, HPAs, ...: the objects the test said exist, of that kind
        items = [o for o in self.existing if PLURALS[o["kind"]] == kind[-1]]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}, "application/json"

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method]
