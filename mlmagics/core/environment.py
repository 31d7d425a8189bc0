"""v1's `Environment`: what a scoring script runs with — Python packages, environment variables, a base image.

    env = Environment("sklearn-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["scikit-learn", "joblib"])
    env.environment_variables["MODE"] = "fast"
    registered = env.register(ws)          # sklearn-env, version "1" (an identical definition keeps its version)
    Environment.get(ws, "sklearn-env")

An `InferenceConfig(entry_script=..., environment=env)` turns it into an image's environment:
the conda file's pip and PyPI-named conda packages, pinned where the model needs it
(`environments.py`), and the variables set for the script. What only Azure had — curated
`AzureML-*` environments, conda itself, Azure's default base images — has a local stand-in,
said in one line where it is used.
"""

from __future__ import annotations

import builtins
import copy
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .conda_dependencies import PYTHON_DEFAULT_VERSION, CondaDependencies
from .errors import UserError
from .workspace import Workspace, now

log = logging.getLogger(__name__)

# v1's default images; they exist only on Azure's registry. An image whose base is one of Azure's
# (mcr.microsoft.com/azureml/...) gets mlmagics' own base instead, which the build says.
DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20251130.v1"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20251130.v1"
AZURE_BASE_IMAGES = "mcr.microsoft.com/azureml/"
_DEFAULT_VARIABLES = {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}


class ContainerRegistry:
    """Where a base image comes from (v1's class). A password is accepted and dropped: nothing here pulls with it
    (the Docker engine uses its own `docker login`), so it is never kept, shown or written."""

    def __init__(self, address: str | None = None, username: str | None = None, password: str | None = None) -> None:
        self.address, self.username = address, username
        self.password = password

    @property
    def password(self) -> None:
        return None

    @password.setter
    def password(self, value: str | None) -> None:
        if value:
            log.warning("ContainerRegistry's password is not kept: log in with `docker login %s` instead", self.address or "")

    def __repr__(self) -> str:
        return f"ContainerRegistry(address={self.address!r}, username={self.username!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "username": self.username, "password": None}


class PythonSection:
    def __init__(self) -> None:
        self.user_managed_dependencies = False  # True: the base image's Python as it is, nothing installed
        self.interpreter_path = "python"
        self.conda_dependencies_file: str | None = None
        self._conda = CondaDependencies()

    @property
    def conda_dependencies(self) -> CondaDependencies:
        return self._conda

    @conda_dependencies.setter
    def conda_dependencies(self, value: CondaDependencies) -> None:
        if not isinstance(value, CondaDependencies):
            raise UserError("python.conda_dependencies must be a CondaDependencies")
        self._conda = value


class DockerSection:
    """Base image, Dockerfile or build context: one of the three (setting one resets the others, as v1)."""

    def __init__(self) -> None:
        self._base_image: str | None = DEFAULT_CPU_IMAGE
        self._base_dockerfile: str | None = None
        self._build_context: Any = None
        self.base_image_registry = ContainerRegistry()
        self.enabled = False  # deprecated in v1; kept for notebooks that set it
        self.shm_size = "2g"
        self.shared_volumes = True
        self.arguments: list[str] = []

    def _only(self, keep: str, value: Any) -> None:
        if value:
            for other in ("base_image", "base_dockerfile", "build_context"):
                if other != keep and getattr(self, f"_{other}"):
                    log.warning("Property %s is mutually exclusive with %s. Reset %s to None", keep, other, other)
                    setattr(self, f"_{other}", None)

    @property
    def base_image(self) -> str | None:
        return self._base_image

    @base_image.setter
    def base_image(self, value: str | None) -> None:
        self._only("base_image", value)
        self._base_image = value

    @property
    def base_dockerfile(self) -> str | None:
        return self._base_dockerfile

    @base_dockerfile.setter
    def base_dockerfile(self, value: Any) -> None:
        """Dockerfile text, a path to one, or a file object (read now, as v1)."""
        if hasattr(value, "read"):
            value = value.read()
        elif isinstance(value, str) and "\n" not in value and os.path.isfile(value):
            value = Path(value).read_text()
        self._only("base_dockerfile", value)
        self._base_dockerfile = value

    @property
    def build_context(self) -> Any:
        return self._build_context

    @build_context.setter
    def build_context(self, value: Any) -> None:
        self._only("build_context", value)
        self._build_context = value


