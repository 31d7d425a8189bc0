"""The Docker target's parts that need no engine: v1's configuration rules, the Dockerfile and its
build context, the base image setting, and the one-line error when there is no engine."""

from __future__ import annotations

import io
import tarfile
import warnings

import pytest

from mlmagics.core import (
    AciWebservice,
    ContainerImage,
    DockerServiceDeploymentConfiguration,
    DockerWebservice,
    Image,
    InvalidConfiguration,
    TargetUnavailable,
    UserError,
    Webservice,
    deploy_configuration,
    target_class,
)
from mlmagics.core.configs import config_from_dict
from mlmagics.core.targets.docker.build import dockerfile, recipe_digest, requirements_for, write_context
from mlmagics.core.targets.docker.engine import base_image, engine, engine_errors


def test_aci_is_the_docker_target_with_v1_defaults():
    assert AciWebservice is DockerWebservice
    assert target_class("aci") is target_class("docker") is DockerWebservice
    config = AciWebservice.deploy_configuration()
    assert isinstance(config, DockerServiceDeploymentConfiguration) and config.compute_type == "Docker"
    assert config.cpu_cores is None, "v1: every parameter defaults to None"
    names = ("cpu_cores", "memory_gb", "auth_enabled", "scoring_timeout_ms", "host")
    assert [config.effective(k) for k in names] == [0.1, 0.5, True, 60000, "127.0.0.1"]
    again = config_from_dict(AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=2, port=8890).to_dict())
    assert (type(again), again.cpu_cores, again.memory_gb, again.port) == (DockerServiceDeploymentConfiguration, 1, 2, 8890)


def test_v1_validation_collects_every_error_in_one_message():
    with pytest.raises(InvalidConfiguration) as info:
        AciWebservice.deploy_configuration(cpu_cores=0, memory_gb=-1)
    assert "cpu_cores must be greater than zero." in str(info.value)
    assert "memory_gb must be greater than zero." in str(info.value)
    with pytest.raises(InvalidConfiguration, match="SSL is enabled, you must provide a SSL certificate, key, and CNAME."):
        AciWebservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file="cert.pem")
    with pytest.raises(InvalidConfiguration, match="ssl_cert_pem_file c does not exist. ssl_key_pem_file k does not exist."):
        AciWebservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file="c", ssl_key_pem_file="k", ssl_cname="x.example")
    with pytest.raises(InvalidConfiguration, match=r"port must be an integer in \[1, 65535\]"):
        AciWebservice.deploy_configuration(port=70000)
    with pytest.raises(InvalidConfiguration, match="host must be an IP address"):
        AciWebservice.deploy_configuration(host="localhost")
    with pytest.raises(InvalidConfiguration, match="cpu_cores must be a number"):
        AciWebservice.deploy_configuration(cpu_cores="1")


def test_azure_only_settings_are_accepted_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AciWebservice.deploy_configuration(location="westeurope", dns_name_label="mnist", cpu_cores=1)
    assert config.location == "westeurope"
    assert sorted(str(w.message).split()[0] for w in caught) == ["dns_name_label", "location"]


def test_faces_reach_the_docker_settings_by_v1_names():
    config = deploy_configuration("aci", cpu_cores=1.5, memory_gb=2, port=8891, auth_enabled=False)
    assert (config.cpu_cores, config.memory_gb, config.port, config.effective("auth_enabled")) == (1.5, 2, 8891, False)
    with pytest.raises(UserError, match="the docker target has no setting num_replicas"):
        deploy_configuration("docker", num_replicas=2)


def test_the_tls_flags_of_the_cli_and_magics_turn_ssl_enabled_on(tmp_path, write):
    import argparse

    from mlmagics import arguments

    parser = argparse.ArgumentParser()
    arguments.add_deploy_options(parser)
    cert, key = write(tmp_path / "cert.pem", "certificate"), write(tmp_path / "key.pem", "key")
    args = parser.parse_args(["--ssl-cert", str(cert), "--ssl-key", str(key), "--ssl-cname", "localhost"])
    config = deploy_configuration("docker", **arguments.deploy_settings(args))
    assert (config.ssl_enabled, config.ssl_cert_pem_file, config.ssl_cname) == (True, str(cert), "localhost")
    with pytest.raises(InvalidConfiguration, match="SSL is enabled, you must provide a SSL certificate, key, and CNAME."):
        deploy_configuration("docker", **arguments.deploy_settings(parser.parse_args(["--ssl-cert", str(cert)])))
    assert "ssl_enabled" not in arguments.deploy_settings(parser.parse_args([]))


