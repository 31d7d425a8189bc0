"""v1's Environment (reference azureml-v1-later-api.md §2): defaults, factories, and the workspace's registry."""

from __future__ import annotations

import io
import json
import logging

import pytest

from mlmagics.core import CondaDependencies, ContainerRegistry, Environment, UserError
from mlmagics.core.conda_dependencies import PYTHON_DEFAULT_VERSION
from mlmagics.core.environment import DEFAULT_CPU_IMAGE


def test_a_fresh_environment_has_v1s_defaults():
    env = Environment("myenv")
    assert (env.name, env.version, env.inferencing_stack_version) == ("myenv", None, None)
    assert env.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    assert env.python.user_managed_dependencies is False
    assert env.python.interpreter_path == "python"
    assert env.python.conda_dependencies == CondaDependencies()
    assert list(env.python.conda_dependencies.pip_packages) == ["azureml-defaults"]
    assert env.docker.base_image == DEFAULT_CPU_IMAGE == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20251130.v1"
    assert (env.docker.base_dockerfile, env.docker.build_context) == (None, None)
    registry = env.docker.base_image_registry
    assert isinstance(registry, ContainerRegistry) and (registry.address, registry.username, registry.password) == (None,) * 3
    assert (env.docker.shm_size, env.docker.shared_volumes, env.docker.enabled) == ("2g", True, False)
    assert Environment(None).name is None
    assert Environment("a").environment_variables is not Environment("b").environment_variables


def test_str_and_repr():
    env = Environment("myenv")
    assert str(env) == "Environment(Name: myenv,\nVersion: None)"
    data = json.loads(repr(env))
    assert data["name"] == "myenv" and data["version"] is None
    assert data["environmentVariables"] == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    assert data["docker"]["baseImage"] == DEFAULT_CPU_IMAGE
    assert "condaDependencies" in data["python"] and "inferencingStackVersion" in data


@pytest.mark.parametrize("name", [1, 2.5, ["env"]])
def test_a_name_that_is_not_a_str_is_a_type_error(name):
    with pytest.raises(TypeError) as info:
        Environment(name)
    assert str(info.value) == f"Environment name expected str, {type(name)} found"


def test_base_image_dockerfile_and_build_context_exclude_each_other(tmp_path, caplog):
    env = Environment("docker-env")
    with caplog.at_level(logging.WARNING, logger="mlmagics.core.environment"):
        env.docker.base_dockerfile = "FROM python:3.11-slim\nRUN pip install numpy\n"
    assert env.docker.base_image is None
    assert "Property base_dockerfile is mutually exclusive with base_image. Reset base_image to None" in caplog.text
    env.docker.base_image = "python:3.11-slim"
    assert (env.docker.base_image, env.docker.base_dockerfile) == ("python:3.11-slim", None)
    env.docker.build_context = str(tmp_path)
    assert (env.docker.base_image, env.docker.build_context) == (None, str(tmp_path))

    # v1 notebooks: env.docker.base_image = None, then base_dockerfile from text, a path or a file object
    env.docker.base_image = None
    assert env.docker.build_context == str(tmp_path), "setting None resets nothing"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\n")
    env.docker.base_dockerfile = str(dockerfile)
    assert env.docker.base_dockerfile == "FROM python:3.11-slim\n" and env.docker.build_context is None
    env.docker.base_dockerfile = io.StringIO("FROM debian:bookworm\n")
    assert env.docker.base_dockerfile == "FROM debian:bookworm\n"


def test_from_conda_specification_adds_the_default_python_when_none_is_pinned(tmp_path, caplog):
    pinned = tmp_path / "pinned.yml"
    pinned.write_text("name: p\ndependencies:\n- python=3.9.7\n- pip:\n  - joblib\n")
    env = Environment.from_conda_specification("pinned", pinned)
    assert env.python.conda_dependencies.get_python_version() == "3.9.7"
    assert list(env.python.conda_dependencies.pip_packages) == ["joblib"]

    unpinned = tmp_path / "unpinned.yml"
    unpinned.write_text("name: u\ndependencies:\n- numpy\n- pip:\n  - joblib\n")
    with caplog.at_level(logging.WARNING, logger="mlmagics.core.environment"):
        env = Environment.from_conda_specification("unpinned", str(unpinned))
    assert f'No Python version provided, defaulting to "{PYTHON_DEFAULT_VERSION}"' in caplog.text
    assert f"python={PYTHON_DEFAULT_VERSION}" in list(env.python.conda_dependencies.conda_packages)
    assert "numpy" in list(env.python.conda_dependencies.conda_packages)
    assert env.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"} and env.name == "unpinned"


