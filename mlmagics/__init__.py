"""mlmagics: from a trained model in a notebook to a running, versioned web service.

`%load_ext mlmagics` adds the notebook magics; `from mlmagics import Workspace, Model, ...`
is the Python API (names as in the Azure ML v1 SDK). Importing this package is cheap: the
scoring runtime (`mlmagics.serving`) is imported inside images that hold nothing else.
"""

__version__ = "0.1.0"


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
