"""The workspace: the models, images and services of a person or a team, in two stores.

    ws = Workspace()                                  # $MLMAGICS_WORKSPACE, else $MLMAGICS_HOME, else ~/.mlmagics
    ws = Workspace("/data/my-ws")                     # a folder: SQLite + the artifacts beside it
    ws = Workspace("team/.mlmagics/config.json")      # a config file naming the two stores
    ws = Workspace(metadata="postgresql://me@db/ws", artifacts="s3://team-bucket/ws")
    ws = Workspace.from_config()                      # .mlmagics/ or v1's .azureml/config.json, here or above

Metadata (core/store/metadata.py) is one database: SQLite in WAL mode for a folder, PostgreSQL
for a team. Writes are serialized per workspace (so versions are never lost or repeated) and
reads never wait. Artifacts (core/store/artifacts.py) are stored once per content, in a folder
or in S3 / Azure Blob with a verified local cache.

A workspace also has a folder on this machine (`path`): the folder itself for a folder
workspace, else a cache named after the stores, holding the artifact cache and what local
services run from. It is private to its user (0700), and the SQLite database 0600: it holds
the services' keys. No password is written to a config file; every URI shown is masked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import workspace_config
from .datastores import Datastore
from .errors import StorageFullError, UserError
from .store import uris
from .store.artifacts import FolderStore, ObjectStore, Swept, artifact_store, owner_dead, remove_tree
from .store.metadata import Database, Row, Transaction

_DATABASE_FILES = ("workspace.db", "workspace.db-wal", "workspace.db-shm")
_BOTH_STORES = "a workspace of URIs needs both: Workspace(metadata='postgresql://…', artifacts='s3://…' or a folder)"
LOCAL = "local"  # v1's subscription, resource group and location of a workspace not named by a config


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_path() -> Path:
    return Path(os.environ.get("MLMAGICS_HOME") or Path.home() / ".mlmagics").expanduser()


def default_workspace() -> str:
    """What `Workspace()` opens: $MLMAGICS_WORKSPACE (a config file or a folder), else the default folder."""
    return os.environ.get("MLMAGICS_WORKSPACE") or str(default_path())


class Workspace:
    """Models, images and services in a metadata database and an artifact store. Cheap to create; share it
    between processes and machines."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        *,
        subscription_id: str | None = None,
        location: str | None = None,
        metadata: str | None = None,
        artifacts: str | None = None,
        local: str | os.PathLike | None = None,
        **azure_only: Any,
    ) -> None:
        """`Workspace(folder or config file)`; `Workspace(metadata=URI, artifacts=URI)`; or v1's
        `Workspace(subscription_id, resource_group, workspace_name)`, which names the default workspace
        (`auth` and the other Azure-only arguments are accepted and unused). `local` is this machine's
        folder for a workspace of URIs (default: a cache under $MLMAGICS_HOME named after them)."""
        if resource_group is not None or workspace_name is not None:  # v1's form: the first argument is a subscription
            subscription_id, path = subscription_id or (str(path) if path else None), None
        self._named(subscription_id, resource_group, workspace_name, location)
        if metadata is None and artifacts is None and local is None:
            spec = Path(path if path is not None else default_workspace()).expanduser()
            with _folders_of(spec):
                if spec.suffix == ".json" and not spec.exists():  # a config file's name, mistyped: not a new folder
                    raise UserError(f"the workspace config {spec} does not exist")
                is_file = spec.is_file()
                local = None if is_file else spec.resolve()
            if is_file:
                metadata, artifacts, local = _stores_of(workspace_config.read(spec, v1_names=False), spec)
                local = local if metadata or local else default_path().resolve()
        self.path = self._open(metadata, artifacts, local)

    def _open(self, metadata: str | None, artifacts: str | None, local: Any) -> Path:
        """Open (and create where missing) the two stores and this machine's folder."""
        if (metadata is None) != (artifacts is None):
            raise UserError(_BOTH_STORES)
        if metadata is None:  # a folder workspace: the database and the artifacts inside it
            folder = Path(local)
            metadata, artifacts = f"sqlite:///{folder / 'workspace.db'}", str(folder / "artifacts")
        metadata = uris.checked(metadata, "metadata")
        artifacts = uris.checked(artifacts, "artifacts")
        self.metadata_uri, self.artifacts_uri = metadata, artifacts
        folder = Path(local).expanduser().resolve() if local else _cache_folder(metadata, artifacts)
        self.is_folder = metadata == f"sqlite:///{folder / 'workspace.db'}" and artifacts == str(folder / "artifacts")
        self.path = folder
        with _folders_of(folder):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._make_private()
            (folder / "images").mkdir(exist_ok=True)
            (folder / "services").mkdir(exist_ok=True)
        self.db = Database(metadata)
        with _folders_of(Path(artifacts) if not uris.is_object_store(artifacts) else folder / "artifacts"):
            self.artifacts: FolderStore | ObjectStore = artifact_store(artifacts, folder / "artifacts", self)
        self._sweep_staging()
        return folder

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, auth: Any = None, _logger: Any = None,
                    _file_name: str | None = None) -> Workspace:  # fmt: skip
        """v1's entry point: the config file found as v1 finds it (`.mlmagics/`, then v1's `.azureml/`,
        `aml_config/`, then the folder itself, in `path` or any parent) names the workspace: its stores
        (`metadata`, `artifacts`), or a folder (`path`, relative to the file), else the default workspace.
        A workspace folder given as `path` is used as it is; so is a new folder. With no `path` and no
        config file, the default workspace, said in one line."""
        start = Path(path or ".").expanduser().absolute()
        if start.is_dir() and (start / "workspace.db").exists():
            return cls(start)
        found = workspace_config.find(start, _file_name)
        if found is None:
            if path is not None and not start.is_file():
                return cls(start)
            workspace = cls()
            print(f"No workspace config.json in {start} or its parents: using the workspace at {workspace.display}")
            return workspace
        file, values = found
        metadata, artifacts, local = _stores_of(values, file)
        workspace = cls() if metadata is None and local is None else cls(metadata=metadata, artifacts=artifacts, local=local)
        names = ("subscription_id", "resource_group", "workspace_name", "location")
        return workspace._named(*(values.get(key) for key in names))

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: str | None = None, resource_group: str | None = None,
            location: str | None = None, cloud: str = "AzureCloud", id: str | None = None) -> Workspace:  # fmt: skip
        """v1's `Workspace.get`: the default workspace, named `name`."""
        return Workspace()._named(subscription_id, resource_group, name, location)

    def _named(self, subscription_id: str | None, resource_group: str | None, name: str | None,
               location: str | None) -> Workspace:  # fmt: skip
        """v1's names for this workspace (a config file's, or Workspace.get's); local values where none is given."""
        self.subscription_id = subscription_id or LOCAL
        self.resource_group = resource_group or LOCAL
        self._name = name
        self.location = location or LOCAL
        return self

    def write_config(self, path: str | os.PathLike | None = None, file_name: str | None = None) -> str:
        """v1's: write `.azureml/config.json` (or `aml_config/`, if that exists) so `from_config()` finds this
        workspace; a workspace of URIs without v1 names writes `.mlmagics/config.json`. Never a password."""
        return str(workspace_config.write(self, Path(path or "."), file_name))

    def get_default_datastore(self) -> Datastore:
        """v1's default datastore (`workspaceblobstore`): a folder of this workspace (core/datastores.py)."""
        return Datastore.get_default(self)

    @property
    def datastores(self) -> dict[str, Datastore]:
        return Datastore.list(self)

    def get_details(self) -> dict[str, Any]:
        """v1's `get_details()`: the keys v1 documents, with this workspace's local values."""
        return workspace_config.details(self)

    @property
    def name(self) -> str:
        return self._name or (self.path.name if self.is_folder else self.db.display.rsplit("/", 1)[-1])

    @property
    def display(self) -> str:
        """Where the workspace is, safe to show: its folder, or its two stores with passwords masked."""
        return str(self.path) if self.is_folder else f"{self.db.display} + {self.artifacts.display}"

    @property
    def identity(self) -> str:
        """The same on every machine that opens it (labels of what targets create): the folder of a folder
        workspace, else the id the database was given when it was made."""
        if self.is_folder:
            return str(self.path)
        if not hasattr(self, "_identity"):
            self._identity = f"workspace:{self.db.value('id')}"
        return self._identity

    def __repr__(self) -> str:
        if self._name:
            return (f"Workspace.create(name={self.name!r}, subscription_id={self.subscription_id!r}, "
                    f"resource_group={self.resource_group!r})")  # fmt: skip
        if self.is_folder:
            return f"Workspace({str(self.path)!r})"
        return f"Workspace(metadata={self.db.display!r}, artifacts={self.artifacts.display!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other._stores == self._stores

    @property
    def _stores(self) -> tuple[str, str]:
        return self.metadata_uri, self.artifacts_uri

    def __hash__(self) -> int:
        return hash(self._stores)

    def _make_private(self) -> None:
        """0700 for the folder, 0600 for a SQLite database in it and its -wal and -shm files (an older folder's
        are tightened; a new database is created 0600 by store/metadata.py). A folder owned by someone else (a
        team's, set up by its owner) is left as its owner made it."""
        if self.path.stat().st_uid != os.getuid():
            return
        _restrict(self.path, 0o700)
        if not self.is_folder:
            return
        for name in _DATABASE_FILES:
            with contextlib.suppress(FileNotFoundError):
                _restrict(self.path / name, 0o600)

    # -- metadata --------------------------------------------------------------------------------------
    def transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        """A write transaction that holds the workspace's write lock from its first statement."""
        return self.db.transaction()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        return self.db.query(sql, params)

    @contextlib.contextmanager
    def space_for(self, what: str) -> Iterator[None]:
        """Turns a full disk, while writing `what`, into one line that says so."""
        from sqlalchemy.exc import OperationalError

        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageFullError(f"no space left on the device of {self.path} to store {what}; free some space") from None
        except OperationalError as e:
            if "full" not in str(e.orig):
                raise
            raise StorageFullError(f"no space left on the device of {self.path} to store {what} ({e.orig})") from None

    # -- artifacts -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def storing_artifact(self, source: str | os.PathLike, what: str = "") -> Iterator[tuple[Transaction, str, str, int]]:
        """Store a file or folder once per content; yields (tx, digest, relative path, bytes) inside the write
        transaction in which the caller records the row that uses it (store/artifacts.py). `what` names it in
        the one line a full disk gives (default: the model <its name>)."""
        with self.space_for(what or f"the model {Path(source).name}"), self.artifacts.storing(Path(source)) as stored:
            yield stored

    def artifact_path(self, relative: str) -> Path:
        """A local path of a stored artifact (fetched and verified first, from a shared store)."""
        return self.artifacts.local_path(relative)

    def unstore_if_unused(self, tx: Transaction, digest: str) -> Callable[[], None] | None:
        """Inside the transaction that deleted a row; returns what to run after its commit (or None)."""
        return self.artifacts.unstore_if_unused(tx, digest)

    def artifact_used(self, tx: Transaction | None, digest: str) -> bool:
        """Whether a model or an image snapshot still names the artifact `digest` (in `tx`, or as read now)."""
        sql = "SELECT 1 FROM models WHERE digest=:digest UNION ALL SELECT 1 FROM images WHERE snapshot LIKE :prefix"
        params = {"digest": digest, "prefix": f"sha256/{digest}/%"}
        if tx is None:
            return bool(self.query(sql + " LIMIT 1", params))
        return tx.execute(sql, params).first() is not None

    def sweep_artifacts(self, older_than_s: float = 3600) -> Swept:
        """Remove, from a shared artifact store, objects no row uses that are older than `older_than_s`
        (what registrations killed before their commit left). Returns the digests of the artifacts removed, a list
        whose `chunks` names the chunks removed that no artifact held. The age protects registrations in flight (they
        upload before they take the lock): it must be a number of seconds >= 0."""
        if isinstance(older_than_s, bool) or not isinstance(older_than_s, int | float) or not 0 <= older_than_s < math.inf:
            raise UserError(f"older_than_s must be a finite number of seconds >= 0, got {older_than_s!r:.50}")
        if isinstance(self.artifacts, ObjectStore):
            return self.artifacts.sweep(older_than_s)
        self.artifacts.sweep()
        return Swept()

    def _sweep_staging(self) -> None:
        """Put right what processes killed while registering, deleting or creating images left behind."""
        if isinstance(self.artifacts, FolderStore):
            self.artifacts.sweep()
        else:  # the shared store is swept on demand (sweep_artifacts): listing a bucket at every open costs too much
            self.artifacts.cache.sweep(is_cache=True)
        for entry in self.path.joinpath("images").glob(".staging-*"):
            if owner_dead(entry.name.removeprefix(".staging-")):
                remove_tree(entry)


