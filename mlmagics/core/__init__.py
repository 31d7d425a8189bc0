"""The deploy core: workspace, models, images, deploy configurations, services and targets.

Every face (magics, widgets, the JupyterLab panel, the CLI) calls this; it knows nothing of
them. The names are Azure ML SDK v1's, so migrating is a search-and-replace of imports:

    from mlmagics.core import Workspace, Model, ContainerImage, Image, Webservice, LocalWebservice
"""

from .autoscale import replicas_needed
from .conda_dependencies import CondaDependencies
from .configs import DeploymentConfiguration, InvalidConfiguration
from .datasets import Dataset, FileDataset, PromoteHeadersBehavior, TabularDataset, dataset_type_definitions
from .datastores import DataReference, Datastore
from .deploy import deploy_configuration  # noqa: E402
from .environment import ContainerRegistry, Environment
from .errors import (
    ComputeTargetException,
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
from .inference import InferenceConfig, ModelPackage
from .models import Model, ResourceConfiguration
from .plans import DeploymentPlan
from .preflight import check_script
from .profiling import ModelProfile
from .progress import NullProgress, Progress, Recorder, TextProgress
from .services import Webservice, default_target, target_class, target_names
from .targets.docker import AciWebservice, DockerServiceDeploymentConfiguration, DockerWebservice  # noqa: E402
from .targets.kubernetes import (  # noqa: E402
    AksCompute,
    AksWebservice,
    ComputeTarget,
    KubernetesCompute,
    KubernetesServiceDeploymentConfiguration,
    KubernetesWebservice,
)

# The targets register themselves when imported (services.py, configs.py); this is the one place that imports them.
from .targets.local import LocalServiceDeploymentConfiguration, LocalWebservice  # noqa: E402, I001
from .workspace import Workspace

__all__ = [
    "ResourceConfiguration",
    "Datastore",
    "DataReference",
    "dataset_type_definitions",
    "TabularDataset",
    "PromoteHeadersBehavior",
    "FileDataset",
    "Dataset",
    "ModelProfile",
    "ComputeTargetException",
    "ModelPackage",
    "InferenceConfig",
    "Environment",
    "ContainerRegistry",
    "CondaDependencies",
    "AciWebservice",
    "AksCompute",
    "AksWebservice",
    "ConflictError",
    "ComputeTarget",
    "ContainerImage",
    "DeploymentConfiguration",
    "DeploymentPlan",
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
    "default_target",
    "deploy_configuration",
    "replicas_needed",
    "target_class",
    "target_names",
]