class Environment:
    """A named, versionable environment (v1's class and defaults; `register` versions it in the workspace)."""

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Environment name expected str, {type(name)} found")
        self.name = name
        self.version: str | None = None
        self.environment_variables: dict[str, str] = dict(_DEFAULT_VARIABLES)
        self.python = PythonSection()
        self.docker = DockerSection()
        self.inferencing_stack_version: str | None = None
        self.r = None
        self.spark = None
        self.databricks = None

    # -- factories (v1's) -----------------------------------------------------------------------------
    @staticmethod
    def from_conda_specification(name: str, file_path: str | os.PathLike) -> Environment:
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        if env.python.conda_dependencies.get_python_version() is None:
            log.warning('No Python version provided, defaulting to "%s"', PYTHON_DEFAULT_VERSION)
            env.python.conda_dependencies.set_python_version(PYTHON_DEFAULT_VERSION)
        return env

    @staticmethod
    def from_pip_requirements(name: str, file_path: str | os.PathLike, pip_version: str | None = None) -> Environment:
        """The requirements file replaces the pip list (options kept, `azureml-defaults` dropped), as v1."""
        env = Environment(name)
        lines = [line.strip() for line in _read(file_path, "pip requirements file").splitlines()]
        lines = [line for line in lines if line and not line.startswith("#") and line.split("=")[0] != "azureml-defaults"]
        env.python.conda_dependencies.set_pip_requirements(lines)
        env.python.conda_dependencies.add_conda_package(f"pip={pip_version}" if pip_version else "pip")
        return env

    @staticmethod
    def from_existing_conda_environment(name: str, conda_environment_name: str) -> Environment | None:
        """From `conda env export`; None (with the reason printed, as v1) when conda or the env is missing."""
        conda = shutil.which("conda")
        if conda is None:
            print("conda is not installed here: cannot read the conda environment", conda_environment_name)
            return None
        done = subprocess.run([conda, "env", "export", "--no-builds", "--name", conda_environment_name],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode != 0:
            print(f"Could not find existing conda environment named: {conda_environment_name}")
            return None
        data = yaml.safe_load(done.stdout) or {}
        data.pop("prefix", None)
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(_underlying_structure=data)
        return env

    @staticmethod
    def from_docker_image(
        name: str,
        image: str,
        container_registry: ContainerRegistry | None = None,
        conda_specification: str | None = None,
        pip_requirements: str | None = None,
    ) -> Environment:
        env = Environment._with_spec(name, conda_specification, pip_requirements)
        env.docker.base_image = image
        if container_registry is not None:
            env.docker.base_image_registry = container_registry
        return env

    @staticmethod
    def from_dockerfile(
        name: str, dockerfile: str, conda_specification: str | None = None, pip_requirements: str | None = None
    ) -> Environment:
        env = Environment._with_spec(name, conda_specification, pip_requirements)
        env.docker.base_dockerfile = dockerfile
        return env

    @staticmethod
    def _with_spec(name: str, conda_specification: str | None, pip_requirements: str | None) -> Environment:
        if conda_specification and pip_requirements:
            raise UserError("Only one of conda_specification or pip_requirements can be specified as python dependencies")
        if conda_specification:
            return Environment.from_conda_specification(name, conda_specification)
        if pip_requirements:
            return Environment.from_pip_requirements(name, pip_requirements)
        env = Environment(name)
        env.python.user_managed_dependencies = True
        return env

    def clone(self, new_name: str) -> Environment:
        if not new_name:
            raise UserError("Name is required to instantiate an Environment object")
        twin = copy.deepcopy(self)
        twin.name, twin.version = new_name, None
        return twin

    # -- what an image gets ----------------------------------------------------------------------------
    def conda_text(self) -> str | None:
        """The conda file an image's requirements come from; None when the dependencies are user-managed."""
        if self.python.user_managed_dependencies:
            return None
        return self.python.conda_dependencies.serialize_to_string()

    def custom_base_image(self) -> str | None:
        """A base image of the user's own (Azure's defaults have mlmagics' base as their local stand-in)."""
        image = self.docker.base_image
        return image if image and not image.startswith(AZURE_BASE_IMAGES) else None

    # -- the workspace's registry ------------------------------------------------------------------------
    def register(self, workspace: Workspace) -> Environment:
        """Store this definition as the next version of its name (an identical one keeps its version); returns
        the registered copy, as v1 (this object keeps `version=None`)."""
        if not self.name:
            raise UserError("Name is required to instantiate an Environment object")
        if self.version is not None:
            log.warning("Environment version is set. Attempting to register desired version. To auto-version, "
                        "reset version to None.")  # fmt: skip
        definition = self._definition()
        # the version is not part of what is compared or stored: a registered copy registered again is identical
        text = json.dumps({**definition, "version": None}, sort_keys=True)
        with workspace.transaction() as tx:
            latest = tx.execute(
                "SELECT version, definition FROM environments WHERE name=:name ORDER BY version DESC LIMIT 1", {"name": self.name}
            ).first()
            if latest is not None and latest["definition"] == text and self.version in (None, str(latest["version"])):
                version = latest["version"]
            else:
                version = int(self.version) if self.version and str(self.version).isdigit() else None
                version = version or tx.next_version("environment", self.name)
                tx.execute(
                    "INSERT INTO environments (name, version, definition, created_time)"
                    " VALUES (:name, :version, :definition, :created_time) ON CONFLICT (name, version)"
                    " DO UPDATE SET definition = excluded.definition, created_time = excluded.created_time",
                    {"name": self.name, "version": version, "definition": text, "created_time": now()},
                )
        registered = Environment._from_definition(definition)
        registered.version = str(version)
        return registered

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | None = None, label: str | None = None) -> Environment:
        if version is not None and label is not None:
            raise UserError("Only one of version or label can be specified")
        if label is not None:
            raise UserError(f"environment labels are not kept in a local workspace; ask for {name!r} by version")
        if version is None:
            row = workspace.query("SELECT * FROM environments WHERE name=:name ORDER BY version DESC LIMIT 1", {"name": name})
        else:
            if not str(version).isdigit() or len(str(version)) > 9:
                raise UserError(f"environment version must be a number such as '1', got {version!r}")
            row = workspace.query("SELECT * FROM environments WHERE name=:name AND version=:version",
                                  {"name": name, "version": int(version)})  # fmt: skip
        if not row:
            hint = (" (Azure's curated environments do not exist here: build one with Environment(...) and register it)"
                    if name.startswith(("AzureML", "Microsoft")) else "")  # fmt: skip
            raise UserError(f"environment {name}" + (f" version {version}" if version else "") + f" not found{hint}")
        env = Environment._from_definition(json.loads(row[0]["definition"]))
        env.version = str(row[0]["version"])
        return env

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """The latest version of every registered environment, by name."""
        names = [r["name"] for r in workspace.query("SELECT DISTINCT name FROM environments ORDER BY name")]
        return {name: Environment.get(workspace, name) for name in names}

    # -- files (v1's save_to_directory / load_from_directory) -------------------------------------------
    def save_to_directory(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        folder = Path(path)
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise UserError(f"{folder} is not empty; pass overwrite=True to replace the environment files there")
        folder.mkdir(parents=True, exist_ok=True)
        definition = self._definition()
        conda = definition["python"].pop("condaDependencies")
        (folder / "azureml_environment.json").write_text(json.dumps(definition, indent=4))
        (folder / "conda_dependencies.yml").write_text(CondaDependencies(_underlying_structure=conda).serialize_to_string())

    @staticmethod
    def load_from_directory(path: str | os.PathLike) -> Environment:
        folder = Path(path)
        try:
            definition = json.loads(_read(folder / "azureml_environment.json", "environment file"))
        except json.JSONDecodeError as e:
            raise UserError(f"{folder / 'azureml_environment.json'} is not valid JSON: {e}") from None
        if not isinstance(definition, dict) or not isinstance(definition.get("python") or {}, dict):
            raise UserError(f"{folder / 'azureml_environment.json'} is not an environment definition")
        definition["python"] = {**(definition.get("python") or {}),
                                "condaDependencies": CondaDependencies(folder / "conda_dependencies.yml")._data}  # fmt: skip
        return Environment._from_definition(definition)

    # -- serialising ----------------------------------------------------------------------------------------
    def _definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "environmentVariables": dict(self.environment_variables or {}),
            "python": {
                "userManagedDependencies": self.python.user_managed_dependencies,
                "interpreterPath": self.python.interpreter_path,
                "condaDependenciesFile": self.python.conda_dependencies_file,
                "condaDependencies": self.python.conda_dependencies._data,
            },
            "docker": {
                "baseImage": self.docker.base_image,
                "baseDockerfile": self.docker.base_dockerfile,
                "baseImageRegistry": self.docker.base_image_registry.to_dict(),
                "arguments": builtins.list(self.docker.arguments),
            },
            "inferencingStackVersion": self.inferencing_stack_version,
        }

    @staticmethod
    def _from_definition(definition: dict[str, Any]) -> Environment:
        env = Environment(definition.get("name"))
        env.version = definition.get("version")
        env.environment_variables = dict(definition.get("environmentVariables") or {})
        python = definition.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies"))
        env.python.interpreter_path = python.get("interpreterPath") or "python"
        env.python.conda_dependencies_file = python.get("condaDependenciesFile")
        env.python.conda_dependencies = CondaDependencies(_underlying_structure=copy.deepcopy(python.get("condaDependencies")))
        docker = definition.get("docker") or {}
        env.docker._base_image = docker.get("baseImage")
        env.docker._base_dockerfile = docker.get("baseDockerfile")
        registry = docker.get("baseImageRegistry") or {}
        env.docker.base_image_registry = ContainerRegistry(registry.get("address"), registry.get("username"))
        env.docker.arguments = builtins.list(docker.get("arguments") or [])
        env.inferencing_stack_version = definition.get("inferencingStackVersion")
        return env

    def __str__(self) -> str:
        return f"Environment(Name: {self.name},\nVersion: {self.version})"

    def __repr__(self) -> str:
        return json.dumps(self._definition(), indent=4)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and self._definition() == other._definition()


def _read(path: str | os.PathLike, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the {what} {path}: {getattr(e, 'strerror', None) or e}") from None
