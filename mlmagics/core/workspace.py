"""The workspace: a folder that holds models, image snapshots, services and their metadata.

    ws = Workspace()                    # $MLMAGICS_HOME, else ~/.mlmagics
    ws = Workspace("/data/team-ws")     # any folder

Metadata lives in SQLite in WAL mode, so several notebooks, terminals and the Jupyter
server can use one workspace at once; writes that allocate versions run in `BEGIN
IMMEDIATE` transactions, so versions are never lost or repeated. Artifacts (model files
and folders) are stored once per content (`artifacts/sha256/<digest>/<name>`) and made
read-only when registered.

An artifact appears in, or leaves, `artifacts/sha256/` only under the write lock, in the
transaction that adds or removes the last row naming it, so no interleaving of registers and
deletes can lose one. A copy in progress lives in `artifacts/.staging/<pid>-…`, an artifact
being removed in `artifacts/.trash/<pid>-…-<digest>`; what a killed process left there is put
right by the next process that opens the workspace (an artifact with no row goes, one whose
delete was rolled back comes back).

The folder is private to its user (0700) and the database 0600: it holds the services' keys.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import workspace_config
from .datastores import Datastore
from .errors import StorageFullError, UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    kind TEXT NOT NULL, name TEXT NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, description TEXT, tags TEXT NOT NULL, properties TEXT NOT NULL,
    created_time TEXT NOT NULL, digest TEXT NOT NULL, artifact TEXT NOT NULL, size INTEGER NOT NULL, source TEXT,
    framework TEXT, framework_version TEXT, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS images (
    name TEXT NOT NULL, version INTEGER NOT NULL, description TEXT, tags TEXT NOT NULL, properties TEXT NOT NULL,
    created_time TEXT NOT NULL, state TEXT NOT NULL, models TEXT NOT NULL, spec TEXT NOT NULL, error TEXT,
    build TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY, compute_type TEXT NOT NULL, image_id TEXT NOT NULL, state TEXT NOT NULL,
    config TEXT NOT NULL, scoring_uri TEXT, swagger_uri TEXT, keys TEXT NOT NULL, description TEXT,
    tags TEXT NOT NULL, properties TEXT NOT NULL, created_time TEXT NOT NULL, updated_time TEXT NOT NULL,
    error TEXT, target TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT, tags TEXT NOT NULL,
    created_time TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS environments (
    name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL, created_time TEXT NOT NULL,
    PRIMARY KEY (name, version));
"""
# Earlier versions stored the keys of a deploy configuration in the service's config too.
_KEYS_IN_CONFIG = "json_type(config, '$.primary_key') IS NOT NULL OR json_type(config, '$.secondary_key') IS NOT NULL"
_DATABASE_FILES = ("workspace.db", "workspace.db-wal", "workspace.db-shm")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SKIPPED = ("__pycache__", ".ipynb_checkpoints")
LOCAL = "local"  # v1's subscription, resource group and location of a workspace not named by a config


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_path() -> Path:
    return Path(os.environ.get("MLMAGICS_HOME") or Path.home() / ".mlmagics").expanduser()


