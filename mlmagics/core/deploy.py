"""The common case in one call: deploy an image (or models + a script) to a target and wait.

    service = deploy(ws, "mnist", target="local", image="myimage:2")
    service = deploy(ws, "mnist", target="docker", models=["sklearn_mnist"], script="score.py", cpu_cores=1)

The v1-style API (`Webservice.deploy_from_image(...)` then `wait_for_deployment()`) does the
same in two steps; the faces (CLI, magics, widgets, the lab panel) call this.
"""

from __future__ import annotations

import inspect
from typing import Any

from .errors import UserError
from .images import ContainerImage, Image
from .models import Model
from .plans import DeploymentPlan
from .progress import Progress
from .services import Webservice, default_target, target_class
from .versioned import split_id
from .workspace import Workspace


def deploy_configuration(target: str, **settings: Any):
    """`deploy_configuration(...)` of the named target, from v1 parameter names (what faces build from flags).

    >>> deploy_configuration("local", port=8890).port
    8890
    """
    cls = target_class(target)
    accepted = inspect.signature(cls.deploy_configuration).parameters
    unknown = sorted(k for k, v in settings.items() if v is not None and k not in accepted)
    if unknown:
        raise UserError(
            f"the {cls.compute_type.lower()} target has no setting {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    return cls.deploy_configuration(**{k: v for k, v in settings.items() if v is not None})


def resolve_image(workspace: Workspace, image: str | Image) -> Image:
    """An Image from 'name:version' or 'name' (its latest version)."""
    if isinstance(image, Image):
        return image
    name, version = split_id(image)
    return Image(workspace, name, version=version)


def existing_service(workspace: Workspace, name: str) -> Webservice | None:
    """The service called `name`, or None when there is none (deploy's update and Model.deploy's overwrite)."""
    try:
        return Webservice(workspace, name)
    except LookupError:
        return None


def resolve_model(workspace: Workspace, model: str | Model) -> Model:
    if isinstance(model, Model):
        return model
    name, version = split_id(model)
    return Model(workspace, name, version=version)


def create_image(
    workspace: Workspace,
    name: str,
    models: list[str | Model],
    script: str,
    requirements: str | None = None,
    conda_file: str | None = None,
    runtime: str = "python",
    dependencies: list[str] | None = None,
    description: str | None = None,
    tags: dict | None = None,
    progress: Progress | None = None,
) -> Image:
    """Image.create from names: `create_image(ws, "myimage", ["sklearn_mnist:1"], "score.py")`."""
    config = ContainerImage.image_configuration(
        execution_script=script,
        runtime=runtime,
        conda_file=conda_file,
        requirements=requirements,
        dependencies=dependencies,
        description=description,
        tags=tags,
    )
    return Image.create(workspace, name, [resolve_model(workspace, m) for m in models], config, progress=progress)


def deploy(
    workspace: Workspace,
    name: str,
    target: str | None = None,
    image: str | Image | None = None,
    models: list[str | Model] | None = None,
    script: str | None = None,
    requirements: str | None = None,
    conda_file: str | None = None,
    runtime: str = "python",
    progress: Progress | None = None,
    wait: bool = True,
    update: bool = False,
    **settings: Any,
) -> Webservice | DeploymentPlan:
    """Deploy as service `name` on `target` (local, docker/aci, kubernetes/aks; None: the workspace's default,
    $MLMAGICS_DEFAULT_TARGET, else local) and wait until Healthy.

    Give `image`, or `models` and `script` (an image named after the service is created).
    `settings` are the target's deploy_configuration parameters (v1 names). With
    `update=True` an existing service of that name is updated instead of refused.
    """
    if image is None and not (models and script):
        raise UserError("give an image (NAME:VERSION), or models and a script to build one")
    if image is not None and (models or script):
        raise UserError("give either an image or models and a script, not both")
    config = deploy_configuration(target or default_target().compute_type, **settings)
    if image is None:
        assert models and script  # checked above
        image = create_image(workspace, name, models, script, requirements, conda_file, runtime, progress=progress)
    image = resolve_image(workspace, image)
    if update:
        existing = existing_service(workspace, name)
        if existing is not None:
            planned = existing.update(image=image, progress=progress, **{k: v for k, v in settings.items() if k != "port"})
            return planned or existing
    service = Webservice.deploy_from_image(workspace, name, image, config, progress=progress)
    if wait and isinstance(service, Webservice):  # a dry run's plan has nothing to wait for
        service.wait_for_deployment(progress=progress)
    return service
