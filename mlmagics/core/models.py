"""Registered models: a file or folder under a name, versioned `name:1`, `name:2`, ...

model = Model.register(ws, "outputs/sklearn_mnist_model.pkl", "sklearn_mnist", tags={"key": "0.1"})
model.id                       # 'sklearn_mnist:1'
Model(ws, "sklearn_mnist")     # the latest version; Model(ws, id="sklearn_mnist:1") for one
Model.list(ws, tags=["key"])
model.download("restored/")
model.delete()                 # refused while an image uses it
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mlmagics.serving.compat.azureml.core.model import Model as ScoringModel

from .errors import ConflictError, ModelNotFoundException, UserError, WebserviceException
from .names import is_service_name
from .provenance import created_by, describe
from .store.metadata import Row
from .versioned import Versioned
from .workspace import Workspace, dumps, loads, now

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")  # whole names only: fullmatch


def validate_model_name(name: Any) -> None:
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise UserError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, at most 255 characters"
        )


class ResourceConfiguration:
    """v1's sizing hint recorded with a model (`Model.register(resource_configuration=...)`)."""

    def __init__(self, cpu: float | None = None, memory_in_gb: float | None = None, gpu: int | None = None) -> None:
        errors = ""
        if cpu is not None and not _positive(cpu):
            errors += "Invalid configuration, cpu must be greater than zero.\n"
        if memory_in_gb is not None and not _positive(memory_in_gb):
            errors += "Invalid configuration, memory_in_gb must be greater than zero.\n"
        if gpu is not None and not (isinstance(gpu, int) and not isinstance(gpu, bool) and gpu > 0):
            errors += "Invalid configuration, gpu must be integer and greater than zero.\n"
        if errors:
            raise UserError(errors)
        self.cpu, self.memory_in_gb, self.gpu = cpu, memory_in_gb, gpu

    def serialize(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "memoryInGB": self.memory_in_gb, "gpu": self.gpu}


def _positive(value: Any) -> bool:
    """A finite number above zero (not a bool, a string or NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")


class Framework:
    """v1's `Model.Framework` names (recorded with a model, as `model_framework`)."""

    CUSTOM, TENSORFLOW, SCIKITLEARN, ONNX = "Custom", "TensorFlow", "ScikitLearn", "Onnx"
    TFKERAS, PYTORCH, MULTI = "TfKeras", "PyTorch", "Multi"


