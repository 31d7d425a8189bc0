"""The deploy core: workspace, models, images, deploy configurations, services and targets.

Every face (magics, widgets, the JupyterLab panel, the CLI) calls this; it knows nothing of
them. The names are Azure ML SDK v1's, so migrating is a search-and-replace of imports:

    from mlmagics.core import Workspace, Model, ContainerImage, Image, Webservice, LocalWebservice
"""

from .autoscale import replicas_needed
from .configs import DeploymentConfiguration, InvalidConfiguration
from .errors import (
    ConflictError,
    ImageException,
    MlmagicsError,
    ModelNotFoundException,
    NotFoundError,
    TargetUnavailable,
    UserError,
    WebserviceException,
)
from .images import ContainerImage, Image, ImageConfig
from .models import Model
from .preflight import check_script
from .progress import NullProgress, Progress, Recorder, TextProgress
from .services import Webservice
from .targets.docker import AciWebservice, DockerServiceDeploymentConfiguration, DockerWebservice
from .targets.kubernetes import AksWebservice, KubernetesServiceDeploymentConfiguration, KubernetesWebservice
from .targets.kubernetes_cluster import AksCompute, ComputeTarget, KubernetesCompute
from .targets.local import LocalServiceDeploymentConfiguration, LocalWebservice
from .workspace import Workspace

__all__ = [
    "AciWebservice",
    "AksCompute",
    "AksWebservice",
    "ConflictError",
    "ComputeTarget",
    "ContainerImage",
    "DeploymentConfiguration",
    "DockerServiceDeploymentConfiguration",
    "DockerWebservice",
    "Image",
    "ImageConfig",
    "ImageException",
    "InvalidConfiguration",
    "KubernetesCompute",
    "KubernetesServiceDeploymentConfiguration",
    "KubernetesWebservice",
    "LocalServiceDeploymentConfiguration",
    "LocalWebservice",
    "MlmagicsError",
    "Model",
    "ModelNotFoundException",
    "NotFoundError",
    "NullProgress",
    "Progress",
    "Recorder",
    "TargetUnavailable",
    "TextProgress",
    "UserError",
    "Webservice",
    "WebserviceException",
    "Workspace",
    "check_script",
    "replicas_needed",
]
