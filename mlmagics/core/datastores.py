"""v1's `Datastore`: where a workspace keeps data files, addressed as (datastore, "relative/path").

    datastore = Datastore.get_default(ws)                   # or ws.get_default_datastore()
    datastore.upload_files(["./features.csv"], target_path="sklearn_regression/")
    Dataset.Tabular.from_delimited_files([(datastore, "sklearn_regression/features.csv")])

v1's datastores were Azure Blob containers and file shares. Here a datastore is a folder of the
workspace (`datastores/<name>/`), private to its user like the rest of it; the two system
datastores v1 created, `workspaceblobstore` (the default) and `workspacefilestore`, exist in every
workspace. Names and progress lines are v1's, so notebooks read the same.
"""

from __future__ import annotations

import builtins
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from .errors import NotFoundError, UserError


class Workspace(Protocol):
    """What a datastore needs of its workspace: its folder. (workspace.py imports this module for
    `ws.get_default_datastore()`, so this one does not import it back.)"""

    path: Path


SYSTEM_DATASTORES = ("workspaceblobstore", "workspacefilestore")
DEFAULT = "workspaceblobstore"
_NAME = re.compile(r"[A-Za-z0-9_]{1,255}")


def clean_relative(path: str | None) -> str:
    """A path inside a datastore: no leading `./`, `../` or `/` runs (v1 strips them), never `..` inside."""
    parts = [p for p in PurePosixPath((path or "").replace("\\", "/")).parts if p not in ("/", ".", "..")]
    return "/".join(parts)


class DataReference:
    """A path in a datastore (what v1's uploads return)."""

    def __init__(self, datastore: Datastore, path_on_datastore: str = "") -> None:
        self.datastore, self.path_on_datastore = datastore, path_on_datastore

    def __repr__(self) -> str:
        return f"$AZUREML_DATAREFERENCE_{self.datastore.name}/{self.path_on_datastore}"

    def local_path(self) -> Path:
        return self.datastore.root / self.path_on_datastore