class Model(Versioned):
    """A registered model (v1's `azureml.core.model.Model`, same constructor and attributes)."""

    table, noun, missing, not_found = "models", "model", "is not registered", ModelNotFoundException
    example = "Model(ws, 'sklearn_mnist') or Model(ws, id='sklearn_mnist:1')"
    Framework = Framework

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: Any = None,
        properties: Any = None,
        version: int | None = None,
        run_id: str | None = None,
        model_framework: str | None = None,
        _row: Row | None = None,
    ) -> None:
        self.workspace = workspace
        if _row is None:
            _row = self._find(workspace, name, id, tags, properties, version)
        self._load(_row)

    def _load(self, row: Row) -> None:
        self._load_common(row)
        self.digest: str = row["digest"]
        self.artifact: str = row["artifact"]
        self.size: int = row["size"]
        self.source: str | None = row["source"]
        self.model_framework: str | None = row["framework"]
        self.model_framework_version: str | None = row["framework_version"]

    @property
    def path(self) -> Path:
        """The registered (read-only) file or folder."""
        return self.workspace.artifact_path(self.artifact)

    @property
    def url(self) -> str:
        """Where the artifact is stored (a file:// URI, or the shared store's, masked): no download."""
        return self.workspace.artifacts.url(self.artifact)

    def __repr__(self) -> str:
        return (
            f"Model(workspace={self.workspace!r}, name={self.name!r}, id={self.id!r}, version={self.version}, "
            f"tags={self.tags}, properties={self.properties})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (other.workspace, other.id) == (self.workspace, self.id)

    def __hash__(self) -> int:
        return hash((self.workspace, self.id))

    # -- registering ------------------------------------------------------------------------------------
    @staticmethod
    def register(
        workspace: Workspace,
        model_path: str | os.PathLike,
        model_name: str,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
        datasets: Any = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        child_paths: Any = None,
        sample_input_dataset: Any = None,
        sample_output_dataset: Any = None,
        resource_configuration: ResourceConfiguration | None = None,
        source: str | None = None,
    ) -> Model:
        """Store a copy of `model_path` (a file or a folder) as the next version of `model_name`.

        The copy is made before the version is allocated, so a registration that fails or is
        killed half-way leaves no model behind; concurrent registrations of one name get
        distinct consecutive versions.
        """
        validate_model_name(model_name)
        if model_framework_version and not model_framework:
            raise UserError("Model framework version cannot be provided without a valid framework")
        # v1 kept these beside the model; here they are recorded in its properties (the datasets by registered id)
        recorded = {"sampleInputDataset": sample_input_dataset, "sampleOutputDataset": sample_output_dataset}
        recorded_ids = {k: getattr(v, "id", None) or repr(v) for k, v in recorded.items() if v is not None}
        properties = {**(properties or {}), **recorded_ids}
        if resource_configuration is not None:
            properties["resourceConfiguration"] = json.dumps(resource_configuration.serialize())
        path = Path(model_path).expanduser()
        if not path.exists():
            raise UserError(f"model path {str(model_path)!r} does not exist (relative to {os.getcwd()})")
        for label, mapping in (("tags", tags), ("properties", properties)):
            if mapping is not None and not isinstance(mapping, dict):
                raise UserError(f"{label} must be a dict of str to str, got {type(mapping).__name__}")
        who = created_by(source)
        with workspace.storing_artifact(path) as (tx, digest, artifact, size):
            version = tx.next_version("model", model_name)
            row = tx.execute(
                "INSERT INTO models (name, version, description, tags, properties, created_time, digest, artifact, size,"
                " source, framework, framework_version, created_by) VALUES (:name, :version, :description, :tags,"
                " :properties, :created_time, :digest, :artifact, :size, :source, :framework, :framework_version, :created_by)"
                " RETURNING *",
                {
                    "name": model_name,
                    "version": version,
                    "description": description,
                    "tags": dumps({k: str(v) for k, v in (tags or {}).items()}),
                    "properties": dumps({k: str(v) for k, v in (properties or {}).items()}),
                    "created_time": now(),
                    "digest": digest,
                    "artifact": artifact,
                    "size": size,
                    "source": who["source"],
                    "framework": model_framework,
                    "framework_version": model_framework_version,
                    "created_by": dumps(who),
                },
            ).one()
        return Model(workspace, _row=row)

    @staticmethod
    def list(
        workspace: Workspace,
        name: str | None = None,
        tags: Any = None,
        properties: Any = None,
        run_id: str | None = None,
        latest: bool = False,
    ) -> list[Model]:
        """Registered models, newest first; `latest=True` keeps the newest version of each name."""
        out, seen = [], set()
        for row in Model._rows(workspace, tags, properties, name):
            if not (latest and row["name"] in seen):
                out.append(Model(workspace, _row=row))
                seen.add(row["name"])
        return out

    # -- deploying (v1's later API; an InferenceConfig does the work: the registry knows no services) -----------
    @staticmethod
    def deploy(
        workspace: Workspace,
        name: str,
        models: builtins.list,
        inference_config: Any = None,
        deployment_config: Any = None,
        deployment_target: Any = None,
        overwrite: bool = False,
        show_output: bool = False,
    ) -> Any:
        """Deploy `models` as service `name` with `inference_config` (entry script, environment) on the target
        of `deployment_config` (default: the Docker target, v1's ACI). Returns without waiting, as v1; call
        `service.wait_for_deployment(show_output=True)`. A service of that name is replaced when it is local
        or with `overwrite=True` (the old version serves until the new one is healthy)."""
        check_service_name(name)  # v1 checks the name first, for every target
        if inference_config is None:
            raise UserError(_no_code_refusal(models))
        if not callable(getattr(inference_config, "deploy", None)):
            raise UserError("inference_config must be an InferenceConfig(entry_script=..., environment=...)")
        return inference_config.deploy(workspace, name, models, deployment_config, deployment_target, overwrite, show_output)

    @staticmethod
    def package(
        workspace: Workspace,
        models: builtins.list,
        inference_config: Any = None,
        generate_dockerfile: bool = False,
        image_name: str | None = None,
        image_label: str | None = None,
    ) -> Any:
        """A Docker image of `models` served by `inference_config` — or, with `generate_dockerfile=True`, its
        build context to `save(folder)` and build anywhere. Returns a ModelPackage; `wait_for_creation()`."""
        if inference_config is None:
            raise UserError(_no_code_refusal(models))
        if not callable(getattr(inference_config, "package", None)):
            raise UserError("Error, model packaging requires an InferenceConfig containing an Environment object.")
        return inference_config.package(workspace, models, generate_dockerfile, image_name, image_label)

    @staticmethod
    def profile(
        workspace: Workspace,
        profile_name: str,
        models: builtins.list,
        inference_config: Any,
        input_dataset: Any,
        cpu: float | None = None,
        memory_in_gb: float | None = None,
        description: str | None = None,
    ) -> Any:
        """Measure the CPU, memory and latency of `models` served by `inference_config` on `input_dataset`'s
        request bodies, and recommend a size (core/profiling.py says how). `profile.wait_for_completion(True)`,
        then `profile.get_details()`."""
        if not callable(getattr(inference_config, "profile", None)):
            raise UserError("inference_config must be an InferenceConfig(entry_script=..., environment=...)")
        return inference_config.profile(workspace, profile_name, models, input_dataset, cpu, memory_in_gb, description)

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Workspace | None = None) -> str:
        """Inside a scoring script: the deployed model's path. With a workspace: the registered copy."""
        if _workspace is not None:
            validate_model_name(model_name)
            return str(Model(_workspace, model_name, version=version).path)
        return ScoringModel.get_model_path(model_name, version)

    # -- using ----------------------------------------------------------------------------------------------
    def download(self, target_dir: str | os.PathLike = ".", exist_ok: bool = False) -> str:
        """Copy the model into `target_dir`; returns the copy's path."""
        target = Path(target_dir) / self.path.name
        if target.exists():
            if not exist_ok:
                raise ConflictError(f"{target} already exists; pass exist_ok=True to overwrite it")
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():
            shutil.copytree(self.path, target)
            for folder, dirs, files in os.walk(target):
                for entry in dirs + files:
                    os.chmod(os.path.join(folder, entry), 0o755 if entry in dirs else 0o644)
        else:
            shutil.copyfile(self.path, target)
        return str(target)

    def images_using(self) -> builtins.list[str]:
        return _images_using(self.workspace.query(_IMAGES_NAMING, {"pattern": _like_id(self.id)}), self.id)

    def delete(self) -> None:
        """Delete this version. Refused while an image uses it: delete those images first."""
        with self.workspace.transaction() as tx:
            users = _images_using(tx.execute(_IMAGES_NAMING, {"pattern": _like_id(self.id)}), self.id)
            if users:
                raise ConflictError(
                    f"model {self.id} is used by image {', '.join(users)}; delete "
                    f"{'that image' if len(users) == 1 else 'those images'} first"
                )
            tx.execute("DELETE FROM models WHERE name=:name AND version=:version", {"name": self.name, "version": self.version})
            after_commit = self.workspace.unstore_if_unused(tx, self.digest)
        if after_commit is not None:
            after_commit()

    def add_properties(self, properties: dict) -> None:
        """Add properties; v1 never lets an existing property change."""
        clash = [k for k in properties if k in self.properties and self.properties[k] != str(properties[k])]
        if clash:
            raise ConflictError(f"properties {clash} already exist with other values; properties cannot change")
        self.properties = {**self.properties, **{k: str(v) for k, v in properties.items()}}
        self._set(properties=self.properties)

    def serialize(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": self.tags,
            "properties": self.properties,
            "createdTime": self.created_time,
            "url": self.url,
            "size": self.size,
            "digest": self.digest,
            "source": self.source,
            "createdBy": self.created_by,
            "createdByText": describe(self.created_by),  # 'ana@ana-laptop (train.ipynb)': what faces show
            "images": self.images_using(),
        }