def test_from_pip_requirements_replaces_the_pip_list_and_adds_pip(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("--extra-index-url https://x.example/simple\nscikit-learn==1.3.2\n\njoblib\n")
    env = Environment.from_pip_requirements("pipenv", requirements)
    cd = env.python.conda_dependencies
    assert list(cd.pip_packages) == ["scikit-learn==1.3.2", "joblib"], "azureml-defaults is gone: the file replaced the list"
    assert list(cd.pip_options) == ["--extra-index-url https://x.example/simple"]
    assert list(cd.conda_packages)[-1] == "pip"
    assert "azureml-defaults" not in cd.serialize_to_string()

    env = Environment.from_pip_requirements("pinned-pip", str(requirements), pip_version="23.3.1")
    assert list(env.python.conda_dependencies.conda_packages)[-1] == "pip=23.3.1"


def test_from_docker_image_and_dockerfile(tmp_path):
    conda = tmp_path / "env.yml"
    conda.write_text("name: e\ndependencies:\n- python=3.10\n- pip:\n  - joblib\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib\n")

    plain = Environment.from_docker_image("img", "python:3.11-slim")
    assert plain.docker.base_image == "python:3.11-slim"
    assert plain.python.user_managed_dependencies is True, "no spec: the image's Python as it is"
    registry = ContainerRegistry("myacr.azurecr.io", "user", "secret")
    with_conda = Environment.from_docker_image("img2", "myacr.azurecr.io/base:1", registry, conda_specification=str(conda))
    assert with_conda.python.user_managed_dependencies is False
    assert with_conda.docker.base_image_registry is registry
    assert list(with_conda.python.conda_dependencies.pip_packages) == ["joblib"]
    with pytest.raises(UserError) as info:
        Environment.from_docker_image(
            "img3", "python:3.11-slim", conda_specification=str(conda), pip_requirements=str(requirements)
        )
    assert info.value.message == "Only one of conda_specification or pip_requirements can be specified as python dependencies"

    from_file = Environment.from_dockerfile("df", "FROM python:3.11-slim\n", pip_requirements=str(requirements))
    assert (from_file.docker.base_dockerfile, from_file.docker.base_image) == ("FROM python:3.11-slim\n", None)
    assert list(from_file.python.conda_dependencies.pip_packages) == ["joblib"]


def test_clone_is_a_deep_copy_without_a_version(ws):
    env = Environment("original")
    env.python.conda_dependencies.add_pip_package("joblib")
    registered = env.register(ws)
    twin = registered.clone("twin")
    assert (twin.name, twin.version) == ("twin", None)
    twin.python.conda_dependencies.add_pip_package("pandas")
    twin.environment_variables["MODE"] = "fast"
    assert "pandas" not in list(registered.python.conda_dependencies.pip_packages)
    assert "MODE" not in registered.environment_variables
    for empty in ("", None):
        with pytest.raises(UserError) as info:
            env.clone(empty)
        assert info.value.message == "Name is required to instantiate an Environment object"


def test_register_versions_a_definition_and_returns_a_copy(ws):
    env = Environment("sklearn-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["scikit-learn", "joblib"])
    registered = env.register(ws)
    assert registered is not env
    assert (registered.name, registered.version, env.version) == ("sklearn-env", "1", None)
    assert registered.python.conda_dependencies == env.python.conda_dependencies

    assert env.register(ws).version == "1", "an identical definition keeps its version"
    assert registered.register(ws).version == "1", "so does the registered copy registered again"
    assert env.register(ws).version == "1"

    env.environment_variables["MODE"] = "fast"
    assert env.register(ws).version == "2"
    env.python.conda_dependencies.add_pip_package("pandas")
    third = env.register(ws)
    assert third.version == "3" and env.version is None

    latest = Environment.get(ws, "sklearn-env")
    assert latest.version == "3" and "pandas" in list(latest.python.conda_dependencies.pip_packages)
    assert latest.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE", "MODE": "fast"}
    first = Environment.get(ws, "sklearn-env", version="1")
    assert first.version == "1" and "MODE" not in first.environment_variables
    assert first == registered

    with pytest.raises(UserError) as info:
        Environment("").register(ws)
    assert info.value.message == "Name is required to instantiate an Environment object"


def test_get_refuses_version_with_label_and_a_missing_name(ws):
    Environment("e").register(ws)
    with pytest.raises(UserError) as info:
        Environment.get(ws, "e", version="1", label="latest")
    assert info.value.message == "Only one of version or label can be specified"
    with pytest.raises(UserError, match="environment nope not found"):
        Environment.get(ws, "nope")
    with pytest.raises(UserError, match="environment e version 7 not found"):
        Environment.get(ws, "e", version="7")
    with pytest.raises(UserError, match="curated environments do not exist here"):
        Environment.get(ws, "AzureML-Minimal")


def test_list_gives_the_latest_version_of_each_name(ws):
    assert Environment.list(ws) == {}
    Environment("b-env").register(ws)
    a = Environment("a-env")
    a.register(ws)
    a.environment_variables["X"] = "1"
    a.register(ws)
    listed = Environment.list(ws)
    assert list(listed) == ["a-env", "b-env"]
    assert (listed["a-env"].version, listed["b-env"].version) == ("2", "1")
    assert listed["a-env"].environment_variables["X"] == "1"


def test_save_to_directory_and_load_from_directory_round_trip(tmp_path):
    env = Environment("saved")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["joblib"], conda_packages=["numpy"])
    env.environment_variables = {"MODE": "fast"}
    env.docker.base_image = "python:3.11-slim"
    env.docker.base_image_registry = ContainerRegistry("reg.example", "me", "secret")
    env.inferencing_stack_version = "latest"
    folder = tmp_path / "saved-env"
    env.save_to_directory(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["azureml_environment.json", "conda_dependencies.yml"]
    assert "secret" not in (folder / "azureml_environment.json").read_text(), "the password is never written"
    assert CondaDependencies(folder / "conda_dependencies.yml") == env.python.conda_dependencies

    loaded = Environment.load_from_directory(folder)
    assert (loaded.name, loaded.environment_variables, loaded.docker.base_image) == (
        "saved",
        {"MODE": "fast"},
        "python:3.11-slim",
    )
    assert loaded.python.conda_dependencies == env.python.conda_dependencies
    assert loaded.docker.base_image_registry.address == "reg.example" and loaded.docker.base_image_registry.password is None
    assert loaded.inferencing_stack_version == "latest"

    with pytest.raises(UserError, match="not empty; pass overwrite=True"):
        env.save_to_directory(folder)
    env.environment_variables["MODE"] = "slow"
    env.save_to_directory(folder, overwrite=True)
    assert Environment.load_from_directory(folder).environment_variables == {"MODE": "slow"}


@pytest.mark.parametrize("version", ["abc", "1.5", "-1", "9" * 30])
def test_get_with_a_version_that_is_not_a_number_is_one_line(ws, version):
    Environment("e").register(ws)
    with pytest.raises(UserError, match="environment version must be a number"):
        Environment.get(ws, "e", version=version)
    assert Environment.get(ws, "e", version=1).version == "1"


def test_missing_or_broken_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot read the pip requirements file"):
        Environment.from_pip_requirements("x", tmp_path / "nope.txt")
    with pytest.raises(UserError, match="cannot read the environment file"):
        Environment.load_from_directory(tmp_path / "none")
    (tmp_path / "azureml_environment.json").write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        Environment.load_from_directory(tmp_path)
    (tmp_path / "azureml_environment.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="is not an environment definition"):
        Environment.load_from_directory(tmp_path)


def test_a_registry_password_is_never_kept_nor_shown(ws, tmp_path, caplog):
    registry = ContainerRegistry("reg.example", "me", "s3cret")
    registry.password = "s3cret-too"
    assert registry.password is None and "s3cret" not in repr(registry) + repr(vars(registry))
    assert "docker login reg.example" in caplog.text and "s3cret" not in caplog.text
    env = Environment("e")
    env.docker.base_image_registry = registry
    assert "s3cret" not in repr(env) + str(env)
    registered = env.register(ws)
    assert "s3cret" not in ws.query("SELECT definition FROM environments")[0]["definition"]
    assert registered.docker.base_image_registry.username == "me"