class Datastore:
    """A named folder of the workspace's data (v1's blob datastore, on this machine's disk)."""

    datastore_type = "AzureBlob"

    def __init__(self, workspace: Workspace, name: str | None = None) -> None:
        name = name or DEFAULT
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UserError(f"datastore name {name!r} is not valid: letters, digits and '_', up to 255")
        self.workspace: Any = workspace  # the caller's Workspace (typed loosely: see the Protocol above)
        self.name = name
        self.root = workspace.path / "datastores" / name
        if not self.root.is_dir():
            if name not in SYSTEM_DATASTORES:
                raise NotFoundError(f"datastore {name} not found in the workspace (register it first)")
            self.root.mkdir(parents=True, mode=0o700)
        self.container_name = name
        self.account_name = "local"

    def __repr__(self) -> str:
        return f"Datastore(name={self.name!r}, root={str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datastore) and (other.workspace, other.name) == (self.workspace, self.name)

    def __hash__(self) -> int:
        return hash((self.workspace, self.name))

    # -- v1's look-ups ------------------------------------------------------------------------------
    @staticmethod
    def get(workspace: Workspace, datastore_name: str) -> Datastore:
        return Datastore(workspace, datastore_name)

    @staticmethod
    def get_default(workspace: Workspace) -> Datastore:
        return Datastore(workspace, DEFAULT)

    @staticmethod
    def register_local(workspace: Workspace, datastore_name: str) -> Datastore:
        """A further datastore (v1 registered blob containers; here a folder of the workspace)."""
        if not isinstance(datastore_name, str) or not _NAME.fullmatch(datastore_name):
            raise UserError(f"datastore name {datastore_name!r} is not valid: letters, digits and '_', up to 255")
        (workspace.path / "datastores" / datastore_name).mkdir(parents=True, exist_ok=True, mode=0o700)
        return Datastore(workspace, datastore_name)

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Datastore]:
        folder = workspace.path / "datastores"
        names = set(SYSTEM_DATASTORES)
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir()}
        return {name: Datastore(workspace, name) for name in sorted(names)}

    def path(self, path: str | None = None) -> DataReference:
        return DataReference(self, clean_relative(path))

    # -- moving files --------------------------------------------------------------------------------------
    def upload_files(
        self,
        files: builtins.list[str],
        relative_root: str | None = None,
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataReference:
        """Copy `files` in, named by their path under `relative_root` (default: their common folder), below `target_path`."""
        if isinstance(files, str | os.PathLike) or not files:
            raise UserError("files must be a non-empty list of file paths")
        paths = [os.path.abspath(f) for f in files]
        for path in paths:
            if not os.path.isfile(path):
                raise UserError(f"'{path}' does not point to a file. Please upload the file to cloud first if running in "
                                "a cloud notebook.")  # fmt: skip
        root = os.path.abspath(relative_root) if relative_root else os.path.commonpath([os.path.dirname(p) for p in paths])
        pairs = []
        for path in paths:
            if os.path.commonpath([root, path]) != root:  # a folder, not a prefix of the name: /a/b is not in /a/bc
                raise UserError(f"relative_root: '{root}' is not part of the file_path: '{path}'.")
            pairs.append((Path(path), os.path.relpath(path, root)))
        return self._upload(pairs, target_path, overwrite, show_progress)

    def upload(
        self, src_dir: str, target_path: str | None = None, overwrite: bool = False, show_progress: bool = True
    ) -> DataReference:
        """Copy the folder `src_dir` in (its files named relative to it), below `target_path`."""
        if not os.path.isdir(src_dir):
            raise UserError("src_path must be a directory.")
        pairs = [(p, str(p.relative_to(src_dir))) for p in sorted(Path(src_dir).rglob("*")) if p.is_file()]
        return self._upload(pairs, target_path, overwrite, show_progress)

    def _upload(
        self, pairs: builtins.list[tuple[Path, str]], target_path: str | None, overwrite: bool, show: bool
    ) -> DataReference:
        prefix = clean_relative(target_path)
        say = print if show else (lambda *a, **k: None)
        say(f"Uploading an estimated of {len(pairs)} files")
        done = 0
        for source, name in pairs:
            blob = clean_relative(f"{prefix}/{name}" if prefix else name)
            target = self.root / blob
            if target.exists() and not overwrite:
                say(f"Target already exists. Skipping upload for {blob}")
                continue
            say(f"Uploading {source}")
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(f".{target.name}.{os.getpid()}.part")
            shutil.copyfile(source, staged)
            os.replace(staged, target)  # a reader never sees half a file
            done += 1
            say(f"Uploaded {source}, {done} files out of an estimated total of {len(pairs)}")
        say(f"Uploaded {done} files")
        return DataReference(self, prefix)

    def download(
        self, target_path: str, prefix: str | None = None, overwrite: bool = False, show_progress: bool = True
    ) -> int:
        """Copy the files under `prefix` to `target_path/<their name in the datastore>`; returns how many."""
        start = self.root / clean_relative(prefix)
        files = [start] if start.is_file() else sorted(p for p in start.rglob("*") if p.is_file()) if start.is_dir() else []
        count = 0
        for file in files:
            name = file.relative_to(self.root)
            target = Path(target_path) / name
            if target.exists() and not overwrite:
                if show_progress:
                    print(f"Target already exists. Skipping download for {name}")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            count += 1
        if show_progress:
            print(f"Downloaded {count} files")
        return count

    def resolve(self, pattern: str) -> builtins.list[Path]:
        """The files `pattern` (a path or a glob such as `weather/**/*.csv`) names in this datastore."""
        relative = clean_relative(pattern)
        if any(c in relative for c in "*?["):
            return sorted(p for p in self.root.glob(relative) if p.is_file())
        target = self.root / relative
        return sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
