"""pytest-jupyter's server fixtures (`jp_fetch`, ...) for the server extension tests only.

Imported here rather than listed in `pytest_plugins`, so that its autouse fixtures (an event loop
and a ServerApp clean-up per test) stay in this folder instead of running for the whole suite.
"""

from __future__ import annotations

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403


@pytest.fixture
def jp_server_config(lab_workspace):
    """A server with the mlmagics extension on `lab_workspace`, asking every request to authenticate."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"mlmagics": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        "MlmagicsServer": {"workspace": str(lab_workspace.path)},
    }