def _stores_of(values: dict[str, Any], file: Path) -> tuple[str | None, str | None, Path | None]:
    """(metadata, artifacts, local folder) a config file names; relative folders are relative to the file's folder
    (v1's rule for `path`: `.azureml/config.json` with `"path": "../ws"` names `ws` beside `.azureml`)."""
    base = file.parent
    folder = values.get("path")
    local = (base / folder).resolve() if folder else (base / values["local"]).resolve() if values.get("local") else None
    metadata, artifacts = values.get("metadata"), values.get("artifacts")
    if artifacts and "://" not in artifacts:
        artifacts = str((base / artifacts).resolve())
    if metadata and metadata.startswith("sqlite:///") and not metadata.startswith("sqlite:////"):
        metadata = f"sqlite:///{(base / metadata.removeprefix('sqlite:///')).resolve()}"  # relative to the file, as paths are
    return metadata, artifacts, local if (metadata or folder or values.get("local")) else None


@contextlib.contextmanager
def _folders_of(folder: Path) -> Iterator[None]:
    """Creating the workspace's folders: a name too long, a file in the way or no permission is one line."""
    try:
        yield
    except OSError as e:
        raise UserError(f"cannot use {str(folder)!r:.300} as a workspace folder: {e.strerror or e}") from None


def _cache_folder(metadata: str, artifacts: str) -> Path:
    """This machine's folder for a workspace of URIs: under $MLMAGICS_HOME, named after the (masked) stores."""
    key = hashlib.sha256(f"{uris.mask(metadata)}\n{uris.mask(artifacts)}".encode()).hexdigest()[:16]
    return (default_path() / "workspaces" / key).resolve()


def _restrict(path: Path, mode: int) -> None:
    """chmod `path` to at most `mode` (a stat and no write when it is already so)."""
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & mode)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default
