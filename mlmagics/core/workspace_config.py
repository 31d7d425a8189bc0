"""A workspace's `config.json`: found, read and written as `Workspace.from_config()` / `write_config()` do.

    .mlmagics/config.json   {"metadata": "postgresql://me@db/ws", "artifacts": "s3://team-bucket/ws"}
    .azureml/config.json    {"subscription_id": "...", "resource_group": "...", "workspace_name": "...",
                             "path": "../team-ws"}

mlmagics' own file names the two stores of a team's workspace (or a folder, `"path"`). v1's file
names the workspace as v1's did (or holds v1's `Scope`), so a v1 notebook's folder works as it is;
it may carry the same keys. Relative folders are relative to the config file's folder.
A config file never holds a secret: a URI with a password in it is refused, and never written.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from .errors import UserError
from .store import uris

# v1's order (after mlmagics' own folder): each (folder, file) pair is looked for in the start folder and every
# parent before the next pair
_FOLDERS = (".mlmagics", ".azureml", "aml_config", "")
_FILES = ("config.json", "project.json")
_NEEDED = ("subscription_id", "resource_group", "workspace_name")
_MAX_BYTES = 1024 * 1024


def find(start: Path, file_name: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """(the file, its values) for the first config found from `start` upwards; None when there is none."""
    if start.is_file():
        return start, read(start, v1_names=start.parent.name != ".mlmagics")
    for folder in _FOLDERS:
        for name in (file_name,) if file_name else _FILES:
            if folder == ".mlmagics" and name != "config.json":
                continue
            for directory in (start, *start.parents):
                candidate = directory / folder / name
                if candidate.is_file():
                    return candidate, read(candidate, v1_names=folder != ".mlmagics")
    return None


def read(file: Path, v1_names: bool = True) -> dict[str, Any]:
    """The three names (from v1's `Scope` or its keys; needed in v1's files) and mlmagics' `metadata`,
    `artifacts`, `path`, `local` and `location`; a one-line error otherwise."""
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
    if v1_names and not any(key in data for key in ("metadata", "artifacts")) and not all(
        isinstance(data.get(key), str) and data[key] for key in _NEEDED
    ):
        raise UserError(
            f"The config file found in: {file} does not seem to contain the required parameters. Please make sure it "
            "contains your subscription_id, resource_group and workspace_name."
        )
    for key in ("path", "local", "location", *_NEEDED):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and value and "\0" not in value and len(value) <= 4096):
            kind = "a name" if key in _NEEDED else "a folder or region name"
            raise UserError(f"the workspace config {file}: {key!r} must be {kind}, got {value!r:.80}")
    for key in ("metadata", "artifacts"):
        if data.get(key) is None:
            continue
        value = uris.checked(data[key], key)
        if uris.secret_in(value):
            raise UserError(
                f"the workspace config {file} holds a secret in {key} ({uris.mask(value)}): remove it; passwords come "
                "from the environment (PGPASSWORD, ~/.pgpass, AWS_* / AZURE_STORAGE_* settings), never from a config file"
            )
    if bool(data.get("metadata")) != bool(data.get("artifacts")):
        raise UserError(f"the workspace config {file} must name both stores, metadata and artifacts, or neither")
    return data


def write(workspace: Any, path: Path, file_name: str | None = None) -> Path:
    """v1's `write_config`: `<path>/aml_config/` if it exists, else `<path>/.azureml/`; the name forced to .json.
    A workspace of URIs that v1 never named writes mlmagics' own `<path>/.mlmagics/config.json`."""
    if workspace.is_folder:
        stores = {"path": str(workspace.path)}
    else:  # the masked form would not open: the password is left out, to come from the environment
        stores = {key: uris.without_secrets(uri) for key, uri in zip(("metadata", "artifacts"), workspace._stores, strict=True)}
    if workspace.is_folder or workspace._name:
        folder = path / "aml_config" if (path / "aml_config").is_dir() else path / ".azureml"
        values = {
            "subscription_id": workspace.subscription_id,
            "resource_group": workspace.resource_group,
            "workspace_name": workspace.name,
            "location": workspace.location,
            **stores,
        }
    else:
        folder, values = path / ".mlmagics", stores
    name = f"{Path(file_name).stem}.json" if file_name else "config.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        target.write_text(json.dumps(values, indent=4))
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
        "id": workspace.identity,
        "name": workspace.name,
        "location": workspace.location,
        "type": "mlmagics/workspace",
        "tags": {},
        "workspaceid": workspace.identity,
        "description": f"mlmagics workspace {workspace.display}, opened on {socket.gethostname()}",
        "friendlyName": workspace.name,
        "creationTime": created,
        "containerRegistry": None,  # images are built into this machine's Docker engine; push_image names a registry
        "keyVault": workspace.db.display,  # the services' keys (a 0600 file, or the team's database)
        "applicationInsights": None,
        "storageAccount": workspace.artifacts.display,
        "sku": "local",
        "hbiWorkspace": False,
        "subscriptionId": workspace.subscription_id,
        "resourceGroup": workspace.resource_group,
    }
