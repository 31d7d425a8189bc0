"""Deployment targets: where a service runs. One module per target, one Webservice subclass each.

| compute type | names accepted | module | needs |
| --- | --- | --- | --- |
| Local | local | local.py | nothing: a detached process on 127.0.0.1 |
| Docker | docker, aci | docker.py | a Docker engine |
| Kubernetes | kubernetes, aks | kubernetes.py | a cluster in kubeconfig and a registry |

Targets are imported on first use, so a machine without the docker or kubernetes packages
can still use the local target.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from ..errors import TargetUnavailable, UserError

if TYPE_CHECKING:
    from ..images import Image
    from ..services import Webservice

# compute type -> (module, class)
TARGETS = {
    "Local": ("mlmagics.core.targets.local", "LocalWebservice"),
    "Docker": ("mlmagics.core.targets.docker", "DockerWebservice"),
    "Kubernetes": ("mlmagics.core.targets.kubernetes", "KubernetesWebservice"),
}
ALIASES = {"local": "Local", "docker": "Docker", "aci": "Docker", "kubernetes": "Kubernetes", "aks": "Kubernetes"}


def canonical_compute_type(name: str) -> str:
    """'aks' -> 'Kubernetes', 'ACI' -> 'Docker', 'Local' -> 'Local'."""
    key = ALIASES.get(name.lower()) if isinstance(name, str) else None
    if key is None:
        raise UserError(f"unknown target {name!r}; use one of local, docker (aci), kubernetes (aks)")
    return key


def target_for(compute_type: str) -> type[Webservice]:
    """The Webservice subclass of a target, imported on first use."""
    key = canonical_compute_type(compute_type)
    module_name, class_name = TARGETS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise TargetUnavailable(f"the {key.lower()} target is not built yet in this version of mlmagics") from None
        raise TargetUnavailable(f"the {key.lower()} target needs the Python package {e.name!r}: pip install {e.name}") from None
    return getattr(module, class_name)


def default_target() -> type[Webservice]:
    """The target used when a deploy names none: $MLMAGICS_DEFAULT_TARGET, else local."""
    return target_for(os.environ.get("MLMAGICS_DEFAULT_TARGET", "local"))


def remove_built_image(image: Image) -> None:
    """Remove what targets built from an image (a Docker image), if anything."""
    if image.build_info.get("tag"):
        try:
            target_for("Docker").remove_image(image)
        except TargetUnavailable:
            pass


def deploy_configuration(target: str, **settings):
    """`deploy_configuration(...)` of the named target, from v1 parameter names (faces use this).

    >>> deploy_configuration("local", port=8890).port
    8890
    """
    import inspect

    cls = target_for(target)
    accepted = inspect.signature(cls.deploy_configuration).parameters
    unknown = sorted(k for k, v in settings.items() if v is not None and k not in accepted)
    if unknown:
        raise UserError(
            f"the {canonical_compute_type(target).lower()} target has no setting {', '.join(unknown)}; "
            f"it takes {', '.join(accepted)}"
        )
    return cls.deploy_configuration(**{k: v for k, v in settings.items() if v is not None})
