"""Web services: an image deployed to a target under a name.

    service = Webservice.deploy_from_image(workspace=ws, name="aci-mnist-3", image=image,
                                           deployment_config=LocalWebservice.deploy_configuration())
    service.wait_for_deployment(show_output=True)
    service.state                   # 'Healthy'
    service.run(input_data=json.dumps({"data": [[1, 2, 3]]}))
    service.update(image=Image(ws, id="myimage:2"))
    Webservice(ws, "aci-mnist-3")   # the same service, from any process
    service.delete()

`Webservice` holds what every target shares (the record in the workspace, keys, `run`,
waiting, v1's dispatch rules); each target's subclass in `core/targets/` does the rest
through five hooks: `_start`, `_probe`, `_update`, `_stop`, `_logs` (and `_keys_changed`).
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import certifi
import requests

from . import progress as progress_mod
from .configs import DeploymentConfiguration, config_from_dict
from .errors import ConflictError, MlmagicsError, NotFoundError, UserError, WebserviceException
from .images import Image, ImageConfig
from .models import Model
from .names import is_service_name
from .plans import DeploymentPlan
from .provenance import created_by, describe
from .store.metadata import DuplicateRow, Row
from .versioned import tag_filter_matches
from .workspace import Workspace, dumps, loads, now

TRANSITIONING, HEALTHY, UNHEALTHY, FAILED = "Transitioning", "Healthy", "Unhealthy", "Failed"


def validate_service_name(name: str) -> None:
    if not is_service_name(name):
        raise UserError(
            f"service name {name!r} is not valid: 3-32 characters, lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )


def new_key() -> str:
    return secrets.token_urlsafe(24)


# compute type -> the target's Webservice subclass; each target registers itself (__init_subclass__), so that
# nothing here imports a target. mlmagics.core imports every target package, which fills this in.
_TARGETS: dict[str, type[Webservice]] = {}


def target_names() -> dict[str, str]:
    """What users may call each target -> its compute type: {'local': 'Local', 'docker': 'Docker', 'aci': 'Docker', ...}."""
    return {name: cls.compute_type for cls in _TARGETS.values() for name in (cls.compute_type.lower(), *cls.names)}


def target_class(name: str) -> type[Webservice]:
    """A target's Webservice subclass by any of its names: 'aks' -> KubernetesWebservice, 'ACI' -> DockerWebservice."""
    compute_type = target_names().get(name.lower()) if isinstance(name, str) else None
    if compute_type is None:
        known = ", ".join(
            cls.compute_type.lower() + (f" ({', '.join(cls.names[1:])})" if cls.names[1:] else "") for cls in _TARGETS.values()
        )
        raise UserError(f"unknown target {name!r}; use one of {known}")
    return _TARGETS[compute_type]


def default_target() -> type[Webservice]:
    """The target used when a deploy names none: $MLMAGICS_DEFAULT_TARGET, else local."""
    return target_class(os.environ.get("MLMAGICS_DEFAULT_TARGET", "local"))


