"""The workspace: a folder that holds models, image snapshots, services and their metadata.

    ws = Workspace()                    # $MLMAGICS_HOME, else ~/.mlmagics
    ws = Workspace("/data/team-ws")     # any folder

Metadata lives in SQLite in WAL mode, so several notebooks, terminals and the Jupyter
server can use one workspace at once; writes that allocate versions run in `BEGIN
IMMEDIATE` transactions, so versions are never lost or repeated. Artifacts (model files
and folders) are stored once per content (`artifacts/sha256/<digest>/<name>`) and made
read-only when registered; a copy interrupted half-way stays in `artifacts/.staging` and
is swept away by the next process that opens the workspace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
"""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_path() -> Path:
    return Path(os.environ.get("MLMAGICS_HOME") or Path.home() / ".mlmagics").expanduser()


class Workspace:
    """A folder of models, images and services. Cheap to create; share it between processes."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser().resolve() if path else default_path().resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in ("artifacts/sha256", "artifacts/.staging", "images", "services"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._sweep_staging()

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None) -> Workspace:
        """v1's entry point; here simply the workspace folder (default `$MLMAGICS_HOME`)."""
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

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

    # -- artifacts -------------------------------------------------------------------------------------
    def store_artifact(self, source: str | os.PathLike) -> tuple[str, str, int]:
        """Copy a file or folder into the content-addressed store; returns (digest, relative path, bytes)."""
        source = Path(source)
        staging = self.path / "artifacts" / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            target = staging / source.name
            digest = hashlib.sha256(source.name.encode() + b"\0")
            size = _copy_hashing(source, target, digest)
            hexdigest = digest.hexdigest()
            final = self.path / "artifacts" / "sha256" / hexdigest
            if final.exists():
                _remove_tree(staging)  # the same content is stored already
            else:
                _make_read_only(target)
                try:
                    os.rename(staging, final)
                except OSError:  # another process stored the same content at the same moment
                    _remove_tree(staging)
            return hexdigest, f"sha256/{hexdigest}/{source.name}", size
        except BaseException:
            _remove_tree(staging)
            raise

    def artifact_path(self, relative: str) -> Path:
        return self.path / "artifacts" / relative

    def remove_artifact_if_unused(self, digest: str) -> None:
        if not self.query("SELECT 1 FROM models WHERE digest=? LIMIT 1", (digest,)):
            _remove_tree(self.path / "artifacts" / "sha256" / digest)

    def _sweep_staging(self) -> None:
        """Remove copies left by processes that died while registering."""
        for entry in (self.path / "artifacts" / ".staging").iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                _remove_tree(entry)


def _copy_hashing(source: Path, target: Path, digest: Any) -> int:
    if not source.is_dir():  # a file (or anything readable like one)
        size = 0
        with open(source, "rb") as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        shutil.copystat(source, target)
        return size
    target.mkdir()
    total = 0
    for child in sorted(source.iterdir()):
        if child.name in ("__pycache__", ".ipynb_checkpoints"):
            continue
        digest.update(b"\0dir\0" if child.is_dir() else b"\0file\0")
        digest.update(child.name.encode() + b"\0")
        total += _copy_hashing(child, target / child.name, digest)
    return total


def _make_read_only(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _make_read_only(child)
        path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    else:
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


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
