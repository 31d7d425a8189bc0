"""The local target with real processes and real HTTP: the seed flow, reattaching, surviving the
deploying process, failures that explain themselves, updates that never break the old version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import requests

from mlmagics.core import (
    ConflictError,
    ContainerImage,
    Image,
    InvalidConfiguration,
    LocalWebservice,
    Model,
    NotFoundError,
    UserError,
    Webservice,
    WebserviceException,
)


def test_the_seed_flow_on_the_local_target(ws, tmp_path, monkeypatch, sklearn_mnist, seed_scripts):
    """register -> image -> deploy -> run -> update -> delete, with the seed's own score.py and calls."""
    model_file, sk_model = sklearn_mnist
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    shutil.copy(model_file, tmp_path / "outputs" / "sklearn_mnist_model.pkl")
    shutil.copy(seed_scripts / "score_json.py", tmp_path / "score.py")

    model = Model.register(
        model_path="outputs/sklearn_mnist_model.pkl",
        model_name="sklearn_mnist",
        tags={"key": "0.1"},
        description="test",
        workspace=ws,
    )
    image_config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
    image = ContainerImage.create(name="myimage", models=[model], image_config=image_config, workspace=ws)
    image.wait_for_creation(show_output=True)
    service = Webservice.deploy_from_image(
        workspace=ws, name="aci-mnist-3", image=image, deployment_config=LocalWebservice.deploy_configuration()
    )
    started = time.monotonic()
    service.wait_for_deployment(show_output=True)
    took = time.monotonic() - started
    assert service.state == "Healthy", service.get_logs()
    assert service.scoring_uri.startswith("http://127.0.0.1:") and service.scoring_uri.endswith("/score")
    assert service.swagger_uri == service.scoring_uri[: -len("score")] + "swagger.json"
    assert requests.get(service.swagger_uri, timeout=5).json()["swagger"] == "2.0"

    test_sample = bytes(json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}), encoding="utf8")
    prediction = service.run(input_data=test_sample)
    import numpy as np

    assert json.loads(prediction) == sk_model.predict(np.array(json.loads(test_sample)["data"])).tolist()

    new_image = ContainerImage.create(name="myimage", models=[model], image_config=image_config, workspace=ws)
    service = Webservice(name="aci-mnist-3", workspace=ws)
    service.update(image=Image(workspace=ws, id="myimage:2"))
    assert (service.state, service.image_id) == ("Healthy", "myimage:2")
    assert service.run(input_data=test_sample) == prediction
    print(f"deploy to Healthy: {took:.2f} s")

    with pytest.raises(ConflictError, match="image myimage:2 is used by service aci-mnist-3"):
        new_image.delete()
    port = service.target["port"]
    service.delete()
    with socket_closed(port):
        pass
    image.delete()
    new_image.delete()
    model.delete()
    assert (Webservice.list(ws), Image.list(ws), Model.list(ws)) == ([], [], [])