class Webservice:
    """A deployed service (v1's `azureml.core.webservice.Webservice`); `Webservice(ws, name)` reattaches."""

    compute_type: ClassVar[str] = ""
    names: ClassVar[tuple[str, ...]] = ()  # what users call the target, e.g. ("docker", "aci")
    target_description: ClassVar[str] = ""  # the target (not a service), for pickers: "A service on a Kubernetes cluster"
    config_class: ClassVar[type[DeploymentConfiguration]] = DeploymentConfiguration
    collected_data_kept: str | None = None  # after delete(): where the data the service collected stays
    collected_data_removed: bool = False  # after delete(delete_collected_data=True), if it had some

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("compute_type"):  # a target (an alias such as AciWebservice is the same class)
            _TARGETS[cls.compute_type] = cls

    def __new__(cls, workspace: Workspace | None = None, name: str | None = None, **kwargs: Any):
        if cls is Webservice and workspace is not None and name is not None and kwargs.get("_row") is None:
            row = _find(workspace, name)
            return super().__new__(target_class(row["compute_type"]))
        return super().__new__(cls)

    def __init__(self, workspace: Workspace, name: str, _row: Row | None = None) -> None:
        self.workspace = workspace
        self._load(_row if _row is not None else _find(workspace, name))

    def _load(self, row: Row) -> None:
        self.name: str = row["name"]
        self.image_id: str = row["image_id"]
        self.state: str = row["state"]
        self.config: DeploymentConfiguration = config_from_dict(loads(row["config"], {}))
        self.scoring_uri: str | None = row["scoring_uri"]
        self.swagger_uri: str | None = row["swagger_uri"]
        self._keys: dict[str, str] = loads(row["keys"], {})
        self.description: str | None = row["description"]
        self.tags: dict[str, str] = loads(row["tags"], {})
        self.properties: dict[str, str] = loads(row["properties"], {})
        self.created_time: str = row["created_time"]
        self.updated_time: str = row["updated_time"]
        self.error: str | None = row["error"]
        self.target: dict[str, Any] = loads(row["target"], {})
        self.created_by: dict[str, str] = loads(row["created_by"], {})

    def _refresh_record(self) -> None:
        self._load(_find(self.workspace, self.name))

    def _save(self, **fields: Any) -> None:
        """Write fields of this service's record (JSON-encoding dicts)."""
        fields["updated_time"] = now()
        columns = ", ".join(f"{k}=:{k}" for k in fields)
        values = {k: dumps(v) if isinstance(v, dict | list) else v for k, v in fields.items()}
        with self.workspace.transaction() as tx:
            tx.execute(f"UPDATE services SET {columns} WHERE name=:_name", {**values, "_name": self.name})
        self._refresh_record()

    # -- attributes --------------------------------------------------------------------------------------
    @property
    def image(self) -> Image:
        return Image(self.workspace, id=self.image_id)

    @property
    def models(self) -> list[Model]:
        return self.image.models

    @property
    def auth_enabled(self) -> bool:
        return bool(self.config.effective("auth_enabled"))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name!r}, image_id={self.image_id!r}, "
            f"compute_type={self.compute_type!r}, state={self.state!r}, scoring_uri={self.scoring_uri!r})"
        )

    # -- deploying (v1's entry points) ------------------------------------------------------------------
    @staticmethod
    def deploy_from_image(
        workspace: Workspace,
        name: str,
        image: Image,
        deployment_config: DeploymentConfiguration | None = None,
        deployment_target: Any = None,
        progress: progress_mod.Progress | None = None,
        show_output: bool = False,
    ) -> Webservice | DeploymentPlan:
        """Deploy `image` as service `name`. Returns at once in state Transitioning (v1 does too);
        call `wait_for_deployment()` to follow it. A dry run (a target's `dry_run=True`) returns its
        `DeploymentPlan` instead: nothing deployed, nothing recorded. The target follows v1's rules: the
        configuration's type decides; without one, `deployment_target` (a cluster) means
        Kubernetes, and nothing at all means the workspace's default target (local)."""
        validate_service_name(name)
        if not isinstance(image, Image):
            raise UserError("image must be an Image, e.g. Image(ws, id='myimage:1')")
        if image.creation_state != "Succeeded":
            raise UserError(f"image {image.id} is {image.creation_state}; only a Succeeded image can be deployed")
        if deployment_config is None:
            cls = target_class("Kubernetes") if deployment_target is not None else default_target()
            deployment_config = cls.deploy_configuration()
        if not isinstance(deployment_config, DeploymentConfiguration):
            raise UserError("deployment_config must come from a target's deploy_configuration(...)")
        deployment_config.validate()
        cls = target_class(deployment_config.compute_type)
        report = progress_mod.resolve(progress, show_output)
        planned = cls._before_deploy(workspace, name, image, deployment_config, deployment_target, report)
        if planned is not None:  # a dry run: the target answered without deploying or recording anything
            return planned
        keys = {"primary": deployment_config.primary_key or new_key(), "secondary": deployment_config.secondary_key or new_key()}
        created = now()
        try:
            with workspace.transaction() as tx:
                tx.execute(
                    "INSERT INTO services (name, compute_type, image_id, state, config, keys, description, tags, properties,"
                    " created_time, updated_time, created_by, target) VALUES (:name, :compute_type, :image_id, :state,"
                    " :config, :keys, :description, :tags, :properties, :created, :created, :created_by, :target)",
                    {
                        "name": name,
                        "compute_type": cls.compute_type,
                        "image_id": image.id,
                        "state": TRANSITIONING,
                        "config": dumps(deployment_config.to_dict()),
                        "keys": dumps(keys),
                        "description": deployment_config.description,
                        "tags": dumps(deployment_config.tags or {}),
                        "properties": dumps(deployment_config.properties or {}),
                        "created": created,
                        "created_by": dumps(created_by()),
                        "target": dumps(cls._location(deployment_config)),
                    },
                )
        except DuplicateRow:
            raise ConflictError(
                f"service {name!r} already exists; update it with service.update(image=...) or delete it first"
            ) from None
        service = cls(workspace, name)
        report.stage(f"Deploying {image.id} as {name} ({cls.compute_type})")
        try:
            service._start(image, report, deployment_target)
        except Exception as e:
            service._save(state=FAILED, error=str(e))
            report.done(False, str(e))
            raise
        return service

    @staticmethod
    def deploy_from_model(
        workspace: Workspace,
        name: str,
        models: list,
        image_config: ImageConfig,
        deployment_config: DeploymentConfiguration | None = None,
        deployment_target: Any = None,
        progress: progress_mod.Progress | None = None,
        show_output: bool = False,
    ) -> Webservice | DeploymentPlan:
        """Create an image from `models` and `image_config` (named after the service), then deploy it."""
        image = Image.create(workspace, name, models, image_config, progress=progress, show_output=show_output)
        image.wait_for_creation(show_output=show_output and progress is None)
        return Webservice.deploy_from_image(workspace, name, image, deployment_config, deployment_target, progress, show_output)

    @staticmethod
    def deploy(
        workspace: Workspace,
        name: str,
        model_paths: list[str],
        image_config: ImageConfig,
        deployment_config: DeploymentConfiguration | None = None,
        deployment_target: Any = None,
        progress: progress_mod.Progress | None = None,
        show_output: bool = False,
    ) -> Webservice | DeploymentPlan:
        """Register the files in `model_paths`, then `deploy_from_model`."""
        models = [Model.register(workspace, p, Path(p).name[:30]) for p in model_paths]
        return Webservice.deploy_from_model(
            workspace, name, models, image_config, deployment_config, deployment_target, progress, show_output
        )

    @staticmethod
    def deploy_local_from_model(
        workspace: Workspace,
        name: str,
        models: list,
        image_config: ImageConfig,
        deployment_config: DeploymentConfiguration | None = None,
        wait: bool = False,
    ) -> Webservice:
        config = deployment_config or target_class("Local").deploy_configuration()
        service = Webservice.deploy_from_model(workspace, name, models, image_config, config)
        assert isinstance(service, Webservice), "the local target has no dry run"
        if wait:
            service.wait_for_deployment()
        return service

    @staticmethod
    def check_for_existing_webservice(
        workspace: Workspace, name: str, overwrite: bool = False, request_func: Any = None, check_func: Any = None
    ) -> None:
        """v1's name check before a deploy: raises WebserviceException if `name` is taken (unless `overwrite`)."""
        if overwrite:
            return
        rows = workspace.query("SELECT compute_type, image_id FROM services WHERE name=:name", {"name": name})
        if rows:
            raise WebserviceException(
                f"service {name} already exists in the workspace ({rows[0]['compute_type']}, {rows[0]['image_id']}); "
                "pass overwrite=True to replace it, or choose another name"
            )

    @staticmethod
    def list(
        workspace: Workspace,
        compute_type: str | None = None,
        image_name: str | None = None,
        image_id: str | None = None,
        model_name: str | None = None,
        model_id: str | None = None,
        tags: Any = None,
        properties: Any = None,
        refresh: bool = False,
    ) -> list[Webservice]:
        """Services in the workspace (every target), optionally filtered; `refresh=True` asks each target for its live state."""
        wanted_type = target_class(compute_type).compute_type if compute_type else None
        out = []
        for row in workspace.query("SELECT * FROM services ORDER BY name"):
            if wanted_type and row["compute_type"] != wanted_type:
                continue
            if image_id and row["image_id"] != image_id:
                continue
            if image_name and row["image_id"].split(":")[0] != image_name:
                continue
            if not (
                tag_filter_matches(loads(row["tags"], {}), tags) and tag_filter_matches(loads(row["properties"], {}), properties)
            ):
                continue
            service = target_class(row["compute_type"])(workspace, row["name"], _row=row)
            if model_name or model_id:
                ids = service.image.model_ids
                if model_id and model_id not in ids or model_name and not any(i.split(":")[0] == model_name for i in ids):
                    continue
            if refresh:
                try:
                    service.update_deployment_state()
                except MlmagicsError as e:  # one unreachable target (a cluster gone) must not hide the others
                    service.error = f"state not refreshed: {e.message}"
            out.append(service)
        return out

    # -- operating -------------------------------------------------------------------------------------------
    def update_deployment_state(self) -> str:
        """Ask the target for the live state and record it."""
        self._operable_here()
        state, error = self._probe()
        if (state, error) != (self.state, self.error):
            self._save(state=state, error=error)
        return self.state

    def wait_for_deployment(
        self, show_output: bool = False, timeout_sec: float | None = None, progress: progress_mod.Progress | None = None
    ) -> None:
        """Wait until the service is Healthy; raise WebserviceException (with its logs) if it fails.

        Prints v1's lines with `show_output=True`: the state, a dot per poll, the final state.
        """
        timeout = timeout_sec if timeout_sec is not None else self.startup_timeout()
        deadline = time.monotonic() + timeout
        dots = 0
        if show_output and progress is None:
            print(self.state, end="", flush=True)
        while True:
            state, error = self._probe()
            if state in (HEALTHY, FAILED) or time.monotonic() > deadline:
                break
            if show_output and progress is None:
                dots += 1
                print(".", end="", flush=True)
            time.sleep(self.poll_interval)
        if state not in (HEALTHY, FAILED):
            state, error = UNHEALTHY, f"not Healthy after {timeout:.0f} s; the logs may say why (service.get_logs())"
        self._save(state=state, error=error)
        if show_output and progress is None:
            print(f"\n{state}")
        if state != HEALTHY:
            tail = self.get_logs(num_lines=20)
            message = (
                f"Service deployment polling reached non-successful terminal state, current service state: "
                f"{state}\nError: {error}\nLast log lines:\n{tail}"
            )
            if progress is not None:
                progress.done(False, error or state)
            raise WebserviceException(message)
        if show_output and progress is None:
            print(f'{self.compute_type} service creation operation finished, operation "Succeeded"')
        if progress is not None:
            progress.done(True, f"{self.name} is Healthy at {self.scoring_uri}")

    poll_interval: ClassVar[float] = 0.1

    def startup_timeout(self) -> float:
        return 300.0

    @property
    def tls_verify(self) -> bool | str:
        """What a client checks this service's HTTPS certificate against (requests' `verify=`): the usual
        CAs, plus the service's own certificate when it has one, so that a self-signed one works too."""
        cert = (self.target or {}).get("tls_cert")
        if not cert:
            return True
        cached = getattr(self, "_tls_bundle", None)
        if cached and cached[0] == cert:  # written once per certificate, not per request (%test_service --bench)
            return cached[1]
        path = self.workspace.path / "tls" / f"{self.name}.pem"
        path.parent.mkdir(exist_ok=True)
        path.write_text(Path(certifi.where()).read_text() + "\n" + cert)
        self._tls_bundle = (cert, str(path))
        return str(path)

    def request(
        self,
        method: str = "POST",
        route: str = "score",
        data: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
        session: Any = None,
    ) -> Any:
        """The one way anything here calls the service: `route` next to the scoring URI ("score",
        "swagger.json", "ready"), with the key when key auth is on, the service's own TLS trust and a
        timeout (scoring_timeout_ms + 10 s unless given). Returns the `requests.Response`; an unreachable
        service is a WebserviceException naming its URI and state.

            service.request(data=b'{"data": [[1, 2]]}').status_code          # 200
            service.request("GET", "swagger.json", params={"version": "3"}).json()
        """
        self._operable_here()  # a local service of another host: its URI would reach this host's port instead
        if not self.scoring_uri:
            raise WebserviceException(
                f"Error attempting to call webservice, scoring_uri unavailable. "
                f"Service {self.name} is {self.state}; check service.get_logs()"
            )
        url = self.scoring_uri if route == "score" else f"{self.scoring_uri.rsplit('/', 1)[0]}/{route}"
        if timeout is None:
            timeout = self.config.effective("scoring_timeout_ms") / 1000 + 10
        sender = session if session is not None else requests
        try:
            return sender.request(method, url, data=data, params=params, headers=self.request_headers(), timeout=timeout,
                                  verify=self.tls_verify)  # fmt: skip
        except requests.RequestException as e:
            raise WebserviceException(f"Could not reach {url}: {e}. Service {self.name} is {self.state}") from None

    def run(self, input_data: Any) -> Any:
        """POST `input_data` (str or bytes, sent as given; a dict or list is JSON-encoded) to the scoring URI.

        Returns the parsed JSON answer (bytes for a non-JSON answer); raises WebserviceException
        with the status, headers and body for anything but 200.
        """
        if isinstance(input_data, dict | list):
            input_data = json.dumps(input_data)
        try:
            response = self.request(data=input_data)
        except WebserviceException as e:
            raise WebserviceException(f"{e.message}; its state now: {self.update_deployment_state()}") from None
        if response.status_code != 200:
            raise WebserviceException(
                f"Received bad response from service:\nResponse Code: {response.status_code}\n"
                f"Headers: {dict(response.headers)}\nContent: {response.content!r}"
            )
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def request_headers(self) -> dict[str, str]:
        """What every call to the service sends: JSON, and the primary key when key auth is on.

        Not for display: with key auth on, this holds the key."""
        headers = {"Content-Type": "application/json"}
        if self.auth_enabled:
            headers["Authorization"] = f"Bearer {self.get_keys()[0]}"
        return headers

    def get_swagger(self, version: str = "2", timeout: float = 60.0) -> dict[str, Any]:
        """The service's API document: swagger 2.0, or OpenAPI with version '3' or '3.1'.

            service.get_swagger()["definitions"]["ServiceInput"]
        """
        response = self.request("GET", "swagger.json", params={"version": version}, timeout=timeout)
        if response.status_code != 200:
            raise WebserviceException(f"{self.swagger_uri}: {response.status_code} {response.text[:200]}")
        return response.json()

    def get_logs(self, num_lines: int = 5000) -> str:
        self._operable_here()
        return self._logs(num_lines)

    def get_keys(self) -> tuple[str, str]:
        """(primary, secondary) keys; `Authorization: Bearer <key>` with either one."""
        if not self.auth_enabled:
            raise WebserviceException(
                f"service {self.name} has key auth disabled; redeploy or update it with auth_enabled=True to use keys"
            )
        return self._keys["primary"], self._keys["secondary"]

    def regen_key(self, key: str) -> None:
        """Replace the 'Primary' or 'Secondary' key; the running service accepts the new key within a second."""
        which = str(key).lower()
        if which not in ("primary", "secondary"):
            raise UserError(f"key must be 'Primary' or 'Secondary', got {key!r}")
        self._operable_here()
        keys = {**self._keys, which: new_key()}
        self._save(keys=keys)
        self._keys_changed()

    def update(self, image: Image | None = None, **settings: Any) -> DeploymentPlan | None:
        """Move the service to another image and/or settings. The new version is started and checked
        before it takes traffic; if it fails, the previous version keeps serving and this raises
        WebserviceException with the reason."""
        self._operable_here()
        progress = settings.pop("progress", None)
        show_output = settings.pop("show_output", False)
        models = settings.pop("models", None)
        inference_config = settings.pop("inference_config", None)
        deployment_config = settings.pop("deployment_config", None)
        if image is not None and not isinstance(image, Image):
            raise UserError("image must be an Image, e.g. Image(ws, id='myimage:2')")
        if deployment_config is not None:
            if getattr(deployment_config, "compute_type", None) != self.compute_type:
                raise UserError(
                    f"Error, provided deployment configuration must be of type {type(self).__name__}.deploy_configuration() "
                    f"in order to update a {self.compute_type.lower()} service."
                )
            given = {k: v for k, v in deployment_config.to_dict().items() if v is not None and v != self.config.to_dict().get(k)}
            settings = {**given, **settings}
        report = progress_mod.resolve(progress, show_output)
        if inference_config is not None or models is not None:
            image = self._image_for(image, models, inference_config, report)
        new_config = self.config.merged(**settings)
        target_image = image or self.image
        report.stage(f"Updating {self.name} to {target_image.id}")
        previous_keys = self._keys
        # Keys given to update() become the service's keys, not part of its config; the target
        # hands the new version self._keys, and a failed update puts the old ones back.
        keys = self._keys = {**self._keys, **{k.split("_")[0]: v for k in new_config.secrets if (v := getattr(new_config, k))}}
        try:
            self._update(target_image, new_config, report)
        except BaseException:
            if keys != previous_keys:
                self._keys = previous_keys
                self._keys_changed()
            raise
        self._save(
            image_id=target_image.id,
            config=new_config.to_dict(),
            keys=keys,
            state=HEALTHY,
            error=None,
            description=new_config.description,
            tags=new_config.tags or self.tags,
        )
        report.done(True, f"{self.name} now serves {target_image.id}")
        return None

    def _image_for(
        self, image: Image | None, models: builtins.list | None, inference_config: Any, report: progress_mod.Progress
    ) -> Image:
        """v1's `update(models=..., inference_config=...)`: the next image version of this service with them."""
        if image is not None:
            raise UserError("Error, an image configuration and an inference configuration cannot be provided at the same time.")
        if inference_config is None:
            return self.image.refreshed(models=models, progress=report)
        if not callable(getattr(inference_config, "create_image", None)):
            raise UserError(
                f"Error, provided inference configuration must be of type InferenceConfig in order to update a "
                f"{self.compute_type.lower()} service."
            )
        return inference_config.create_image(self.workspace, self.name, self.image.models if models is None else models, report)

    def reload(self) -> None:
        """Restart the service's processes on the same image (init() runs again); starts it if it is down."""
        self.update(image=self.image)

    def delete(
        self, delete_collected_data: bool = False, progress: progress_mod.Progress | None = None, show_output: bool = False
    ) -> None:
        """Stop the service and remove it (its image stays until image.delete()).

        The data it collected (`collect_model_data`) belongs to the workspace, as v1's blob storage
        did: it stays, and this says where (`service.collected_data_kept` too); a service deployed
        again under the same name adds to it. `delete_collected_data=True` removes it as well.
        """
        self._operable_here()
        report = progress_mod.resolve(progress, show_output)
        # Asked before anything changes: a target out of reach fails here, leaving the service as it was.
        self.collected_data_kept = self._collected_data_location()
        self.state = "Deleting"
        self._stop()
        with self.workspace.transaction() as tx:
            tx.execute("DELETE FROM services WHERE name=:name", {"name": self.name})
        if self.collected_data_kept and delete_collected_data:
            self._remove_collected_data()
            self.collected_data_kept, self.collected_data_removed = None, True
        report.log(self.deleted_summary().splitlines()[-1])

    def deleted_summary(self, remove_hint: str = "delete(delete_collected_data=True)") -> str:
        """After delete(), what happened as faces say it: 'Deleted service x', then where its collected data
        stays and what removes it (`remove_hint`: the face's own flag)."""
        text = f"Deleted service {self.name}" + (" and the data it collected" if self.collected_data_removed else "")
        if self.collected_data_kept:
            text += f"\nThe data {self.name} collected stays in {self.collected_data_kept} ({remove_hint} removes it)"
        return text

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tags": self.tags,
            "properties": self.properties,
            "state": self.state,
            "createdTime": self.created_time,
            "updatedTime": self.updated_time,
            "error": self.error,
            "computeType": self.compute_type,
            "workspaceName": self.workspace.name,
            "imageId": self.image_id,
            "scoringUri": self.scoring_uri,
            "swaggerUri": self.swagger_uri,
            "authEnabled": self.auth_enabled,
            "config": self.config.to_dict(),
            "createdBy": self.created_by,
            "createdByText": describe(self.created_by),  # 'ana@ana-laptop (train.ipynb)': what faces show
            "runsOn": self.runs_on(),
        }

    def runs_on(self) -> str:
        """Where the service runs, in a few words: 'local target of host-a', 'Docker engine of host-a', …"""
        return self.compute_type

    # -- target hooks ------------------------------------------------------------------------------------------
    # Each target's `deploy_configuration(...)` (a staticmethod with v1's parameters for that target).
    deploy_configuration: ClassVar[Callable[..., DeploymentConfiguration]]

    @classmethod
    def _before_deploy(
        cls,
        workspace: Workspace,
        name: str,
        image: Image,
        config: DeploymentConfiguration,
        deployment_target: Any,
        progress: progress_mod.Progress,
    ) -> DeploymentPlan | None:
        """Runs before the service is recorded: a target refuses here what it can check early (no cluster),
        or answers the deploy itself with a plan (a dry run: nothing deployed or recorded)."""
        return None

    @classmethod
    def _location(cls, config: DeploymentConfiguration) -> dict[str, Any]:
        """Where a new service of this target runs, recorded in its `target` field before it starts (so that
        other machines of a team's workspace know, even if the deploy is cut short)."""
        return {}

    def _operable_here(self) -> None:
        """Raise TargetUnavailable, in one line, when this machine cannot reach where the service runs."""

    def _start(self, image: Image, progress: progress_mod.Progress, deployment_target: Any) -> None:
        raise NotImplementedError

    def _probe(self) -> tuple[str, str | None]:
        raise NotImplementedError

    def _update(self, image: Image, config: DeploymentConfiguration, progress: progress_mod.Progress) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _logs(self, num_lines: int) -> str:
        raise NotImplementedError

    def _keys_changed(self) -> None:
        raise NotImplementedError

    def usage(self) -> tuple[float, int]:
        """(CPU seconds used so far, memory in bytes now) by the service's processes: what Model.profile samples."""
        raise WebserviceException(f"the {self.compute_type.lower()} target does not measure a service's CPU and memory")

    def _collected_data_location(self) -> str | None:
        """Where the data the service collected is kept (it outlives the service), or None if it has none."""
        return None

    def _remove_collected_data(self) -> None:
        """Remove the data the service collected (delete(delete_collected_data=True))."""


def swagger_uri_for(scoring_uri: str) -> str:
    """v1: the scoring URI with its last segment replaced by swagger.json."""
    return scoring_uri.rsplit("/", 1)[0] + "/swagger.json"


def _find(workspace: Workspace, name: str) -> Row:
    rows = workspace.query("SELECT * FROM services WHERE name=:name", {"name": name})
    if not rows:
        known = ", ".join(r["name"] for r in workspace.query("SELECT name FROM services ORDER BY name LIMIT 8")) or "none"
        raise NotFoundError(f"service {name!r} does not exist in {workspace.display} (services: {known})")
    return rows[0]
