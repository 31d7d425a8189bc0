"""The server extension's REST API, through a real Jupyter server (pytest-jupyter's `jp_fetch`), on a real
workspace with real local services: what the Deployments panel lists, tests and deletes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPClientError

import mlmagics
from mlmagics.core import InvalidConfiguration, LocalWebservice, Webservice, Workspace
from mlmagics.core.errors import (
    ConflictError,
    ImageException,
    ModelNotFoundException,
    NotFoundError,
    TargetUnavailable,
    UserError,
    WebserviceException,
)
from mlmagics.display import mask
from mlmagics.server.handlers import status_for

ROOT = Path(__file__).resolve().parents[2]

SLOW_SCRIPT = """
import json, time

def init():
    pass

def run(raw_data):
    time.sleep(json.loads(raw_data)["sleep"])
    return {"slept": True}
"""


@pytest.fixture(scope="module")
def lab_workspace(tmp_path_factory, echo_image):
    """A workspace with two Healthy local services: echo-api (key auth on) and slow-api (sleeps on request)."""
    folder = tmp_path_factory.mktemp("lab")
    ws = Workspace(folder / "ws")
    echo = echo_image(ws, folder / "echo")
    slow = echo_image(ws, folder / "slow", name="slow", script=SLOW_SCRIPT)
    for name, image, auth in (("echo-api", echo, True), ("slow-api", slow, False)):
        config = LocalWebservice.deploy_configuration(auth_enabled=auth)
        Webservice.deploy_from_image(ws, name, image, config).wait_for_deployment()
    yield ws
    for service in Webservice.list(ws):
        service.delete()


async def fetch_json(jp_fetch, *parts, **kwargs):
    return json.loads((await jp_fetch("mlmagics", *parts, **kwargs)).body)


async def refused(jp_fetch, *parts, **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("mlmagics", *parts, **kwargs)
    return caught.value.code, json.loads(caught.value.response.body)


async def test_deployments_lists_models_images_and_services_with_live_state(jp_fetch, lab_workspace):
    data = await fetch_json(jp_fetch, "deployments")
    assert data["workspace"] == str(lab_workspace.path)
    assert [m["id"] for m in data["models"]] == ["tiny:1"]
    assert {i["id"] for i in data["images"]} >= {"echo:1", "slow:1"}
    echo = {s["name"]: s for s in data["services"]}["echo-api"]
    assert (echo["state"], echo["computeType"], echo["imageId"]) == ("Healthy", "Local", "echo:1")
    assert echo["scoringUri"].startswith("http://127.0.0.1:") and echo["scoringUri"].endswith("/score")
    assert echo["swaggerUri"] == echo["scoringUri"].replace("/score", "/swagger.json")


async def test_each_list_alone(jp_fetch, lab_workspace):
    assert [m["id"] for m in await fetch_json(jp_fetch, "models")] == ["tiny:1"]
    images = await fetch_json(jp_fetch, "images")
    assert {i["id"]: i["services"] for i in images}["echo:1"] == ["echo-api"]
    services = await fetch_json(jp_fetch, "services")
    assert {s["name"]: s["state"] for s in services}["slow-api"] == "Healthy"


async def test_keys_are_masked_unless_asked_for(jp_fetch, lab_workspace):
    primary, secondary = Webservice(lab_workspace, "echo-api").get_keys()
    listed = (await jp_fetch("mlmagics", "services")).body.decode() + (await jp_fetch("mlmagics", "deployments")).body.decode()
    one = (await jp_fetch("mlmagics", "services", "echo-api")).body.decode()
    for text in (listed, one):
        assert primary not in text and secondary not in text
    assert json.loads(one)["keys"] == {"primary": mask(primary), "secondary": mask(secondary)}
    assert await fetch_json(jp_fetch, "services", "echo-api", "keys") == {"primary": primary, "secondary": secondary}


async def test_keys_of_a_service_without_key_auth_are_a_409_with_the_core_message(jp_fetch, lab_workspace):
    assert (await fetch_json(jp_fetch, "services", "slow-api"))["keys"] is None
    status, body = await refused(jp_fetch, "services", "slow-api", "keys")
    assert status == 409 and "key auth disabled" in body["message"]


async def test_every_route_asks_for_authentication(jp_fetch, lab_workspace):
    routes = [
        ("GET", ("deployments",)),
        ("GET", ("models",)),
        ("GET", ("services", "echo-api", "keys")),
        ("GET", ("services", "echo-api", "logs")),
        ("POST", ("services", "echo-api", "test")),
        ("DELETE", ("services", "echo-api")),
        ("DELETE", ("images", "echo:1")),
        ("DELETE", ("models", "tiny:1")),
    ]
    for method, parts in routes:
        body = "{}" if method == "POST" else None
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("mlmagics", *parts, method=method, body=body, headers={"Authorization": "token not-the-token"})
        assert caught.value.code == 403, (method, parts)
    assert Webservice(lab_workspace, "echo-api").state == "Healthy", "nothing was deleted"


async def test_logs_are_the_last_lines_made_readable(jp_fetch, lab_workspace):
    data = await fetch_json(jp_fetch, "services", "echo-api", "logs", params={"lines": "3"})
    assert data["name"] == "echo-api" and 1 <= len(data["lines"]) <= 3
    assert not any(line.startswith("{") for line in data["lines"]), "JSON log records are shown as text"
    status, body = await refused(jp_fetch, "services", "echo-api", "logs", params={"lines": "0"})
    assert status == 400 and "lines must be an integer" in body["message"]


async def test_test_answers_with_the_service_answer_and_the_latency(jp_fetch, lab_workspace):
    data = await fetch_json(jp_fetch, "services", "echo-api", "test", method="POST", body='{"data": [1, 2]}')
    assert data["status"] == 200 and data["latencyMs"] > 0
    assert data["answer"] == {"version": "v1", "model": "weights of tiny", "input": {"data": [1, 2]}}


async def test_test_with_a_body_that_is_not_json_is_a_400(jp_fetch, lab_workspace):
    status, body = await refused(jp_fetch, "services", "echo-api", "test", method="POST", body="data=1")
    assert status == 400 and "not valid JSON" in body["message"]


async def test_a_failing_scoring_call_is_a_502_with_the_core_message(jp_fetch, lab_workspace):
    status, body = await refused(jp_fetch, "services", "slow-api", "test", method="POST", body='{"no sleep": 1}')
    assert status == 502 and body["error"] == "WebserviceException"
    assert "Response Code: 500" in body["message"]


async def test_an_unknown_service_is_a_404_with_the_core_message(jp_fetch, lab_workspace):
    status, body = await refused(jp_fetch, "services", "no-such-api")
    assert status == 404 and body["message"].startswith("service 'no-such-api' does not exist")
    status, body = await refused(jp_fetch, "models", "nope:1", method="DELETE")
    assert status == 404 and "model nope:1 is not registered" in body["message"]


async def test_deletes_are_refused_while_in_use_then_done_in_order(jp_fetch, lab_workspace, tmp_path, echo_image):
    image = echo_image(lab_workspace, tmp_path, name="doomed", model_name="doomed-model")
    service = Webservice.deploy_from_image(lab_workspace, "doomed-api", image, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    status, body = await refused(jp_fetch, "models", "doomed-model:1", method="DELETE")
    assert status == 409 and body["message"] == "model doomed-model:1 is used by image doomed:1; delete that image first"
    status, body = await refused(jp_fetch, "images", "doomed:1", method="DELETE")
    assert status == 409 and body["message"].startswith("image doomed:1 is used by service doomed-api")

    deleted = await fetch_json(jp_fetch, "services", "doomed-api", method="DELETE")
    assert deleted == {"message": "Deleted service doomed-api"}
    with pytest.raises(requests.ConnectionError):
        requests.get(service.scoring_uri, timeout=2)
    assert (await fetch_json(jp_fetch, "images", "doomed:1", method="DELETE"))["message"] == "Deleted image doomed:1"
    assert (await fetch_json(jp_fetch, "models", "doomed-model:1", method="DELETE"))["message"] == "Deleted model doomed-model:1"
    data = await fetch_json(jp_fetch, "deployments")
    assert "doomed-api" not in {s["name"] for s in data["services"]}
    assert "doomed:1" not in {i["id"] for i in data["images"]}
    assert "doomed-model:1" not in {m["id"] for m in data["models"]}


async def test_a_slow_scoring_call_does_not_block_the_server(jp_fetch, lab_workspace):
    finished = []

    async def call(label: str, delay: float, *parts, **kwargs) -> None:
        await asyncio.sleep(delay)
        await jp_fetch("mlmagics", *parts, **kwargs)
        finished.append(label)

    await asyncio.gather(
        call("test", 0, "services", "slow-api", "test", method="POST", body='{"sleep": 1.5}'),
        call("models", 0.3, "models"),
    )
    assert finished == ["models", "test"]


def test_core_errors_become_http_statuses():
    assert status_for(NotFoundError("x")) == status_for(ModelNotFoundException("x")) == 404
    assert status_for(ConflictError("x")) == 409
    assert status_for(UserError("x")) == status_for(InvalidConfiguration("x")) == 400
    assert status_for(TargetUnavailable("x")) == 503
    assert status_for(WebserviceException("x")) == 502
    assert status_for(WebserviceException("x"), service_error=409) == 409
    assert status_for(ImageException("x")) == 500


def test_importing_mlmagics_imports_no_jupyter_server():
    """Scoring images import mlmagics with nothing but the runtime: the extension hooks must stay lazy."""
    code = (
        "import sys, mlmagics\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jupyter_server', 'tornado', 'traitlets')))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    assert mlmagics._jupyter_server_extension_points() == [{"module": "mlmagics.server"}]
    assert mlmagics._jupyter_labextension_paths() == [{"src": "labextension", "dest": "mlmagics"}]


def test_the_labextension_is_the_python_package_version_and_builds_into_it():
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert (package["name"], package["version"]) == ("mlmagics", mlmagics.__version__)
    assert package["jupyterlab"]["outputDir"] == "../mlmagics/labextension"
    enable = json.loads((ROOT / "jupyter-config" / "server-config" / "mlmagics.json").read_text())
    assert enable == {"ServerApp": {"jpserver_extensions": {"mlmagics": True}}}