class socket_closed:
    """Asserts nothing listens on the port any more (delete() freed it)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", self.port))  # would fail if the server still held it
        return self

    def __exit__(self, *exc) -> None:
        return None


def test_a_small_model_is_healthy_quickly_and_reattaches_from_another_process(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    started = time.monotonic()
    service = Webservice.deploy_from_image(ws, "echo-svc", image, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    took = time.monotonic() - started
    assert service.run({"x": 1}) == {"version": "v1", "model": "weights of tiny", "input": {"x": 1}}
    code = (
        "import json, sys\nfrom mlmagics.core import Webservice, Workspace\n"
        "s = Webservice(Workspace(sys.argv[1]), 'echo-svc')\n"
        "print(json.dumps([type(s).__name__, s.update_deployment_state(), s.run('{\"y\": 2}')]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ws.path)], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [
        "LocalWebservice",
        "Healthy",
        {"version": "v1", "model": "weights of tiny", "input": {"y": 2}},
    ], out.stderr
    print(f"small model: Healthy after {took:.2f} s")
    assert took < 10  # generous: the number itself is measured in benchmarks/, not asserted here


DEPLOY_AND_EXIT = """
import os, sys
from mlmagics.core import Image, LocalWebservice, Webservice, Workspace
ws = Workspace(sys.argv[1])
service = Webservice.deploy_from_image(ws, "survivor", Image(ws, id="echo:1"), LocalWebservice.deploy_configuration())
service.wait_for_deployment()
print(service.target["pid"])
os._exit(0)  # like a kernel that dies: no clean-up of any kind
"""


def test_the_service_outlives_the_process_that_deployed_it(ws, tmp_path, echo_image):
    echo_image(ws, tmp_path / "app")
    out = subprocess.run([sys.executable, "-c", DEPLOY_AND_EXIT, str(ws.path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    server_pid = int(out.stdout)
    service = Webservice(ws, "survivor")
    assert service.update_deployment_state() == "Healthy"
    assert service.run("{}")["version"] == "v1"
    assert os.getpgid(server_pid) == server_pid, "the server leads its own process group"


@pytest.mark.parametrize("auth", [False, True], ids=["open", "key auth: /ready's details need the key"])
def test_a_failing_init_fails_the_deploy_in_seconds_with_the_traceback(ws, tmp_path, auth, echo_image, failing_init):
    image = echo_image(ws, tmp_path / "app", name="broken", script=failing_init)
    config = LocalWebservice.deploy_configuration(auth_enabled=auth)
    service = Webservice.deploy_from_image(ws, "broken-svc", image, config)
    started = time.monotonic()
    with pytest.raises(WebserviceException) as info:
        service.wait_for_deployment()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "current service state: Failed" in message
    assert "init() raised RuntimeError: the model file is corrupt" in message
    assert 'raise RuntimeError("the model file is corrupt")' in message, "the traceback is in the error"
    assert Webservice(ws, "broken-svc").state == "Failed"


def test_a_failed_update_keeps_the_old_version_serving(ws, tmp_path, echo_image, failing_init):
    good = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "steady", good, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    uri = service.scoring_uri
    bad = echo_image(ws, tmp_path / "app", script=failing_init)
    with pytest.raises(
        WebserviceException,
        match=r"update of steady to echo:2 failed; echo:1 keeps serving.*"
        r"init\(\) raised RuntimeError: the model file is corrupt",
    ):
        service.update(image=bad)
    again = Webservice(ws, "steady")
    assert (again.image_id, again.state, again.scoring_uri) == ("echo:1", "Healthy", uri)
    assert again.run("{}")["version"] == "v1"
    fixed = echo_image(ws, tmp_path / "app", version="v3")
    again.update(image=fixed)
    assert (again.run("{}")["version"], again.scoring_uri) == ("v3", uri), "same URI after an update"


def test_keys_auth_and_key_regeneration_without_restart(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "locked", image, LocalWebservice.deploy_configuration(auth_enabled=True))
    service.wait_for_deployment()
    primary, secondary = service.get_keys()
    assert requests.post(service.scoring_uri, data="{}", timeout=5).status_code == 401
    assert service.run("{}")["version"] == "v1"
    pid = service.target["pid"]
    service.regen_key("Primary")
    new_primary, same_secondary = service.get_keys()
    assert new_primary != primary and same_secondary == secondary
    time.sleep(1.2)
    assert (
        requests.post(service.scoring_uri, data="{}", headers={"Authorization": f"Bearer {primary}"}, timeout=5).status_code
        == 401
    )
    assert service.run("{}")["version"] == "v1" and service.target["pid"] == pid
    with pytest.raises(UserError, match="key must be 'Primary' or 'Secondary'"):
        service.regen_key("tertiary")


def test_the_server_log_rotates_and_get_logs_reads_across_the_files(ws, tmp_path, monkeypatch, echo_image):
    monkeypatch.setenv("MLMAGICS_LOG_MAX_BYTES", "4096")  # the server reads it (default 10 MiB)
    monkeypatch.setenv("MLMAGICS_LOG_BACKUPS", "3")
    service = Webservice.deploy_from_image(ws, "chatty", echo_image(ws, tmp_path / "app"), LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    for i in range(60):  # ~250 bytes of access line each: several files' worth
        requests.post(service.scoring_uri, data="{}", headers={"x-request-id": f"chatty-{i:02d}"}, timeout=10)
    time.sleep(0.3)  # flushed within 50 ms
    assert (service.folder / "server.log.1").exists() and not (service.folder / "server.log.4").exists()
    lines = service.get_logs(num_lines=40).splitlines()
    ids = [json.loads(line)["request_id"] for line in lines if '"logger": "access"' in line]
    assert len(lines) == 40 and ids == [f"chatty-{i:02d}" for i in range(60 - len(ids), 60)]
    assert len(ids) > (service.folder / "server.log").read_text().count('"logger": "access"')  # it read a rotated file


def test_logs_settings_list_and_run_errors(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(
        ws, "tuned", image, LocalWebservice.deploy_configuration(scoring_timeout_ms=1500, tags={"team": "a"})
    )
    service.wait_for_deployment()
    assert "calling init()" in service.get_logs()
    assert len(service.get_logs(num_lines=2).splitlines()) == 2
    settings = json.loads((service.folder / "releases").glob("*/service.json").__next__().read_text())
    assert settings["scoring_timeout_ms"] == 1500 and settings["auth_enabled"] is False
    assert [s.name for s in Webservice.list(ws, tags={"team": "a"})] == ["tuned"]
    assert [s.name for s in Webservice.list(ws, compute_type="local", model_name="tiny")] == ["tuned"]
    assert Webservice.list(ws, image_name="other") == []
    with pytest.raises(WebserviceException, match="Received bad response from service:\nResponse Code: 500"):
        service.run("not json")
    with pytest.raises(WebserviceException, match="has key auth disabled"):
        service.get_keys()


def test_deploy_validation_and_refusals(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    for name in ("ab", "Upper", "bad_name", "-lead", "trail-", "x" * 33):
        with pytest.raises(UserError, match=f"service name '{name}' is not valid"):
            Webservice.deploy_from_image(ws, name, image)
    with pytest.raises(InvalidConfiguration, match="scoring_timeout_ms must be greater than zero."):
        LocalWebservice.deploy_configuration(scoring_timeout_ms=-1)
    with pytest.raises(InvalidConfiguration, match=r"port must be an integer in \[1, 65535\], got 70000"):
        LocalWebservice.deploy_configuration(port=70000)
    with pytest.raises(WebserviceException):  # v1 code catching WebserviceException still catches it
        LocalWebservice.deploy_configuration(max_request_wait_time=0)
    service = Webservice.deploy_from_image(ws, "only-one", image)  # no configuration: the default target (local)
    assert type(service) is LocalWebservice
    with pytest.raises(ConflictError, match="service 'only-one' already exists"):
        Webservice.deploy_from_image(ws, "only-one", image)
    with pytest.raises(NotFoundError, match=r"service 'nope' does not exist .* \(services: only-one\)"):
        Webservice(ws, "nope")


def test_delete_stops_the_server_and_frees_the_port(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "short-lived", image, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    pid, port = service.target["pid"], service.target["port"]
    service.delete()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    with socket_closed(port):
        pass
    assert not service.folder.exists()
    with pytest.raises(NotFoundError):
        Webservice(ws, "short-lived")


def test_reload_restarts_a_service_whose_process_is_gone(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "phoenix", image, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    os.killpg(service.target["pid"], 9)  # as after a reboot
    time.sleep(0.3)
    assert service.update_deployment_state() == "Unhealthy"
    assert "service.reload() starts it again" in service.error
    service.reload()
    assert service.update_deployment_state() == "Healthy"
    assert service.run("{}")["version"] == "v1"


def test_server_limits_in_a_deploy_configuration_reach_the_running_server(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "src")
    with pytest.raises(InvalidConfiguration, match="server_limits has no limit 'max_nothing'"):
        LocalWebservice.deploy_configuration(server_limits={"max_nothing": 1})
    with pytest.raises(InvalidConfiguration, match=r"server_limits\['max_headers'\] must be greater than zero"):
        LocalWebservice.deploy_configuration(server_limits={"max_headers": 0})
    config = LocalWebservice.deploy_configuration(server_limits={"max_headers": 9})  # requests sends 7
    service = Webservice.deploy_from_image(ws, "limited", image, config)
    service.wait_for_deployment()
    few = requests.post(service.scoring_uri, json={"x": 1}, timeout=10)
    many = requests.post(service.scoring_uri, json={"x": 1}, headers={f"X-{i}": "y" for i in range(10)}, timeout=10)
    assert few.status_code == 200 and many.status_code == 431
    assert Webservice(ws, "limited").config.server_limits == {"max_headers": 9}, "kept with the service's settings"


def test_deploy_to_cloud_refuses_a_taken_name_before_building_or_pushing(ws, tmp_path, echo_image, monkeypatch):
    image = echo_image(ws, tmp_path / "app")
    local = Webservice.deploy_from_image(ws, "to-move", image, LocalWebservice.deploy_configuration())
    Webservice.deploy_from_image(ws, "other", image, LocalWebservice.deploy_configuration())
    pushed = []
    monkeypatch.setattr(Webservice, "deploy_from_image", staticmethod(lambda *args, **kwargs: pushed.append(args)))
    try:
        with pytest.raises(ConflictError, match="'to-move' is this local service's name: give the cloud service another"):
            local.deploy_to_cloud()
        with pytest.raises(ConflictError, match="'other' is taken in the workspace"):
            local.deploy_to_cloud(name="other")
        assert pushed == [], "nothing reached a target"
    finally:
        monkeypatch.undo()
        for service in Webservice.list(ws):
            service.delete()


def test_usage_measures_the_services_processes_and_never_a_process_that_reused_its_pid(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "measured", image, LocalWebservice.deploy_configuration())
    try:
        service.wait_for_deployment()
        cpu, memory = service.usage()
        assert cpu > 0 and memory > 0
        recorded = service.target
        service._save(target={**recorded, "pid": os.getpid()})  # as if the server died and its pid was reused
        with pytest.raises(WebserviceException, match="service measured is not running: nothing to measure"):
            service.usage()
        service._save(target=recorded)
    finally:
        Webservice(ws, "measured").delete()
