"""v1's later deploy API: `InferenceConfig`, and what `Model.deploy` / `Model.package` do with it.

    env = Environment.from_conda_specification("myenv", "myenv.yml")
    inference_config = InferenceConfig(entry_script="score.py", source_directory="src", environment=env)
    service = Model.deploy(ws, "myservice", [model], inference_config, LocalWebservice.deploy_configuration(port=6789))
    service.wait_for_deployment(show_output=True)

An InferenceConfig becomes an image configuration (`ImageConfig`): the same snapshot, pre-flight
check and pinned environment as `ContainerImage.image_configuration`, so every target, face and
test downstream is shared. Validation happens in the constructor, with v1's messages and order.
"""

from __future__ import annotations

import ast
import keyword
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from . import progress as progress_mod
from .configs import DeploymentConfiguration
from .deploy import existing_service
from .environment import ContainerRegistry, Environment
from .errors import UserError, WebserviceException
from .images import RUNTIMES, Image, ImageConfig, resolve_models
from .models import Model, check_service_name
from .plans import DeploymentPlan
from .profiling import ModelProfile, requests_from
from .services import Webservice, target_class
from .workspace import Workspace

_DEPRECATED = ("runtime", "conda_file", "extra_docker_file_steps", "enable_gpu", "cuda_version", "base_image")
_CUDA_VERSIONS = ("9.0", "9.1", "10.0")
_HOW_TO = "https://docs.microsoft.com/azure/machine-learning/how-to-use-environments"


