"""v1's workspace `config.json`: found, read and written as `Workspace.from_config()` / `write_config()` do.

    {"subscription_id": "...", "resource_group": "...", "workspace_name": "...", "path": "../team-ws"}

The file names the workspace as v1's did (or holds v1's `Scope`), so a v1 notebook's folder
works as it is; `"path"` (mlmagics' own key, relative to the file) says which folder holds it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from .errors import UserError

# v1's order: each (folder, file) pair is looked for in the start folder and every parent before the next pair
_FOLDERS = (".azureml", "aml_config", "")
_FILES = ("config.json", "project.json")
_NEEDED = ("subscription_id", "resource_group", "workspace_name")
_MAX_BYTES = 1024 * 1024


def find(start: Path, file_name: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """(the file, its values) for the first config found from `start` upwards; None when there is none."""
    if start.is_file():
        return start, read(start)
    for folder in _FOLDERS:
        for name in (file_name,) if file_name else _FILES:
            for directory in (start, *start.parents):
                candidate = directory / folder / name
                if candidate.is_file():
                    return candidate, read(candidate)
    return None


def read(file: Path) -> dict[str, Any]:
    """The three names (from v1's `Scope` or its keys) and mlmagics' `path`/`location`; a one-line error otherwise."""
    try:
        if file.stat().st_size > _MAX_BYTES:
            raise UserError(f"the workspace config {file} is larger than 1 MiB: not a config file")
        data = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"cannot read the workspace config {file}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"the workspace config {file} must hold a JSON object")
    if "Scope" in data and isinstance(data["Scope"], str):
        parts = data["Scope"].split("/")
        if len(parts) > 8:
            data = {**data, "subscription_id": parts[2], "resource_group": parts[4], "workspace_name": parts[8]}
    if not all(isinstance(data.get(key), str) and data[key] for key in _NEEDED):
        raise UserError(
            f"The config file found in: {file} does not seem to contain the required parameters. Please make sure it "
            "contains your subscription_id, resource_group and workspace_name."
        )
    for key in ("path", "location"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and value and "\0" not in value and len(value) <= 4096):
            raise UserError(f"the workspace config {file}: {key!r} must be a folder or region name, got {value!r:.80}")
    return data


def write(workspace: Any, path: Path, file_name: str | None = None) -> Path:
    """v1's `write_config`: `<path>/aml_config/` if it exists, else `<path>/.azureml/`; the name forced to .json."""
    folder = path / "aml_config" if (path / "aml_config").is_dir() else path / ".azureml"
    name = f"{Path(file_name).stem}.json" if file_name else "config.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        target.write_text(
            json.dumps(
                {
                    "subscription_id": workspace.subscription_id,
                    "resource_group": workspace.resource_group,
                    "workspace_name": workspace.name,
                    "location": workspace.location,
                    "path": str(workspace.path),
                },
                indent=4,
            )
        )
    except PermissionError:
        raise UserError(
            f"You do not have permission to write the config file to: {folder}\nPlease make sure you have write "
            "permissions to the path."
        ) from None
    except OSError as e:
        raise UserError(f"Could not write the config file to: {folder / name}\n{e}") from None
    return target


def details(workspace: Any) -> dict[str, Any]:
    """v1's `get_details()` keys with local values: where things are kept, on which machine."""
    created = workspace.query("SELECT MIN(created_time) AS t FROM models")[0]["t"]
    return {
        "id": str(workspace.path),
        "name": workspace.name,
        "location": workspace.location,
        "type": "mlmagics/workspace",
        "tags": {},
        "workspaceid": str(workspace.path),
        "description": f"mlmagics workspace in {workspace.path} on {socket.gethostname()}",
        "friendlyName": workspace.name,
        "creationTime": created,
        "containerRegistry": None,  # images are built into this machine's Docker engine; push_image names a registry
        "keyVault": str(workspace.path / "workspace.db"),  # the services' keys (a 0600 file)
        "applicationInsights": None,
        "storageAccount": str(workspace.path / "artifacts"),
        "sku": "local",
        "hbiWorkspace": False,
        "subscriptionId": workspace.subscription_id,
        "resourceGroup": workspace.resource_group,
    }
