"""The Docker target against a real engine, real HTTP and a real registry on 127.0.0.1 — no mocks.

Build, rebuild after a script edit from the cache, deploy, score, auth, limits, logs, a failing
init(), update with rollback under load, keys, push/pull (with and without credentials),
delete. One workspace and a few images are shared by the module, so that the base layers
and the runtime's requirements are built once; the scripts are trivial (no scikit-learn),
so pip installs stay small. Timings are printed, not asserted (benchmarks/docker_bench.py).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from mlmagics.core import (
    AciWebservice,
    ContainerImage,
    DockerWebservice,
    Image,
    ImageException,
    Recorder,
    TargetUnavailable,
    UserError,
    Webservice,
    WebserviceException,
)
from mlmagics.core.targets.container import STATE_FILE

LABEL = "org.mlmagics"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app")


def timed_build(image: Image, label: str) -> Recorder:
    recorder = Recorder()
    started = time.monotonic()
    DockerWebservice.build_image(image, progress=recorder)
    print(f"{label}: {time.monotonic() - started:.1f} s, {image.build_info['size'] / 1e6:.1f} MB")
    return recorder


@pytest.fixture(scope="module")
def echo_v1(docker_ws, app, echo_image):
    image = echo_image(docker_ws, app)
    return image, timed_build(image, "build echo:1")


@pytest.fixture(scope="module")
def echo_v2(docker_ws, app, echo_v1, echo_image):
    image = echo_image(docker_ws, app, version="v2")  # only score.py differs from echo:1
    return image, timed_build(image, "rebuild after a script edit (echo:2)")


@pytest.fixture(scope="module")
def broken(docker_ws, app, echo_v1, echo_image, failing_init):
    image = echo_image(docker_ws, app / "broken", name="broken", script=failing_init)
    timed_build(image, "build broken:1")
    return image


def deploy(ws, name: str, image: Image, **settings) -> Webservice:
    started = time.monotonic()
    service = Webservice.deploy_from_image(ws, name, image, AciWebservice.deploy_configuration(**settings))
    service.wait_for_deployment()
    print(f"deploy {name} to Healthy: {time.monotonic() - started:.2f} s")
    return service


@pytest.fixture(scope="module")
def echo_service(docker_ws, echo_v1):
    return deploy(docker_ws, "echo-docker", echo_v1[0])


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def installed_distributions(client, tag: str) -> set[str]:
    code = "import importlib.metadata as m; print(' '.join(d.metadata['Name'].lower() for d in m.distributions()))"
    return set(client.containers.run(tag, ["python", "-c", code], remove=True).decode().split())


# -- images ------------------------------------------------------------------------------------------------
def test_build_streams_its_output_and_makes_a_labelled_non_root_image_with_a_healthcheck(
    docker_client, docker_ws, echo_v1, image_repo
):
    image, progress = echo_v1
    assert image.image_location == f"{image_repo}/echo:1" == image.build_info["tag"]
    assert any(line.startswith("Step 1/") and ": FROM " in line for line in progress.lines), "the build output went to progress"
    assert any("built" in line and "MB" in line and "scoring runtime" in line for line in progress.lines), "size reported"
    attrs = docker_client.images.get(image.image_location).attrs["Config"]
    assert attrs["User"] == "10001:10001"
    assert attrs["Healthcheck"]["Test"][:3] == ["CMD", "python", "-m"]
    assert attrs["Labels"][f"{LABEL}.image"] == "echo:1"
    assert attrs["Labels"][f"{LABEL}.workspace"] == str(docker_ws.path)
    assert attrs["Labels"][f"{LABEL}.models"] == "tiny:1"
    env = dict(e.split("=", 1) for e in attrs["Env"])
    assert env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models/tiny/1"
    assert env["PATH"].startswith("/opt/mlmagics/venv/bin:") and ":/usr/bin" in env["PATH"], "the base image's PATH kept"
    layers = image.build_info["layers"]
    assert image.build_info["size"] == docker_client.images.get(image.image_location).attrs["Size"]
    assert layers["scoring runtime"] < 40e6, f"the runtime's layers stay small: {layers}"
    distributions = installed_distributions(docker_client, image.image_location)
    assert {"httptools", "werkzeug"} <= distributions
    unwanted = {d for d in distributions if d.startswith(("jupyter", "ipy", "widgetsnbextension", "docker", "kubernetes", "pip"))}
    assert not unwanted, f"the image holds {unwanted}"


def test_the_image_serves_on_its_own_with_docker_run_and_its_healthcheck_passes(docker_client, echo_v1):
    image, _ = echo_v1
    container = docker_client.containers.run(image.image_location, detach=True, ports={"5001/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5001/tcp"][0]["HostPort"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        answer = requests.post(f"http://127.0.0.1:{port}/score", data='{"a": 1}', timeout=5).json()
        assert answer == {"version": "v1", "model": "weights of tiny", "input": {"a": 1}}
        health = container.exec_run(["python", "-m", "mlmagics.serving.health", STATE_FILE])
        assert health.exit_code == 0, health.output
    finally:
        container.remove(force=True)


def test_rebuild_after_a_script_edit_comes_from_the_cache(echo_v1, echo_v2):
    (first, _), (second, progress) = echo_v1, echo_v2
    steps = [line for line in progress.lines if line.startswith("Step ")]
    copy_app = next(i for i, line in enumerate(steps) if "COPY" in line and "app/ /var/azureml-app/" in line)
    cached = sum(1 for line in progress.lines if "Using cache" in line)
    assert cached >= copy_app - 1, f"every step before the script's COPY is cached ({cached} of {copy_app}):\n" + "\n".join(
        progress.lines
    )
    assert second.build_info["id"] != first.build_info["id"]
    assert second.build_info["layers"]["scoring runtime"] == first.build_info["layers"]["scoring runtime"]
    print(
        f"rebuild after a script edit: {second.build_info['build_seconds']} s (first build {first.build_info['build_seconds']} s)"
    )


def test_a_failed_build_names_the_failing_step_and_its_last_lines(docker_ws, tmp_path, monkeypatch, write):
    write(tmp_path / "score.py", "def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n")
    write(tmp_path / "requirements.txt", "mlmagics-no-such-package-anywhere==0.0.1\n")
    monkeypatch.chdir(tmp_path)
    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python", requirements="requirements.txt")
    image = Image.create(docker_ws, "unbuildable", [], config)
    progress = Recorder()
    with pytest.raises(ImageException) as info:
        DockerWebservice.build_image(image, progress=progress)
    message = str(info.value)
    assert "docker build of" in message and "failed at Step " in message
    assert "pip --python /opt/mlmagics/venv/bin/python install -r /opt/mlmagics/requirements.txt" in message, message
    assert "mlmagics-no-such-package-anywhere" in message.split("Last build output:")[1], "the last lines say why"
    assert progress.events[-1][0] == "done" and progress.events[-1][1][0] is False
    assert Path(image.build_info.get("log") or image.folder / "docker-build.log").exists()
    image.delete()


# -- services ----------------------------------------------------------------------------------------------
def test_deploy_scores_with_the_key_and_refuses_requests_without_it(echo_service):
    service = echo_service
    assert (type(service), service.state, service.compute_type) == (DockerWebservice, "Healthy", "Docker")
    assert service.scoring_uri.startswith("http://127.0.0.1:") and service.scoring_uri.endswith("/score")
    assert service.run({"x": 1}) == {"version": "v1", "model": "weights of tiny", "input": {"x": 1}}
    assert requests.post(service.scoring_uri, data="{}", timeout=5).status_code == 401
    assert requests.post(service.scoring_uri, data="{}", headers=bearer("wrong"), timeout=5).status_code == 401
    secondary = service.get_keys()[1]
    assert requests.post(service.scoring_uri, data="{}", headers=bearer(secondary), timeout=5).status_code == 200
    assert requests.get(service.swagger_uri, headers=bearer(secondary), timeout=5).json()["swagger"] == "2.0"


def test_limits_restart_policy_ports_and_labels_are_applied(docker_client, docker_ws, echo_v1, free_port):
    port = free_port()
    service = deploy(docker_ws, "limited", echo_v1[0], cpu_cores=0.25, memory_gb=0.3, port=port)
    server = service.container
    host = server.attrs["HostConfig"]
    assert host["NanoCpus"] == 250_000_000
    assert host["Memory"] == host["MemorySwap"] == int(0.3 * 1024**3)
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "5"}}  # bounded logs
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert server.attrs["Config"]["User"] == "10001:10001"
    assert server.labels[f"{LABEL}.service"] == "limited" and server.labels[f"{LABEL}.image"] == "echo:1"
    holder = docker_client.containers.get(service.target["holder"])
    assert holder.attrs["HostConfig"]["PortBindings"]["5001/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert service.scoring_uri == f"http://127.0.0.1:{port}/score"
    assert service.run("{}")["version"] == "v1"
    health = server.exec_run(server.attrs["Config"]["Healthcheck"]["Test"][1:])  # the container's own HEALTHCHECK
    assert health.exit_code == 0, health.output
    service.delete()


def test_a_taken_port_is_one_clear_error_and_leaves_nothing_behind(docker_client, docker_ws, echo_v1):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = DockerWebservice.deploy_configuration(port=port)
        with pytest.raises(WebserviceException, match=f"cannot start the port holder of taken-port on 127.0.0.1:{port}: .*"):
            Webservice.deploy_from_image(docker_ws, "taken-port", echo_v1[0], config)
    service = Webservice(docker_ws, "taken-port")
    assert service.state == "Failed" and "cannot start the port holder" in service.error
    service.delete()
    mine = {"label": [f"{LABEL}.workspace={docker_ws.path}", f"{LABEL}.service=taken-port"]}
    assert docker_client.containers.list(all=True, filters=mine) == [] and docker_client.volumes.list(filters=mine) == []


def test_webservice_finds_the_service_from_another_process(docker_ws, echo_service):
    code = (
        "import json, sys\nfrom mlmagics.core import Webservice, Workspace\n"
        "ws = Workspace(sys.argv[1])\ns = Webservice(ws, 'echo-docker')\n"
        "print(json.dumps([type(s).__name__, s.update_deployment_state(), s.run('{\"y\": 2}'),"
        " [x.name for x in Webservice.list(ws, compute_type='aci')]]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(docker_ws.path)], capture_output=True, text=True, timeout=60)
    kind, state, answer, listed = json.loads(out.stdout)
    assert (kind, state, answer["input"]) == ("DockerWebservice", "Healthy", {"y": 2}), out.stderr
    assert "echo-docker" in listed


def test_listing_survives_an_unreachable_engine_and_says_so(docker_ws, echo_service):
    """A target that cannot be reached (the engine stopped, a cluster gone) must not hide the other services."""
    code = (
        "import json, sys\nfrom mlmagics.core import Webservice, Workspace\n"
        "print(json.dumps([[s.name, s.state, s.error] for s in Webservice.list(Workspace(sys.argv[1]), refresh=True)]))"
    )
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    out = subprocess.run([sys.executable, "-c", code, str(docker_ws.path)], capture_output=True, text=True, timeout=60, env=env)
    listed = {name: (state, error) for name, state, error in json.loads(out.stdout or "[]")}
    state, error = listed["echo-docker"]
    assert state == "Healthy", "the recorded state is kept"
    assert error.startswith("state not refreshed: ") and "nonexistent" in error, out.stderr


def test_get_logs_are_the_container_logs(echo_service):
    echo_service.run({"logged": True})
    logs = echo_service.get_logs(num_lines=50)
    assert "init() finished" in logs
    assert "POST /score 200" in logs
    assert len(echo_service.get_logs(num_lines=2).splitlines()) == 2


def test_regen_key_applies_to_the_running_container_without_a_restart(echo_service):
    service = echo_service
    started = service.container.attrs["State"]["StartedAt"]
    old_primary, secondary = service.get_keys()
    service.regen_key("Primary")
    new_primary, same_secondary = service.get_keys()
    assert new_primary != old_primary and same_secondary == secondary
    deadline = time.monotonic() + 5
    while requests.post(service.scoring_uri, data="{}", headers=bearer(new_primary), timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the new key was not accepted within 5 s"
        time.sleep(0.1)
    assert requests.post(service.scoring_uri, data="{}", headers=bearer(old_primary), timeout=5).status_code == 401
    assert service.run("{}")["version"] == "v1", "run() uses the new primary key"
    assert service.container.attrs["State"]["StartedAt"] == started, "no restart"


def test_a_failing_init_fails_the_deploy_in_seconds_with_the_traceback(docker_ws, broken):
    service = Webservice.deploy_from_image(docker_ws, "broken-docker", broken, DockerWebservice.deploy_configuration())
    started = time.monotonic()
    with pytest.raises(WebserviceException) as info:
        service.wait_for_deployment()
    took = time.monotonic() - started
    print(f"failing init() reported after {took:.2f} s")
    assert took < 30
    message = str(info.value)
    assert "current service state: Failed" in message
    assert "init() raised RuntimeError: the model file is corrupt" in message
    assert 'raise RuntimeError("the model file is corrupt")' in message, "the traceback is in the error"
    assert "Last log lines:" in message and "calling init()" in message, "and the container's last log lines"
    assert Webservice(docker_ws, "broken-docker").state == "Failed"
    service.delete()


class Hammer:
    """Three clients sending requests with keep-alive until stopped; every answer is kept, and for a
    failure when it started, so that a failed assertion says in which phase of an update it fell."""

    def __init__(self, uri: str, key: str) -> None:
        self.answers: list = []
        self.failures: list[str] = []
        self.started = time.monotonic()
        self.phases: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(uri, key)) for _ in range(3)]
        for t in self._threads:
            t.start()

    def mark(self, phase: str) -> None:
        self.phases.append(f"{time.monotonic() - self.started:.2f} s {phase}")

    def _loop(self, uri: str, key: str) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic() - self.started
            try:
                answer = session.post(uri, data="{}", headers=bearer(key), timeout=10)
                self.answers.append(answer.json()["version"] if answer.status_code == 200 else answer.status_code)
            except requests.RequestException as e:
                self.answers.append(type(e).__name__)
                self.failures.append(f"{type(e).__name__} for a request sent at {sent:.2f} s: {e}")

    def stop(self) -> Counter:
        self.mark("stop")
        self._stop.set()
        for t in self._threads:
            t.join()
        return Counter(self.answers)

    def report(self) -> str:
        return "phases: " + "; ".join(self.phases) + "\nfailures:\n" + "\n".join(self.failures)


def test_update_keeps_the_scoring_uri_and_a_failed_update_keeps_the_old_version_serving(
    docker_client, docker_ws, echo_v1, echo_v2, broken
):
    service = deploy(docker_ws, "rolling", echo_v1[0])
    uri, first_container = service.scoring_uri, service.container.id
    load = Hammer(uri, service.get_keys()[0])
    try:
        started = time.monotonic()
        load.mark("update to echo:2")
        service.update(image=echo_v2[0])
        load.mark("updated")
        print(f"update to a new image: {time.monotonic() - started:.2f} s")
        assert (service.image_id, service.state, service.scoring_uri) == ("echo:2", "Healthy", uri), "same URI"
        load.mark("update to broken:1")
        with pytest.raises(WebserviceException) as info:
            service.update(image=broken)
        load.mark("update refused")
        time.sleep(0.3)
    finally:
        answers = load.stop()
    message = str(info.value)
    assert message.startswith("update of rolling to broken:1 failed; echo:2 keeps serving.")
    assert "init() raised RuntimeError: the model file is corrupt" in message and "score.py" in message
    assert set(answers) == {"v1", "v2"}, (
        f"every request was answered by v1 or v2, none refused or lost: {answers}\n{load.report()}"
    )
    again = Webservice(docker_ws, "rolling")
    assert (again.image_id, again.state, again.scoring_uri) == ("echo:2", "Healthy", uri)
    assert again.run("{}")["version"] == "v2"
    servers = [c.name for c in again._containers("server")]
    assert servers == [again.container.name] and again.container.id != first_container, "one server: the new one"
    assert again.get_logs(5), "logs are the new container's"
    again.update(cpu_cores=0.5, memory_gb=0.25)  # settings only: a new container with the new limits
    limits = again.container.attrs["HostConfig"]
    assert (limits["NanoCpus"], limits["Memory"], again.scoring_uri) == (500_000_000, int(0.25 * 1024**3), uri)
    with pytest.raises(UserError, match="keeps its port"):
        again.update(port=1)
    again.delete()


def test_tls_the_container_serves_https_with_the_given_certificate(
    docker_ws, echo_v1, echo_v2, broken, tmp_path, self_signed_certificate
):
    """v1's ACI ssl_enabled + ssl_cert_pem_file + ssl_key_pem_file + ssl_cname: the server terminates TLS."""

    cert, key = self_signed_certificate(tmp_path / "tls")
    service = deploy(docker_ws, "secure", echo_v1[0], ssl_enabled=True, ssl_cert_pem_file=str(cert), ssl_key_pem_file=str(key),
                     ssl_cname="localhost")  # fmt: skip
    port = service.target["port"]
    assert service.scoring_uri == f"https://localhost:{port}/score"
    assert service.run({"x": 1})["version"] == "v1"  # the client trusts the service's own certificate
    swagger = requests.get(service.swagger_uri, headers=bearer(service.get_keys()[0]), verify=str(cert), timeout=5)
    assert swagger.json()["swagger"] == "2.0"
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(service.scoring_uri, data="{}", headers=bearer(service.get_keys()[0]), timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    renewed, renewed_key = self_signed_certificate(tmp_path / "renewed")
    service.update(image=echo_v2[0], ssl_cert_pem_file=str(renewed), ssl_key_pem_file=str(renewed_key))
    assert service.scoring_uri == f"https://localhost:{port}/score" and service.run("{}")["version"] == "v2"
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert served.strip() == renewed.read_text().strip()  # the new certificate is the one served
    with pytest.raises(UserError, match="TLS on/off and ssl_cname cannot change"):
        service.update(ssl_enabled=False)
    third, third_key = self_signed_certificate(tmp_path / "third")
    with pytest.raises(WebserviceException, match="keeps serving"):
        service.update(image=broken, ssl_cert_pem_file=str(third), ssl_key_pem_file=str(third_key))
    assert Webservice(docker_ws, "secure").run("{}")["version"] == "v2"  # the serving certificate is still the trusted one
    service.delete()


def test_tls_deploys_before_its_name_resolves_and_run_says_where_it_went(docker_ws, echo_v1, tmp_path, self_signed_certificate):
    """As on ACI, the certificate's name is pointed at the service after the deploy: the deploy checks
    the service at its published address against that name, and only clients need the name to resolve."""
    cname = "scoring.mlmagics-test.invalid"  # .invalid never resolves
    cert, key = self_signed_certificate(tmp_path / "tls", name=cname)
    service = deploy(docker_ws, "unnamed", echo_v1[0], ssl_enabled=True, ssl_cert_pem_file=str(cert), ssl_key_pem_file=str(key),
                     ssl_cname=cname)  # fmt: skip
    assert service.state == "Healthy" and service.scoring_uri == f"https://{cname}:{service.target['port']}/score"
    with pytest.raises(WebserviceException, match=f"Could not reach https://{cname}:"):
        service.run("{}")
    service.delete()


def test_delete_removes_the_containers_and_keeps_the_image_until_image_delete(docker_client, docker_ws, app, echo_v1, echo_image):
    image = echo_image(docker_ws, app / "doomed", name="doomed")
    service = deploy(docker_ws, "doomed-svc", image)
    port = service.target["port"]
    service.delete()
    mine = {"label": [f"{LABEL}.workspace={docker_ws.path}", f"{LABEL}.service=doomed-svc"]}
    assert docker_client.containers.list(all=True, filters=mine) == [] and docker_client.volumes.list(filters=mine) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert docker_client.images.get(image.image_location).id == image.build_info["id"], "the image stays"
    location = image.image_location
    image.delete()
    import docker

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(location)


def test_the_faces_deploy_to_docker_through_the_shared_core(docker_ws, echo_v1, tmp_path):
    """`%deploy aci ...`, the deploy form and the CLI all call core.deploy.deploy; here through the CLI."""
    out = subprocess.run(
        [sys.executable, "-m", "mlmagics", "service", "deploy", "cli-docker", "--workspace", str(docker_ws.path),
         "--target", "aci", "--image", "echo:1", "--cpu", "0.5", "--memory", "0.25"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    service = Webservice(docker_ws, "cli-docker")
    assert (type(service), service.state) == (DockerWebservice, "Healthy")
    assert service.container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert service.run("{}")["version"] == "v1"
    service.delete()


# -- registries --------------------------------------------------------------------------------------------
def test_push_and_pull_through_the_registry(docker_client, docker_ws, app, echo_v1, echo_image, image_repo, registry):
    image = echo_image(docker_ws, app / "pushed", name="pushed")
    location = DockerWebservice.push_image(image, registry)  # built first: push needs no separate build step
    assert location == image.image_location == f"{registry}/{image_repo}/pushed:1"
    assert image.build_info["digest"].startswith("sha256:")
    tags = requests.get(f"http://{registry}/v2/{image_repo}/pushed/tags/list", timeout=5).json()["tags"]
    assert "1" in tags
    docker_client.images.remove(location)
    pulled = docker_client.images.pull(location)
    assert pulled.id == image.build_info["id"], "the same image came back"
    image.delete()  # its tags and the pulled copy's digest reference: nothing is left on the engine
    import docker

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(pulled.id)


@pytest.mark.slow  # about 25 s: every layer of the image to a new registry
def test_push_with_credentials_and_a_clear_error_without_them(tmp_path, echo_v1, auth_registry, image_repo):
    registry = auth_registry(tmp_path / "registry", "deployer", "s3cret-pass")
    image, _ = echo_v1
    with pytest.raises(ImageException, match=r"push of .* failed: .*(auth|unauthorized|no basic auth)"):
        DockerWebservice.push_image(image, registry.address, username="deployer", password="wrong")
    location = DockerWebservice.push_image(image, registry.address, username="deployer", password="s3cret-pass")
    listed = requests.get(f"http://{registry.address}/v2/_catalog", auth=("deployer", "s3cret-pass"), timeout=5).json()
    assert f"{image_repo}/echo" in listed["repositories"] and location.startswith(registry.address)


def test_a_service_on_another_engine_is_refused_in_one_line_and_left_alone(docker_ws, echo_service):
    """A team's workspace: the record says which engine runs it. Asked from a machine whose engine is another one
    (here: the record names an engine id this one does not have), every operation says where it runs."""
    assert echo_service.runs_on() == f"Docker on {socket.gethostname()}"
    record = Webservice(docker_ws, "echo-docker")
    real = record.target["engine"]
    record._save(target={**record.target, "engine": "0ther-3ngine", "engine_host": "host-a"})
    elsewhere = Webservice(docker_ws, "echo-docker")
    for operation in (lambda: elsewhere.run({"y": 1}), elsewhere.get_logs, elsewhere.delete, elsewhere.update_deployment_state):
        with pytest.raises(TargetUnavailable) as refused:
            operation()
        assert refused.value.message.startswith("service echo-docker runs on the Docker engine of host-a, not the one at ")
        assert "set DOCKER_HOST to reach that engine (e.g. ssh://host-a)" in refused.value.message
    record._save(target={**record.target, "engine": real})
    assert Webservice(docker_ws, "echo-docker").run({"y": 3})["input"] == {"y": 3}, "nothing was touched"