class InferenceConfig:
    """What a service runs: the entry script, its folder and its environment (v1's class, parameters and checks)."""

    def __init__(
        self,
        entry_script: str,
        runtime: str | None = None,
        conda_file: str | None = None,
        extra_docker_file_steps: str | None = None,
        source_directory: str | None = None,
        enable_gpu: bool | None = None,
        description: str | None = None,
        base_image: str | None = None,
        base_image_registry: Any = None,
        cuda_version: str | None = None,
        environment: Environment | None = None,
    ) -> None:
        self.entry_script = entry_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.extra_docker_file_steps = extra_docker_file_steps
        self.source_directory = os.path.realpath(source_directory) if source_directory else None
        self.enable_gpu = enable_gpu
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version
        self.environment = environment
        self.validate_configuration()

    def __repr__(self) -> str:
        return (
            f"InferenceConfig(entry_script={self.entry_script!r}, source_directory={self.source_directory!r}, "
            f"environment={getattr(self.environment, 'name', None)!r})"
        )

    def validate_configuration(self) -> None:
        """v1's checks in v1's order; each failure is a WebserviceException with v1's message."""
        for name in _DEPRECATED:
            if getattr(self, name):
                warnings.warn(
                    f"{name} parameter has been deprecated and will be removed in a future release. "
                    f"Please migrate to using Environments. {_HOW_TO}",
                    DeprecationWarning,
                    stacklevel=3,
                )
        if not self.entry_script:
            raise WebserviceException("Error, need to specify entry_script.")
        if self.environment is not None:
            if any(getattr(self, name) for name in _DEPRECATED):
                raise WebserviceException(
                    "Error, unable to provide runtime, conda_file, extra_docker_file_steps, enable_gpu, cuda_version, "
                    "or base_image along with an environment object."
                )
            if self.environment.docker.base_image and self.environment.docker.base_dockerfile:
                raise WebserviceException(
                    "Error, only one of base_dockerfile or base_image should be provided to the environment.docker object."
                )
        if self.source_directory and not os.path.isdir(self.source_directory):
            raise WebserviceException(f"source directory {self.source_directory} doesn't exist. ")
        script = self.script_path()
        if not script.is_file():
            raise WebserviceException(
                f"entry_script {os.path.normpath(script)} doesn't exist. entry_script should be path relative to "
                "current working directory"
            )
        if script.suffix != ".py":
            raise WebserviceException("Invalid driver type. Currently only Python drivers are supported.")
        if not script.stem.isidentifier() or keyword.iskeyword(script.stem):
            raise WebserviceException(
                f'Error, invalid name "{script.stem}" for provided entry script. The script must be importable as a '
                "valid python module, and must adhere to standard module naming. This means it must be a valid python "
                "identifier and not a part of the set of python standard keywords."
            )
        if self.runtime and self.runtime.lower() not in ("python", "spark-py", "python-slim"):
            raise WebserviceException("Provided runtime not supported. Possible runtimes are: spark-py|python")
        if self.cuda_version and str(self.cuda_version) not in _CUDA_VERSIONS:
            raise WebserviceException("Provided cuda_version not supported. Possible cuda_versions are: 9.0|9.1|10.0")
        for label, path in (("Conda file", self.conda_file), ("extra docker file steps", self.extra_docker_file_steps)):
            if path and not (self.root() / path).is_file():
                raise WebserviceException(f"{label} {path} doesn't exist. ")
        try:
            source = script.read_text()
        except (OSError, UnicodeDecodeError):
            raise UserError(
                f"Failed to open {script}, please check if it exists and the read permission. We can not deploy the "
                "model if we can not access this file."
            ) from None
        try:
            ast.parse(source, filename=script.name)
        except SyntaxError as e:
            raise UserError(f"{e}. Please check it and try local deployment to verify.") from None

    def root(self) -> Path:
        """The folder the entry script and the files are relative to: the source directory, else the CWD."""
        return Path(self.source_directory) if self.source_directory else Path.cwd()

    def script_path(self) -> Path:
        return self.root() / self.entry_script

    # -- what an image gets ------------------------------------------------------------------------------
    def image_config(self) -> ImageConfig:
        """The image configuration this becomes: the same snapshot and checks as ContainerImage's."""
        runtime = (self.runtime or "python").lower()
        env = self.environment
        return ImageConfig(
            execution_script=self.entry_script,
            runtime=runtime if runtime in RUNTIMES else "python",
            conda_file=self.conda_file,
            docker_file=self.extra_docker_file_steps,
            enable_gpu=self.enable_gpu,
            description=self.description,
            base_image=env.custom_base_image() if env is not None else self.base_image,
            base_image_registry=self.base_image_registry,
            cuda_version=self.cuda_version,
            source_directory=self.source_directory,
            conda_spec=env.conda_text() if env is not None else None,
            environment_variables=self._variables(),
            tags={"environment": f"{env.name}:{env.version}" if env.version else str(env.name)} if env is not None else None,
        )

    def _variables(self) -> dict[str, str]:
        """The script's variables: its environment's, and v1's AZUREML_SOURCE_DIRECTORY (the folder is on sys.path)."""
        variables = dict(self.environment.environment_variables) if self.environment is not None else {}
        if self.source_directory:
            variables["AZUREML_SOURCE_DIRECTORY"] = os.path.basename(self.source_directory)
        return variables

    def create_image(self, workspace: Workspace, name: str, models: list, progress: progress_mod.Progress) -> Image:
        """The next version of image `name` for `models` (Model objects, ids or paths: Image.create resolves them):
        the script and its files snapshotted now. What changed in the requirements (pins the pickled model excludes)
        is said as a warning, one line each."""
        image = Image.create(workspace, name, models, self.image_config(), progress=progress)
        for text in image.warnings:
            if text.startswith("requirements changed"):
                warnings.warn(text, UserWarning, stacklevel=4)
        return image

    def local_stand_ins(self, compute_type: str) -> list[str]:
        """What v1 did that this target does differently, one line each (printed at deploy: never silent)."""
        env, notes = self.environment, []
        if env is not None and env.docker.base_dockerfile:
            notes.append(
                "environment.docker.base_dockerfile is not built: images start from mlmagics' base image "
                "($MLMAGICS_BASE_IMAGE, else python:<version>-slim) with the environment's pip packages"
            )
        if compute_type == "Local" and env is not None and not env.python.user_managed_dependencies:
            notes.append(
                f"the local target runs the service in this Python ({sys.executable}); the environment's packages "
                "are checked against it, not installed (the docker target builds them into an image)"
            )
        return notes

    # -- Model.deploy / Model.package -------------------------------------------------------------------------
    def deploy(
        self,
        workspace: Workspace,
        name: str,
        models: list,
        deployment_config: DeploymentConfiguration | None = None,
        deployment_target: Any = None,
        overwrite: bool = False,
        show_output: bool = False,
    ) -> Webservice | DeploymentPlan:
        """`Model.deploy`: an image named after the service, then a new service — or the existing one of that
        name moved to it (v1: a local service is always replaced; elsewhere `overwrite=True` is needed).
        Returns without waiting, as v1; a replaced service is already serving the new version."""
        check_service_name(name)
        if deployment_config is None:
            if deployment_target is not None:
                deployment_config = target_class("Kubernetes").deploy_configuration()
            else:  # v1: ACI; the Docker target is its local equivalent
                deployment_config = target_class("ACI").deploy_configuration()
        if not isinstance(deployment_config, DeploymentConfiguration):
            raise UserError("deployment_config must come from a target's deploy_configuration(...)")
        cls = target_class(deployment_config.compute_type)
        report = progress_mod.resolve(None, show_output)
        model_objects = resolve_models(workspace, models)
        if show_output:
            self._describe(model_objects, cls.compute_type)
        for note in self.local_stand_ins(cls.compute_type):
            print(f"Note: {note}")
        existing = existing_service(workspace, name)
        replace = existing is not None and (overwrite or cls is target_class("Local"))
        Webservice.check_for_existing_webservice(workspace, name, overwrite=replace)
        image = self.create_image(workspace, name, model_objects, report)
        if replace and existing is not None and existing.compute_type == cls.compute_type:
            given = deployment_config.to_dict()
            settings = {k: v for k, v in given.items() if v is not None and k not in ("port", "compute_type")}
            planned = existing.update(image=image, progress=report, **settings)
            return planned or Webservice(workspace, name)
        if replace and existing is not None:  # another target: the old one goes first, as v1's overwrite
            existing.delete(progress=report)
        service = Webservice.deploy_from_image(workspace, name, image, deployment_config, deployment_target, report)
        if show_output and isinstance(service, Webservice):
            print("Request submitted, please run wait_for_deployment(show_output=True) to get deployment status.")
        return service

    def package(
        self,
        workspace: Workspace,
        models: list,
        generate_dockerfile: bool = False,
        image_name: str | None = None,
        image_label: str | None = None,
    ) -> ModelPackage:
        """`Model.package`: an image snapshot now; its Docker image (or build context) when waited for."""
        name = image_name or "package"
        image = self.create_image(workspace, name, models, progress_mod.NullProgress())
        return ModelPackage(workspace, image, generate_dockerfile, image_label)

    def profile(
        self,
        workspace: Workspace,
        profile_name: str,
        models: list,
        input_dataset: Any,
        cpu: float | None = None,
        memory_in_gb: float | None = None,
        description: str | None = None,
    ) -> ModelProfile:
        """`Model.profile`: v1's checks now; the measurement when waited for (profiling.py)."""
        if not profile_name:
            raise UserError("profile_name cannot be None or empty.")
        if cpu is not None and not 0.1 <= cpu <= 3.5:
            raise UserError(f"Expected cpu value is between 0.1 and 3.5. Provided: {cpu}")
        if memory_in_gb is not None and not 0.1 <= memory_in_gb <= 15.0:
            raise UserError(f"Expected memory value is between 0.1 and 15.0. Provided: {memory_in_gb}")
        rows = requests_from(input_dataset)
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in profile_name.lower()).strip("._-")[:32] or "profile"
        image = self.create_image(workspace, name if len(name) > 1 else "profile", models, progress_mod.NullProgress())
        return ModelProfile(workspace, profile_name, image, rows, cpu, memory_in_gb, description)

    def _describe(self, models: list[Model], compute_type: str) -> None:
        print(f"Models: {[m.id for m in models]}")
        print(f"Compute target: {compute_type.lower()}")
        print(f"Entry script: {self.script_path()}")
        env = self.environment
        if env is not None:
            if len(env.environment_variables) > 1:
                print(f"Environment variables: {env.environment_variables}")
            print(f"Environment dependencies: {list(env.python.conda_dependencies.pip_packages)}")