# images whose JSON list of model ids may name a model (LIKE narrows, _images_using decides): portable SQL
_IMAGES_NAMING = "SELECT name, version, models FROM images WHERE models LIKE :pattern ORDER BY name, version"


def _like_id(model_id: str) -> str:
    return f"%{model_id}%"  # ids hold no % or \\; a '_' in a name matches any character, which _images_using re-checks


def _images_using(rows: Any, model_id: str) -> builtins.list[str]:
    return [f"{r['name']}:{r['version']}" for r in rows if model_id in loads(r["models"], [])]


def _no_code_refusal(models: builtins.list) -> str:
    """Why a deploy without an InferenceConfig is refused: v1's reason, and that the no-code path is Azure's own."""
    if len(models or []) != 1:
        return "You must provide an InferenceConfig when deploying zero or multiple models."
    model = models[0]
    return (
        f"You must provide an InferenceConfig when deploying {getattr(model, 'id', model)}: Azure's no-code deployment "
        "(its own scoring script and environment for Onnx, ScikitLearn and TensorFlow models) does not exist in "
        "mlmagics; write a score.py with init() and run() and pass InferenceConfig(entry_script='score.py', ...)"
    )


def check_service_name(name: Any) -> None:
    """v1's rule and message for the name `Model.deploy` gives a service (local targets included)."""
    if not is_service_name(name):
        raise WebserviceException(
            "Error, provided service name is invalid. It must only consist of lowercase letters, numbers, or dashes, "
            "start with a letter, end with a letter or number, and be between 3 and 32 characters long."
        )
