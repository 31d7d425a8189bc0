"""The Jupyter server extension: a REST API over the deploy core, for the JupyterLab Deployments panel.

Every route is under the server's base URL and authenticated like every Jupyter handler:

    GET    /mlmagics/deployments                  models, images and services (live state) in one answer
    GET    /mlmagics/models   /images   /services  each list alone
    GET    /mlmagics/services/NAME                one service; keys masked
    GET    /mlmagics/services/NAME/logs?lines=50  its last log lines, made readable
    GET    /mlmagics/services/NAME/keys           its real keys (the panel's "copy")
    POST   /mlmagics/services/NAME/test           score the JSON request body: the answer and the latency
    DELETE /mlmagics/services/NAME   /images/ID   /models/ID

Errors are `{"message": ...}` with the core's own sentence: 404 not found, 409 refused (an image
still used by a service), 400 bad input, 502 the service failed, 503 the target is unreachable.

The workspace is a setting: `jupyter lab --MlmagicsServer.workspace=/data/team-ws` (a folder, or a team's
`.mlmagics/config.json`), or
`c.MlmagicsServer.workspace` in a config file (default: $MLMAGICS_WORKSPACE, $MLMAGICS_HOME, ~/.mlmagics).
The extension is enabled on install (jupyter-config/server-config/mlmagics.json).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from traitlets import Int, Unicode
from traitlets.config import Configurable


class MlmagicsServer(Configurable):
    """Settings of the mlmagics server extension (`%config`-style: `c.MlmagicsServer.workspace = ...`)."""

    workspace = Unicode(
        "",
        config=True,
        help="The mlmagics workspace the Deployments panel shows: a folder, or a config file naming a team's stores "
        "(default: $MLMAGICS_WORKSPACE, else $MLMAGICS_HOME, else ~/.mlmagics).",
    )
    threads = Int(
        4,
        config=True,
        help="Worker threads for core calls (deploy waits, HTTP to services) kept off the server's event loop.",
    )


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Called by the Jupyter server at start-up: add the routes, pointed at the configured workspace."""
    # here, not at the top: listing or validating the extension imports this package, which needs neither the
    # core nor the handlers (jupyter_server, the [lab] extra)
    from mlmagics.core.workspace import default_workspace

    from .handlers import setup_handlers

    settings = MlmagicsServer(parent=server_app)
    workspace = settings.workspace or default_workspace()
    executor = ThreadPoolExecutor(max_workers=max(1, settings.threads), thread_name_prefix="mlmagics")
    setup_handlers(server_app.web_app, workspace, executor)
    server_app.log.info(f"mlmagics: the Deployments panel shows the workspace {workspace}")


def _unload_jupyter_server_extension(server_app: Any) -> None:
    """Called when the server stops: let no core call start any more."""
    executor = server_app.web_app.settings.get("mlmagics_executor")
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
