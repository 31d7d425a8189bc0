"""Images: immutable, versioned snapshots of everything a service runs.

    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python",
                                                conda_file="myenv.yml")
    image = ContainerImage.create(workspace=ws, name="myimage", models=[model], image_config=config)
    image.wait_for_creation(show_output=True)
    image.id                                  # 'myimage:1', then 'myimage:2', ...
    Image(ws, id="myimage:1")

An image holds the scoring script and its extra files (copied, read-only), references to
registered models, and an environment spec with pinned requirements. Creating one runs the
pre-flight check, so a script that cannot work fails here in seconds — with the reason —
instead of minutes later in a container. Targets turn a snapshot into what they run: the
local target runs it in place, the Docker target builds a Docker image from it
(`DockerWebservice.build_image(image)`, `DockerWebservice.push_image(image, registry)`).
"""

from __future__ import annotations

import builtins
import contextlib
import keyword
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from . import progress as progress_mod
from .environments import (
    EnvironmentSpec,
    build_spec,
    distributions_for_imports,
    normalise,
    pickled_modules,
    reconcile_with_models,
    with_dependencies,
)
from .errors import ConflictError, ImageException, UserError
from .models import Model
from .preflight import Problem, check_script
from .provenance import created_by, describe
from .store.artifacts import copy_checked, digest_of, make_read_only, remove_tree
from .store.metadata import Row
from .versioned import Versioned, split_id
from .workspace import Workspace, dumps, loads, now

IMAGE_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?")  # whole names only: fullmatch
RUNTIMES = {"python": "Python", "spark-py": "SparkPython", "python-slim": "PythonSlim"}
CUDA_VERSIONS = {"9.0", "9.1", "10.0"}


class ImageConfig:
    """What goes into an image (v1's `ContainerImageConfig`; `requirements` is new here)."""

    def __init__(
        self,
        execution_script: str,
        runtime: str = "python",
        conda_file: str | None = None,
        requirements: str | None = None,
        docker_file: str | None = None,
        schema_file: str | None = None,
        dependencies: list[str] | None = None,
        enable_gpu: bool | None = None,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
        base_image: str | None = None,
        base_image_registry: Any = None,
        cuda_version: str | None = None,
        source_directory: str | os.PathLike | None = None,
        conda_spec: str | None = None,
        environment_variables: dict[str, str] | None = None,
    ) -> None:
        # Set by InferenceConfig (v1's later API): the folder that paths are relative to and that is shipped
        # whole, the conda file's text (an Environment's), and the variables the script runs with.
        self.source_directory = str(source_directory) if source_directory else None
        self.base_directory: str | None = None  # where relative paths start when not the CWD (an image made again)
        self.conda_spec = conda_spec
        self.environment_variables = dict(environment_variables or {})
        self.execution_script = execution_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.requirements = requirements
        self.docker_file = docker_file
        self.schema_file = schema_file
        self.dependencies = list(dependencies or [])
        self.enable_gpu = enable_gpu
        self.tags = dict(tags or {})
        self.properties = dict(properties or {})
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version

    def __repr__(self) -> str:
        return f"ImageConfig(execution_script={self.execution_script!r}, runtime={self.runtime!r})"

    def root(self) -> Path:
        """The folder every path is relative to: the source directory, else the current directory."""
        return Path(self.source_directory or self.base_directory or Path.cwd()).resolve()

    def validate(self, cwd: Path | None = None) -> None:
        """v1's checks (relative script inside the CWD, files exist, ...); all problems in one error."""
        cwd = (cwd or self.root()).resolve()
        errors: list[str] = []
        script = self.execution_script
        if not script:
            errors.append("execution_script is required")
        else:
            path = Path(script)
            if path.is_absolute() or not (cwd / path).resolve().is_relative_to(cwd):
                errors.append(f"execution_script {script!r} must be a relative path inside the current directory {cwd}")
            elif not (cwd / path).is_file():
                errors.append(f"execution_script {script!r} does not exist in {cwd}")
            if path.suffix != ".py":
                errors.append(f"execution_script {script!r} must be a .py file")
            elif not path.stem.isidentifier() or keyword.iskeyword(path.stem):
                errors.append(f"execution_script name {path.stem!r} must be a valid Python module name (and not a keyword)")
        if self.runtime not in RUNTIMES:
            errors.append(f"runtime {self.runtime!r} is not supported; use one of {', '.join(sorted(RUNTIMES))}")
        if sum(1 for given in (self.conda_file, self.requirements, self.conda_spec) if given) > 1:
            errors.append("give conda_file or requirements, not both")
        for label in ("conda_file", "requirements", "docker_file", "schema_file"):
            value = getattr(self, label)
            if value and not (cwd / value).is_file():
                errors.append(f"{label} {value!r} does not exist in {cwd}")
            elif value and (Path(value).is_absolute() or not (cwd / value).resolve().is_relative_to(cwd)):
                errors.append(f"{label} {value!r} must be a relative path inside {cwd}")  # it is copied into the image
        for dep in self.dependencies:
            if not (cwd / dep).exists():
                errors.append(f"dependency {dep!r} does not exist in {cwd}")
            elif Path(dep).is_absolute() or not (cwd / dep).resolve().is_relative_to(cwd):
                errors.append(f"dependency {dep!r} must be a relative path inside {cwd}")
        if self.schema_file and script and not (cwd / self.schema_file).resolve().is_relative_to((cwd / script).resolve().parent):
            errors.append("schema_file must be in the execution script's folder or below it")
        if self.base_image and self.runtime != "python":
            errors.append("a custom base_image is only supported with runtime='python'")
        if self.cuda_version is not None and str(self.cuda_version) not in CUDA_VERSIONS:
            errors.append(f"cuda_version must be one of {', '.join(sorted(CUDA_VERSIONS))}")
        if errors:
            raise UserError("image configuration: " + "; ".join(errors))


