"""mlmagics: from a trained model in a notebook to a running, versioned web service.

`%load_ext mlmagics` adds the notebook magics; the Python API has the Azure ML v1 SDK's names,
so a v1 notebook's `from azureml.core import Workspace, Model` becomes:

    from mlmagics import Workspace, Model, ContainerImage, Webservice, LocalWebservice

Importing this package is cheap: the API's names are imported on first use (`mlmagics.core`),
because the scoring runtime (`mlmagics.serving`) runs inside images that hold nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

VERSION = __version__  # v1: azureml.core.VERSION

# The public API: every name `mlmagics.core` exports (tests check the two lists agree).
__all__ = [
    "AciWebservice", "ComputeTargetException", "CondaDependencies", "ContainerRegistry", "Environment",
    "InferenceConfig", "ModelPackage", "DataReference", "Datastore", "Dataset", "FileDataset", "PromoteHeadersBehavior",
    "ResourceConfiguration", "TabularDataset", "dataset_type_definitions",
    "ModelProfile", "AksCompute", "AksWebservice", "ComputeTarget", "ConflictError", "ContainerImage",
    "DeploymentConfiguration", "DeploymentPlan", "DockerServiceDeploymentConfiguration", "DockerWebservice", "Image",
    "ImageConfig",
    "ImageException", "InvalidConfiguration", "KubernetesCompute", "KubernetesServiceDeploymentConfiguration",
    "KubernetesWebservice", "LocalServiceDeploymentConfiguration", "LocalWebservice", "MlmagicsError", "Model",
    "ModelNotFoundException", "NotFoundError", "NullProgress", "Progress", "Recorder", "TargetUnavailable",
    "TextProgress", "UserError", "VERSION", "Webservice", "WebserviceException", "Workspace", "check_script",
    "default_target", "deploy_configuration", "replicas_needed", "target_class", "target_names",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """`mlmagics.Workspace` and the rest: imported from the core the first time they are asked for."""
    if name in __all__:
        value = getattr(importlib.import_module("mlmagics.core"), name)
        globals()[name] = value  # the next look-up is a plain attribute
        return value
    raise AttributeError(f"module 'mlmagics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def load_ipython_extension(ipython) -> None:
    """`%load_ext mlmagics`: register the magics. Never raises: a problem is shown as a warning."""
    try:
        from mlmagics.magics import DeployMagics

        ipython.register_magics(DeployMagics)
    except Exception as e:  # noqa: BLE001 - loading an extension must not break the notebook
        import warnings

        warnings.warn(f"mlmagics: the magics could not be loaded: {e}", stacklevel=2)


def unload_ipython_extension(ipython) -> None:
    pass


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter server: the Deployments panel's REST API lives in `mlmagics.server` (imported only by the server)."""
    return [{"module": "mlmagics.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """JupyterLab: the prebuilt Deployments panel, built from labextension/ into mlmagics/labextension."""
    return [{"src": "labextension", "dest": "mlmagics"}]