def test_a_bridge_whose_mac_follows_its_containers_is_detected(tmp_path):
    from mlmagics.core.targets.docker.engine import bridge_address_unstable

    bridge = tmp_path / "docker0"
    assert bridge_address_unstable(bridge) is False  # no bridge: nothing to say
    bridge.mkdir()
    (bridge / "addr_assign_type").write_text("1\n")  # random, then the lowest port's: it moves
    assert bridge_address_unstable(bridge) is True
    (bridge / "addr_assign_type").write_text("3\n")  # set by someone (.ci/services.sh): it stays
    assert bridge_address_unstable(bridge) is False


def test_the_base_image_is_a_setting(monkeypatch):
    monkeypatch.delenv("MLMAGICS_BASE_IMAGE", raising=False)
    assert base_image("3.11") == "python:3.11-slim"
    assert base_image("3.12") == "python:3.12-slim", "the notebook's Python"
    monkeypatch.setenv("MLMAGICS_BASE_IMAGE", "registry.local/python:3.11")
    assert base_image("3.11") == "registry.local/python:3.11"
    assert base_image("3.11", "my/base:1") == "my/base:1", "an explicit base image wins"


def _steps(recipe: str) -> list[str]:
    return [line for line in recipe.splitlines() if line]


def test_the_dockerfile_goes_from_what_changes_least_to_what_changes_most(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    recipe = dockerfile(image, "python:3.11-slim")
    steps = _steps(recipe)
    order = [
        "FROM python:3.11-slim",
        "-m venv --without-pip",
        "install -r /opt/mlmagics/runtime-requirements.txt",
        "COPY runtime/ /opt/mlmagics/runtime/",
        "COPY azureml-models/",
        "HEALTHCHECK",
        "CMD [",
        "COPY --chown=10001:10001 app/ /var/azureml-app/",
        "LABEL ",
    ]
    positions = [next(i for i, step in enumerate(steps) if mark in step) for mark in order]
    assert positions == sorted(positions), recipe
    assert "USER 10001:10001" in steps
    assert 'AZUREML_ENTRY_SCRIPT="score.py"' in recipe and 'AZUREML_MODEL_DIR="/var/azureml-app/azureml-models/tiny/1"' in recipe
    assert "java" not in recipe.lower() and "requirements.txt -c" not in recipe, "no Java, no requirements: no such steps"


def test_the_image_is_made_for_a_read_only_root(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    recipe = dockerfile(image, "python:3.11-slim")
    # the models stay out of the app folder, which the targets copy to make it writable; v1's path links to them
    assert "COPY azureml-models/ /opt/mlmagics/models/" in recipe
    assert "ln -s /opt/mlmagics/models /var/azureml-app/azureml-models" in recipe
    assert 'HOME="/tmp"' in recipe and 'TMPDIR="/tmp"' in recipe, "caches and temporary files go to the writable /tmp"
    assert "chown 10001:10001 /var/azureml-app /var/mlmagics-data" in recipe, "a volume mounted there takes its owner"
    assert "compileall -q /opt/mlmagics/runtime" in recipe, "no bytecode to write at run time"
    assert recipe_digest(image, "python:3.11-slim") != recipe_digest(image, "python:3.12-slim"), "a new recipe: a rebuild"


TRIVIAL = "def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n"


@pytest.fixture(scope="session")
def image_with(write):
    """`image_with(ws, folder, requirements, runtime="python", script=TRIVIAL)`: image withdeps of `script` with those
    pip requirements."""

    def create(ws, folder, requirements: str, runtime: str = "python", script: str = TRIVIAL) -> Image:
        write(folder / "score.py", script)
        write(folder / "requirements.txt", requirements)
        import os

        cwd = os.getcwd()
        os.chdir(folder)
        try:
            config = ContainerImage.image_configuration(
                execution_script="score.py", runtime=runtime, requirements="requirements.txt"
            )
            return Image.create(ws, "withdeps", [], config)
        finally:
            os.chdir(cwd)

    return create


def test_requirements_install_before_the_runtime_code_and_notebook_tooling_is_left_out(ws, tmp_path, image_with):
    image = image_with(ws, tmp_path / "app", "numpy\nipykernel\njupyterlab-widgets\n")
    kept, left_out = requirements_for(image)
    assert [k.split("==")[0] for k in kept] == ["numpy"] and len(left_out) == 2
    steps = _steps(dockerfile(image, "base"))
    install = next(i for i, s in enumerate(steps) if "requirements.txt -c /opt/mlmagics/runtime-constraints.txt" in s)
    runtime = next(i for i, s in enumerate(steps) if s.startswith("COPY runtime/"))
    assert install < runtime, "the scoring runtime's code comes after the (slow, stable) dependencies"


def test_spark_py_adds_java_and_pyspark(ws, tmp_path, image_with):
    script = "from pyspark.sql import SparkSession\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n"
    image = image_with(ws, tmp_path / "app", "numpy\n", runtime="spark-py", script=script)  # pyspark: the image's
    recipe = dockerfile(image, "python:3.11-slim")
    assert "default-jre-headless" in recipe
    java = recipe.index("default-jre-headless")
    assert recipe.index("FROM") < java < recipe.index("-m venv"), "Java sits right on the base, below everything else"
    assert any(r.startswith("pyspark") for r in requirements_for(image)[0])


def test_the_build_context_holds_only_the_runtime_the_models_and_the_app(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    out = io.BytesIO()
    write_context(image, "python:3.11-slim", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = set(members)
    assert {"Dockerfile", "runtime-requirements.txt", "runtime-constraints.txt", "requirements.txt"} <= names
    assert "runtime/mlmagics/__init__.py" in names and "runtime/mlmagics/serving/supervisor.py" in names
    root = {"runtime/mlmagics", "runtime/mlmagics/__init__.py", "runtime/mlmagics/_version.py"}
    runtime = {n for n in names if n.startswith("runtime/")} - root
    assert all(n.startswith("runtime/mlmagics/serving") for n in runtime), "only the package's root and mlmagics/serving/"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert members["azureml-models/tiny/1/tiny.txt"].mode == 0o444, "models stay read-only"
    assert members["app/score.py"].mode == 0o644 and members["app/score.py"].uid == 0
    pinned = tarfile.open(fileobj=io.BytesIO(out.getvalue())).extractfile("runtime-requirements.txt").read().decode()
    assert "httptools==" in pinned and "werkzeug==" in pinned.lower(), "pinned to the versions tested here"


def test_an_engine_going_away_mid_call_is_one_line_naming_it(tmp_path, monkeypatch):
    """What the SDK raises when the engine's socket disappears (a dockerd restart) becomes TargetUnavailable;
    an answer of the engine (docker.errors.APIError) is left to the caller."""
    import docker

    gone = f"unix://{tmp_path}/dockerd-was-here.sock"
    monkeypatch.setenv("DOCKER_HOST", gone)
    client = docker.DockerClient(base_url=gone, version="1.41")  # a fixed API version: no call before the test
    with pytest.raises(TargetUnavailable) as info, engine_errors("deploying echo"):
        client.containers.list()
    assert str(info.value) == f"the Docker engine at {gone} stopped answering while deploying echo (No such file or directory)"
    answered = docker.errors.NotFound("No such container: x")
    with pytest.raises(docker.errors.NotFound), engine_errors("deploying echo"):
        raise answered


def test_no_engine_is_one_line_that_says_what_to_do(ws, tmp_path, monkeypatch, echo_image):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    expected = f"no Docker engine at unix://{tmp_path}/no-such-docker.sock: start dockerd (or Docker Desktop) or set DOCKER_HOST"
    with pytest.raises(TargetUnavailable) as info:
        engine()
    assert str(info.value) == expected
    image = echo_image(ws, tmp_path / "app")
    with pytest.raises(TargetUnavailable, match="no Docker engine at"):
        DockerWebservice.build_image(image)
    with pytest.raises(TargetUnavailable, match="no Docker engine at"):
        Webservice.deploy_from_image(ws, "nowhere", image, DockerWebservice.deploy_configuration())
    assert Webservice.list(ws) == [], "refused before anything was recorded"


def test_a_file_replaced_while_the_engine_archives_it_is_read_again_not_a_crash():
    """The engine sizes a file's archive entry before it reads it: a state file renamed over it in between
    arrives short. That read is torn (None, the next poll reads again); a whole archive still reads."""
    from mlmagics.core.targets.docker.service import _read_file, _tar

    whole = _tar({"server-state.json": b'{"workers": {"1": "ready"}}' + b" " * 300})

    class Container:  # only the engine's archive call, answering what the engine sent
        def __init__(self, archive: bytes):
            self.archive = archive

        def get_archive(self, path):
            return iter([self.archive[:700], self.archive[700:]]), {}

    assert _read_file(Container(whole), "/run/x") == b'{"workers": {"1": "ready"}}' + b" " * 300
    data_at = whole.index(b'{"workers"')  # cut inside the file's data, as a shorter replacement file does
    assert _read_file(Container(whole[: data_at + 100]), "/run/x") is None
    assert _read_file(Container(b""), "/run/x") is None