class ContainerImage:
    """v1's entry points for container images."""

    @staticmethod
    def image_configuration(
        execution_script: str,
        runtime: str = "python",
        conda_file: str | None = None,
        docker_file: str | None = None,
        schema_file: str | None = None,
        dependencies: list[str] | None = None,
        enable_gpu: bool | None = None,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
        base_image: str | None = None,
        base_image_registry: Any = None,
        cuda_version: str | None = None,
        requirements: str | None = None,
    ) -> ImageConfig:
        config = ImageConfig(
            execution_script,
            runtime,
            conda_file,
            requirements,
            docker_file,
            schema_file,
            dependencies,
            enable_gpu,
            tags,
            properties,
            description,
            base_image,
            base_image_registry,
            cuda_version,
        )
        config.validate()
        return config

    @staticmethod
    def create(workspace: Workspace, name: str, models: list, image_config: ImageConfig, **kwargs: Any) -> Image:
        return Image.create(workspace, name, models, image_config, **kwargs)


def resolve_models(workspace: Workspace, models: list) -> list[Model]:
    """Model objects as given; a path is registered (v1: named after its basename, 30 characters); 'name:v' is looked up."""
    resolved = []
    for item in models or []:
        if isinstance(item, Model):
            resolved.append(item)
        elif isinstance(item, str | os.PathLike) and Path(item).exists():
            resolved.append(Model.register(workspace, item, Path(item).name[:30]))
        elif isinstance(item, str):
            name, version = split_id(item)
            resolved.append(Model(workspace, name, version=version))
        else:
            raise UserError(
                f"Models must either be of type Model or a str path to a file or folder (or an id 'name:version'), got {item!r}"
            )
    return resolved