class ModelPackage:
    """v1's `Model.package` result: a Docker image in this machine's engine, or a build context to `save()`.

    v1 pushed the image to the workspace's Azure registry; here it is built into the local engine
    (`location` is its tag) — push it with `DockerWebservice.push_image(package.image, registry)`.
    """

    def __init__(self, workspace: Workspace, image: Image, generate_dockerfile: bool, image_label: str | None = None):
        self.workspace = workspace
        self.image = image
        self.generate_dockerfile = generate_dockerfile
        self.image_label = image_label
        self.state = "NotStarted"
        self.location: str | None = None
        self.error: str | None = None
        self.package_build_log_uri: str | None = None

    def __repr__(self) -> str:
        return f"ModelPackage(image={self.image.id!r}, generate_dockerfile={self.generate_dockerfile}, state={self.state!r})"

    def wait_for_creation(self, show_output: bool = False) -> None:
        """Build the Docker image (a Dockerfile package has nothing to build: it is ready at once)."""
        if self.state == "Succeeded":
            return
        self.state = "Running"
        if not self.generate_dockerfile:
            try:
                self.location = _docker().build_image(self.image, show_output=show_output)
            except Exception as e:
                self.state, self.error = "Failed", str(e)
                raise WebserviceException(
                    f"Package creation reached non-successful terminal state.\nState: Failed\nError:\n{e}\n"
                ) from None
            self.package_build_log_uri = self.image.image_build_log_uri
        self.state = "Succeeded"
        if show_output:
            print("Package creation Succeeded")

    def get_container_registry(self) -> Any:
        """Where the image is: this machine's Docker engine (no registry, no credentials)."""
        self.wait_for_creation()
        return ContainerRegistry(address=None)

    def get_logs(self, decode: bool = True, offset: int = 0) -> str:
        path = self.package_build_log_uri
        text = Path(path).read_text(errors="replace")[offset:] if path and os.path.exists(path) else ""
        return text if decode else text.encode()  # type: ignore[return-value]

    def pull(self) -> None:
        if self.generate_dockerfile:
            raise WebserviceException("A Dockerfile package cannot be pulled. Use save() instead.")
        self.wait_for_creation()
        print(f"{self.location} is in this machine's Docker engine already: nothing to pull")

    def save(self, output_directory: str | os.PathLike) -> None:
        if not self.generate_dockerfile:
            raise WebserviceException("Docker images cannot be saved to a local directory. Use pull() instead.")
        self.wait_for_creation()
        _docker().save_build_context(self.image, output_directory)

    def update_creation_state(self) -> None:
        pass

    def serialize(self) -> dict[str, Any]:
        return {"generateDockerfile": self.generate_dockerfile, "state": self.state, "location": self.location}


def _docker() -> Any:
    """The Docker target (it registers itself; nothing in the core imports a target)."""
    return target_class("Docker")