class Workspace:
    """A folder of models, images and services. Cheap to create; share it between processes."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        *,
        subscription_id: str | None = None,
        location: str | None = None,
        **azure_only: Any,
    ) -> None:
        """`Workspace(folder)`; or v1's `Workspace(subscription_id, resource_group, workspace_name)`, which names
        the workspace at $MLMAGICS_HOME (`auth` and the other Azure-only arguments are accepted and unused)."""
        if resource_group is not None or workspace_name is not None:  # v1's form: the first argument is a subscription
            subscription_id, path = subscription_id or (str(path) if path else None), None
        self.path = Path(path).expanduser().resolve() if path else default_path().resolve()
        self._named(subscription_id, resource_group, workspace_name, location)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._make_private()
        for sub in ("artifacts/sha256", "artifacts/.staging", "artifacts/.trash", "images", "services"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._scrub_keys_from_configs()
        self._sweep_staging()

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, auth: Any = None, _logger: Any = None,
                    _file_name: str | None = None) -> Workspace:  # fmt: skip
        """v1's entry point: the `config.json` found as v1 finds it (`.azureml/`, `aml_config/`, then the folder
        itself, in `path` or any parent) names the workspace; its `"path"` (mlmagics' own key, relative to the
        file) is the folder, else $MLMAGICS_HOME. A workspace folder given as `path` is used as it is; so is a
        new folder. With no `path` and no config file, the default workspace, said in one line."""
        start = Path(path or ".").expanduser().absolute()
        if start.is_dir() and (start / "workspace.db").exists():
            return cls(start)
        found = workspace_config.find(start, _file_name)
        if found is None:
            if path is not None and not start.is_file():
                return cls(start)
            workspace = cls()
            print(f"No workspace config.json in {start} or its parents: using the workspace at {workspace.path}")
            return workspace
        file, values = found
        folder = values.get("path")
        return cls(file.parent / folder if folder else None)._named(
            values["subscription_id"], values["resource_group"], values["workspace_name"], values.get("location")
        )

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: str | None = None, resource_group: str | None = None,
            location: str | None = None, cloud: str = "AzureCloud", id: str | None = None) -> Workspace:  # fmt: skip
        """v1's `Workspace.get`: the workspace at $MLMAGICS_HOME, named `name`."""
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
        """v1's: write `.azureml/config.json` (or `aml_config/`, if that exists) so `from_config()` finds this workspace."""
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
        return self._name or self.path.name

    def __repr__(self) -> str:
        if self._name:
            return (f"Workspace.create(name={self.name!r}, subscription_id={self.subscription_id!r}, "
                    f"resource_group={self.resource_group!r})")  # fmt: skip
        return f"Workspace({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def _make_private(self) -> None:
        """0700 for the folder, 0600 for the database. SQLite gives its -wal and -shm files the
        database file's mode, so the database is created 0600 before SQLite opens it. A folder
        owned by someone else (a team's, set up by its owner) is left as its owner made it."""
        if self.path.stat().st_uid != os.getuid():
            return
        _restrict(self.path, 0o700)
        database = self.path / "workspace.db"
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for name in _DATABASE_FILES:
            with contextlib.suppress(FileNotFoundError):
                _restrict(self.path / name, 0o600)

    def _scrub_keys_from_configs(self) -> None:
        """Keys live in the keys column only; drop copies older versions kept in the config.
        Checked with a read first, so opening a workspace takes no write lock."""
        if self.query(f"SELECT 1 FROM services WHERE {_KEYS_IN_CONFIG} LIMIT 1"):
            with self.transaction() as db:
                db.execute(
                    f"UPDATE services SET config=json_remove(config, '$.primary_key', '$.secondary_key') WHERE {_KEYS_IN_CONFIG}"
                )

    # -- metadata --------------------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path / "workspace.db", timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=60000")
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement."""
        db = self.connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT (disk full) may have ended it already
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        db = self.connect()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    @staticmethod
    def next_version(db: sqlite3.Connection, kind: str, name: str) -> int:
        """The next version of `name` (inside a transaction); deleted versions are never reused."""
        row = db.execute("SELECT last FROM counters WHERE kind=? AND name=?", (kind, name)).fetchone()
        version = (row["last"] if row else 0) + 1
        db.execute("INSERT OR REPLACE INTO counters (kind, name, last) VALUES (?, ?, ?)", (kind, name, version))
        return version

    @contextlib.contextmanager
    def space_for(self, what: str) -> Iterator[None]:
        """Turns a full disk, while writing `what`, into one line that says so."""
        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageFullError(f"no space left on the device of {self.path} to store {what}; free some space") from None
        except sqlite3.OperationalError as e:
            if "full" not in str(e):
                raise
            raise StorageFullError(f"no space left on the device of {self.path} to store {what} ({e})") from None

    # -- artifacts -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def storing_artifact(self, source: str | os.PathLike) -> Iterator[tuple[sqlite3.Connection, str, str, int]]:
        """Copy a file or folder into the content-addressed store; yields (db, digest, relative path,
        bytes) inside the write transaction in which the caller records it.

        The copy and its hash are made first, without the lock; the artifact takes its place
        under the lock, just before the caller's row, so a concurrent delete of the same content
        cannot take it away in between.
        """
        source = Path(source)
        entry = self.path / "artifacts" / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
        placed = ""
        try:
            with self.space_for(f"the model {source.name}"):
                entry.mkdir()
                digest = hashlib.sha256(source.name.encode() + b"\0")
                size = copy_checked(source, entry / "content" / source.name, source, digest)
                hexdigest = digest.hexdigest()
                _make_read_only(entry / "content" / source.name)
                (entry / "digest").write_text(hexdigest)  # from here on, a sweep knows what the copy was for
                with self.transaction() as db:
                    final = self._artifact_dir(hexdigest)
                    if not final.exists():
                        os.rename(entry / "content", final)
                        placed = hexdigest
                    yield db, hexdigest, f"sha256/{hexdigest}/{source.name}", size
        except BaseException:
            if placed:  # the row was rolled back (a failed insert, a full disk at COMMIT): its artifact goes too
                self._unstore_placed(placed)
            raise
        finally:
            _remove_tree(entry)

    def artifact_path(self, relative: str) -> Path:
        return self.path / "artifacts" / relative

    def unstore_if_unused(self, db: sqlite3.Connection, digest: str) -> Path | None:
        """Inside the transaction that deleted a row: move the artifact to the trash if no row uses it
        any more. Returns the trash entry, for the caller to remove once the transaction is committed."""
        final = self._artifact_dir(digest)
        if _artifact_used(db, digest) or not final.exists():
            return None
        trash = self.path / "artifacts" / ".trash" / f"{os.getpid()}-{uuid.uuid4().hex}-{digest}"
        os.rename(final, trash)
        return trash

    def _unstore_placed(self, digest: str) -> None:
        with contextlib.suppress(sqlite3.Error, OSError):  # the caller's error is the one to report
            with self.transaction() as db:
                trash = self.unstore_if_unused(db, digest)
            if trash is not None:
                _remove_tree(trash)

    def _artifact_dir(self, digest: str) -> Path:
        return self.path / "artifacts" / "sha256" / digest

    def _sweep_staging(self) -> None:
        """Put right what processes killed while registering or deleting left behind."""
        artifacts = self.path / "artifacts"
        entries = [e for folder in (".staging", ".trash") for e in (artifacts / folder).iterdir() if _owner_dead(e.name)]
        removed = [e for e in self.path.joinpath("images").glob(".staging-*") if _owner_dead(e.name.removeprefix(".staging-"))]
        recorded = [(e, digest) for e in entries if (digest := _entry_digest(e))]
        if recorded:
            with self.transaction() as db:
                removed += [gone for entry, digest in recorded if (gone := self._reconcile(db, entry, digest))]
        for entry in [*entries, *removed]:
            if entry is not None:
                _remove_tree(entry)

    def _reconcile(self, db: sqlite3.Connection, entry: Path, digest: str) -> Path | None:
        """Under the write lock: make `artifacts/sha256/<digest>` exist exactly when a row uses it."""
        final = self._artifact_dir(digest)
        if not _artifact_used(db, digest):
            return self.unstore_if_unused(db, digest)  # a register killed after placing it, before its commit
        if not final.exists() and entry.parent.name == ".trash":
            os.rename(entry, final)  # a delete killed before its commit: its row is back, so is the artifact
        return None


def _artifact_used(db: sqlite3.Connection, digest: str) -> bool:
    return db.execute("SELECT 1 FROM models WHERE digest=? LIMIT 1", (digest,)).fetchone() is not None


def _entry_digest(entry: Path) -> str | None:
    """What a staging or trash entry was for: the digest in a trash entry's name, or in a copy's `digest` file."""
    if entry.parent.name == ".trash":
        text = entry.name.rsplit("-", 1)[-1]
    else:
        try:
            text = (entry / "digest").read_text().strip()
        except OSError:
            return None
    return text if _DIGEST.fullmatch(text) else None


def _owner_dead(entry_name: str) -> bool:
    pid = entry_name.split("-", 1)[0]
    return pid.isdigit() and not _alive(int(pid))


# -- copying files in: what may leak or hang is refused ----------------------------------------------------
MAX_COPIED_ENTRIES = 200_000  # files and folders, counting those reached through links


def copy_checked(source: Path, target: Path, root: Path, digest: Any = None) -> int:
    """Copy the file or folder `source` to `target` (hashing names and bytes into `digest`); returns bytes.

    Links are followed while they stay inside `root`; a link out of it, a link loop, a FIFO,
    a device or a socket is a UserError naming it, so nothing from outside the folder is
    copied and nothing blocks. `__pycache__` and `.ipynb_checkpoints` are skipped.
    """
    return _Copy(os.path.realpath(root), digest).entry(source, target, ())


class _Copy:
    def __init__(self, root: str, digest: Any) -> None:
        self.root = root
        self.digest = digest
        self.entries = 0

    def entry(self, source: Path, target: Path, ancestors: tuple[str, ...]) -> int:
        self.entries += 1
        if self.entries > MAX_COPIED_ENTRIES:  # links can make a small folder look endless
            raise UserError(f"{source}: more than {MAX_COPIED_ENTRIES} files and folders to copy (counting links)")
        real, mode = self.checked(source, ancestors)
        if not stat.S_ISDIR(mode):
            return self.file(source, real, target)
        target.mkdir(parents=True, exist_ok=True)
        total = 0
        for child in sorted(source.iterdir()):
            if child.name in _SKIPPED:
                continue
            if self.digest is not None:
                self.digest.update(b"\0dir\0" if child.is_dir() else b"\0file\0")
                self.digest.update(child.name.encode() + b"\0")
            total += self.entry(child, target / child.name, (*ancestors, real))
        return total

    def checked(self, source: Path, ancestors: tuple[str, ...]) -> tuple[str, int]:
        """The real path behind `source` and its file type, or a UserError saying why it cannot be copied."""
        try:
            real = os.path.realpath(source, strict=True)
        except OSError as e:
            why = "is a link loop" if e.errno == errno.ELOOP else "is a link to nothing" if source.is_symlink() else e.strerror
            raise UserError(f"{source} {why}; remove it or replace it with the file it stands for") from None
        if os.path.commonpath([real, self.root]) != self.root:
            raise UserError(f"{source} links to {real}, outside {self.root}; copy the file in instead of linking to it")
        mode = os.stat(real).st_mode
        if stat.S_ISDIR(mode) and real in ancestors:
            raise UserError(f"{source} is a link loop (it links to {real}, a folder that contains it)")
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise UserError(f"{source} is a {_kind(mode)}; only regular files and folders can be copied")
        return real, mode

    def file(self, source: Path, real: str, target: Path) -> int:
        # O_NONBLOCK and O_NOFOLLOW: should `real` be swapped for a FIFO or a link after the check,
        # opening it neither blocks nor follows it, and the fstat below refuses it.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with open(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserError(f"{source} changed while it was copied; copy it again")
            target.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    if self.digest is not None:
                        self.digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        shutil.copystat(real, target)
        return size


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return name
    return "special file"


def _make_read_only(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _make_read_only(child)
        path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    else:
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _restrict(path: Path, mode: int) -> None:
    """chmod `path` to at most `mode` (a stat and no write when it is already so)."""
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & mode)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for folder, dirs, _ in os.walk(path):
        os.chmod(folder, 0o755)
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default