class Image(Versioned):
    """A created image (v1's `azureml.core.image.Image`)."""

    table, noun, missing, example = "images", "image", "does not exist", "Image(ws, id='myimage:1')"

    image_type = "Docker"
    image_flavor = "WebApiContainer"
    # What a target built from an image and removes with it: a target adds its function when it is imported
    # (the Docker target's removes the Docker image), so that this module imports no target.
    built_by_targets: ClassVar[list[Callable[[Image], None]]] = []

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: Any = None,
        properties: Any = None,
        version: int | None = None,
        _row: Row | None = None,
    ) -> None:
        self.workspace = workspace
        if _row is None:
            _row = self._find(workspace, name, id, tags, properties, version)
        self._load(_row)

    def _load(self, row: Row) -> None:
        self._load_common(row)
        self.creation_state: str = row["state"]
        self.model_ids: list[str] = loads(row["models"], [])
        self.spec: dict[str, Any] = loads(row["spec"], {})
        self.error: str | None = row["error"]
        self.build_info: dict[str, Any] = loads(row["build"], {})
        self.snapshot: str | None = row["snapshot"]  # the artifact of app/ when the workspace shares its artifacts

    @property
    def folder(self) -> Path:
        return self.workspace.path / "images" / self.name / str(self.version)

    @property
    def app_dir(self) -> Path:
        """The snapshot of the script and its files (read-only); on another machine of a team's workspace,
        fetched from the artifact store (and verified) on first use."""
        local = self.folder / "app"
        if self.snapshot and not local.exists():
            return self.workspace.artifact_path(self.snapshot)
        return local

    @property
    def execution_script(self) -> str:
        return self.spec["execution_script"]

    @property
    def runtime(self) -> str:
        return self.spec["runtime"]

    @property
    def environment(self) -> EnvironmentSpec:
        return EnvironmentSpec.from_dict(self.spec["environment"])

    @property
    def environment_variables(self) -> dict[str, str]:
        """What the script's process gets set (v1: its Environment's `environment_variables`)."""
        return dict(self.spec.get("environment_variables") or {})

    @property
    def models(self) -> list[Model]:
        return [Model(self.workspace, id=model_id) for model_id in self.model_ids]

    @property
    def image_location(self) -> str | None:
        """Where a built container image lives (`registry/repo:tag`), once built or pushed."""
        return self.build_info.get("pushed") or self.build_info.get("tag")

    @property
    def image_build_log_uri(self) -> str | None:
        log = self.build_info.get("log")
        return Path(log).as_uri() if log else None

    @property
    def warnings(self) -> list[str]:
        return list(self.spec.get("warnings", []))

    def __repr__(self) -> str:
        return f"Image(workspace={self.workspace!r}, id={self.id!r}, creation_state={self.creation_state!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and (other.workspace, other.id) == (self.workspace, self.id)

    def __hash__(self) -> int:
        return hash((self.workspace, self.id))

    # -- creating -------------------------------------------------------------------------------------
    @staticmethod
    def create(
        workspace: Workspace,
        name: str,
        models: list,
        image_config: ImageConfig,
        progress: progress_mod.Progress | None = None,
        show_output: bool = False,
    ) -> Image:
        """Check the script, snapshot it with its files and environment, and register the next version of `name`.

        Raises ImageException with the reasons when the pre-flight check finds errors; then no
        version is allocated and nothing is left behind.
        """
        report = progress_mod.resolve(progress, show_output)
        if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name):
            raise UserError(
                f"image name {name!r} is not valid: 2-32 lowercase letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        if not isinstance(image_config, ImageConfig):
            raise UserError("image_config must come from ContainerImage.image_configuration(...) or ImageConfig(...)")
        cwd = image_config.root()
        image_config.validate(cwd)
        report.stage(f"Creating image {name}")
        model_objects = resolve_models(workspace, models)
        report.log(f"models: {', '.join(m.id for m in model_objects) or 'none'}")
        spec, problems = _prepare_spec(cwd, image_config, model_objects)
        for warning in spec["warnings"]:
            report.log(f"warning: {warning}")
        if problems:
            message = f"image {name} not created: " + "; ".join(problems)
            report.done(False, message)
            raise ImageException(message)
        staging = _staging_folder(workspace)
        try:
            with workspace.space_for(f"image {name}"):
                _snapshot(cwd, image_config, staging / "app")
                make_read_only(staging / "app")
                with contextlib.ExitStack() as stack:
                    if not workspace.is_folder:  # a shared workspace: other machines build from the stored copy
                        stored = workspace.storing_artifact(staging / "app", what=f"image {name}")
                        tx, _, snapshot, _ = stack.enter_context(stored)
                    else:
                        tx, snapshot = stack.enter_context(workspace.transaction()), None
                    version = tx.next_version("image", name)
                    folder = workspace.path / "images" / name / str(version)
                    folder.parent.mkdir(exist_ok=True)
                    remove_tree(folder)  # left by a create killed before its commit: that version was never recorded
                    os.rename(staging, folder)
                    tx.execute(
                        "INSERT INTO images (name, version, description, tags, properties, created_time, state, models, spec,"
                        " error, snapshot, created_by) VALUES (:name, :version, :description, :tags, :properties,"
                        " :created_time, 'Succeeded', :models, :spec, NULL, :snapshot, :created_by)",
                        {
                            "name": name,
                            "version": version,
                            "description": image_config.description,
                            "tags": dumps(image_config.tags),
                            "properties": dumps(image_config.properties),
                            "created_time": now(),
                            "models": dumps([m.id for m in model_objects]),
                            "spec": dumps(spec),
                            "snapshot": snapshot,
                            "created_by": dumps(created_by()),
                        },
                    )
        finally:
            remove_tree(staging)
        image = Image(workspace, name, version=version)
        report.done(True, f"image {image.id} created")
        return image

    def refreshed(self, models: builtins.list | None = None, progress: progress_mod.Progress | None = None) -> Image:
        """The next version of this image, its script and files read again from where they were taken
        (v1's `LocalWebservice.reload()` after a `%%writefile score.py`), with other `models` if given."""
        spec = self.spec
        origin = spec.get("origin")
        if not origin:
            raise UserError(f"image {self.id} does not record where its files came from; create a new image instead")
        from_source = bool(origin.get("source_directory"))
        config = ImageConfig(
            execution_script=spec["execution_script"].split("/", 1)[1] if from_source else spec["execution_script"],
            runtime=self.runtime,
            conda_file=spec.get("conda_file"),
            requirements=spec.get("requirements"),
            docker_file=spec.get("docker_file"),
            schema_file=spec.get("schema_file"),
            dependencies=spec.get("dependencies"),
            enable_gpu=spec.get("enable_gpu") or None,
            tags=self.tags,
            properties=self.properties,
            description=self.description,
            base_image=spec.get("base_image"),
            cuda_version=spec.get("cuda_version"),
            source_directory=origin["root"] if from_source else None,
            conda_spec=spec.get("conda_spec"),
            environment_variables=spec.get("environment_variables"),
        )
        config.base_directory = origin["root"]
        return Image.create(self.workspace, self.name, self.models if models is None else models, config, progress=progress)

    @staticmethod
    def list(
        workspace: Workspace,
        image_name: str | None = None,
        model_name: str | None = None,
        model_id: str | None = None,
        tags: Any = None,
        properties: Any = None,
    ) -> list[Image]:
        out = []
        for row in Image._rows(workspace, tags, properties, image_name):
            models = loads(row["models"], [])
            if model_id and model_id not in models:
                continue
            if model_name and not any(m.split(":")[0] == model_name for m in models):
                continue
            out.append(Image(workspace, _row=row))
        return out

    def wait_for_creation(self, show_output: bool = False) -> None:
        """v1's waiting loop; creation is synchronous here, so this reports the outcome at once."""
        if show_output:
            print(self.creation_state)
        if self.creation_state != "Succeeded":
            raise ImageException(
                f"Image creation polling reached non-successful terminal state, current state: "
                f"{self.creation_state}\nError: {self.error}"
            )
        if show_output:
            print(f'Image creation operation finished for image {self.id}, operation "Succeeded"')

    def update_creation_state(self) -> None:
        self._load(self._find(self.workspace, self.name, None, None, None, self.version))

    def services_using(self) -> builtins.list[str]:
        rows = self.workspace.query("SELECT name FROM services WHERE image_id=:id ORDER BY name", {"id": self.id})
        return [r["name"] for r in rows]

    def delete(self) -> None:
        """Delete the image (and what targets built from it, e.g. its Docker image). Refused while a service uses it."""
        after_commit = None
        with self.workspace.transaction() as tx:
            users = [r["name"] for r in tx.execute("SELECT name FROM services WHERE image_id=:id", {"id": self.id})]
            if users:
                raise ConflictError(
                    f"image {self.id} is used by service {', '.join(users)}; delete or update "
                    f"{'that service' if len(users) == 1 else 'those services'} first"
                )
            tx.execute("DELETE FROM images WHERE name=:name AND version=:version", {"name": self.name, "version": self.version})
            if self.snapshot:
                after_commit = self.workspace.unstore_if_unused(tx, digest_of(self.snapshot))
        if after_commit is not None:
            after_commit()
        for remove_built in Image.built_by_targets:
            remove_built(self)
        if self.folder.exists():  # renamed first, so a removal cut short is swept like a staging leftover
            doomed = _staging_folder(self.workspace)
            os.rename(self.folder, doomed)
            remove_tree(doomed)
        self.creation_state = "Deleting"

    def set_build_info(self, **info: Any) -> None:
        self.build_info = {**self.build_info, **info}
        self._set(build=self.build_info)

    def serialize(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": self.tags,
            "properties": self.properties,
            "createdTime": self.created_time,
            "creationState": self.creation_state,
            "modelIds": self.model_ids,
            "runtime": self.runtime,
            "executionScript": self.execution_script,
            "environment": self.spec.get("environment"),
            "warnings": self.warnings,
            "imageLocation": self.image_location,
            "services": self.services_using(),
            "createdBy": self.created_by,
            "createdByText": describe(self.created_by),  # 'ana@ana-laptop (train.ipynb)': what faces show
        }


def _prepare_spec(cwd: Path, config: ImageConfig, models: list[Model]) -> tuple[dict[str, Any], list[str]]:
    """The image's spec, and the pre-flight errors (empty when the image can be created)."""
    script_path = cwd / config.execution_script
    local_modules = {Path(d).stem for d in config.dependencies} | {p.stem for p in script_path.parent.glob("*.py")}
    if config.runtime == "spark-py":  # the image brings pyspark (and Java), as v1's SparkPython images did
        local_modules.add("pyspark")
    requirements_file = cwd / config.requirements if config.requirements else None
    conda_file = cwd / config.conda_file if config.conda_file else None
    conda_text = conda_file.read_text() if conda_file else config.conda_spec
    declared = None
    if requirements_file or conda_text:
        declared = with_dependencies(build_spec(set(), requirements_file, conda_text).requirement_names())
    facts = check_script(script_path.read_text(), config.execution_script, declared, local_modules)
    problems = [str(p) for p in facts.errors]
    model_modules: set[str] = set()
    for model in models:
        model_modules |= pickled_modules(model.path)
    environment = build_spec(facts.third_party_imports | model_modules, requirements_file, conda_text)
    if environment.source == "inferred" and model_modules - facts.third_party_imports:
        needed, _ = distributions_for_imports(model_modules - facts.third_party_imports)
        facts.problems.append(Problem("warning", f"the model pickles use {', '.join(p.split('==')[0] for p in needed)}: "
                                                 "added to the requirements"))
    if declared is not None:
        for change in reconcile_with_models(environment, model_modules):
            facts.problems.append(Problem("warning", f"requirements changed: {change}"))
        needed, _ = distributions_for_imports(model_modules)
        missing = [p for p in needed if normalise(p.split("==")[0]) not in declared]
        problems += [
            f"the model pickles need {p.split('==')[0]}, which the image's requirements do not list; add '{p}'" for p in missing
        ]
    # relative to the app root; with a source directory, that folder is in the app root under its own name
    in_app = Path(cwd.name, config.execution_script) if config.source_directory else Path(config.execution_script)
    spec = {
        "execution_script": in_app.as_posix(),
        "runtime": config.runtime,
        "environment": environment.to_dict(),
        "dependencies": [Path(d).as_posix() for d in config.dependencies],
        "schema_file": config.schema_file,
        "docker_file": config.docker_file,
        "base_image": config.base_image,
        "enable_gpu": bool(config.enable_gpu),
        "cuda_version": config.cuda_version,
        "input_style": facts.style,
        "run_params": list(facts.run_params),
        "warnings": [str(p) for p in facts.warnings],
        "environment_variables": config.environment_variables,
        "conda_file": config.conda_file,
        "requirements": config.requirements,
        "conda_spec": config.conda_spec,
        # where the files came from: reload() snapshots them again from there
        "origin": {"root": str(cwd), "source_directory": bool(config.source_directory)},
    }
    return spec, problems


def _staging_folder(workspace: Workspace) -> Path:
    """A folder next to the images, named after this process, so a sweep knows when its owner is gone."""
    return workspace.path / "images" / f".staging-{os.getpid()}-{uuid.uuid4().hex}"


def _snapshot(cwd: Path, config: ImageConfig, app: Path) -> None:
    """Copy the script and its files into the image, keeping their paths relative to the CWD.
    As for models: links are followed only inside the CWD; FIFOs and devices are refused."""
    if config.source_directory:  # v1 ships the source directory whole, under its own name in the app root
        app.mkdir(parents=True)
        copy_checked(cwd, app / cwd.name, cwd)
        return
    items = [config.execution_script, *config.dependencies]
    items += [f for f in (config.schema_file, config.conda_file, config.requirements, config.docker_file) if f]
    app.mkdir(parents=True)
    for item in items:
        copy_checked(cwd / item, app / item, cwd)
