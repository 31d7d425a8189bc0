"""The workspace's metadata: one SQL database (SQLite or PostgreSQL) through SQLAlchemy.

    db = Database("postgresql://me@db.example/mlmagics")
    with db.transaction() as tx:                 # the workspace's write lock, held to the commit
        version = tx.next_version("model", "sklearn_mnist")
        tx.execute("INSERT INTO models (...) VALUES (:name, ...)", {...})
    db.query("SELECT * FROM models WHERE name=:name", {"name": "sklearn_mnist"})

Writes are serialized per workspace and reads never wait: SQLite takes its write lock at
`BEGIN IMMEDIATE`; PostgreSQL takes a transaction-level advisory lock as a transaction's first
statement. So every check-then-write in the core (a name taken? an artifact still used?) sees
no interleaving, on one machine or many, and version numbers come from one upsert on the
`counters` row, never from a retry loop.

The schema is kept by Alembic (`migrations/`): opening an older workspace upgrades it in place,
under the write lock; a workspace whose schema is newer than this client is refused in one
line. A workspace at the head costs one catalog read per process to open.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import MlmagicsError, UserError
from . import uris

SCHEMA_HEAD = "0004"  # tests/core/test_store_schema.py checks these against the migration scripts
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
_ADVISORY_KEY = 0x6D6C6D6167696373  # "mlmagics": one lock per database, i.e. per workspace
_MIGRATIONS = Path(__file__).with_name("migrations")

_engines: dict[str, Any] = {}
_at_head: set[str] = set()
_engines_lock = threading.Lock()
_migrations_lock = threading.Lock()


class WorkspaceUnavailable(MlmagicsError):
    """The workspace's database or artifact store cannot be reached, or refuses the credentials. Its message
    quotes the storage library's own reason, scrubbed of anything that could be a secret (uris.scrub)."""


class SchemaTooNew(MlmagicsError):
    """The workspace was written by a newer mlmagics; this one would misread it."""


class DuplicateRow(MlmagicsError):
    """An insert met a row with the same key (a service name taken meanwhile)."""


class TransactionAborted(MlmagicsError):
    """A statement of this write transaction failed before: the transaction is rolled back, on SQLite as on
    PostgreSQL (which refuses every later statement of a failed transaction), so nothing after it may run."""


Row = Mapping[str, Any]


class Transaction:
    """Statements inside one write transaction (`Database.transaction()`); rows read as mappings."""

    def __init__(self, connection: Any, display: str = "", secrets: tuple[str, ...] = ()) -> None:
        self.connection = connection
        self.display = display
        self.secrets = secrets
        self.failed = ""  # what failed in it: a failed statement ends the transaction, whatever the database

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        from sqlalchemy import exc, text

        if self.failed:
            raise TransactionAborted(f"this write transaction was rolled back ({self.failed}); start a new one")
        try:
            return self.connection.execute(text(sql), dict(params or {})).mappings()
        except exc.IntegrityError as e:
            self.failed = _first_line(e.orig, self.secrets)
            raise DuplicateRow(self.failed) from None
        except exc.DBAPIError as e:
            self.failed = _first_line(e.orig, self.secrets)
            raise _one_line(e, self.display, self.secrets) from None

    def next_version(self, kind: str, name: str) -> int:
        """The next version of `name`: one atomic upsert; deleted versions are never reused."""
        return self.count(kind, name)

    def count(self, kind: str, name: str) -> int:
        """Add one to the counter (kind, name), created at 1; returns its new value."""
        return int(
            self.execute(
                "INSERT INTO counters (kind, name, last) VALUES (:kind, :name, 1) "
                "ON CONFLICT (kind, name) DO UPDATE SET last = counters.last + 1 RETURNING last",
                {"kind": kind, "name": name},
            ).one()["last"]
        )


class Database:
    """A workspace's metadata database, named by a URI; cheap to create (engines are shared per process)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.display = uris.mask(uri)
        self._secrets = tuple(uris.secrets_of(uri))
        self.engine = _engine(uri)
        self.dialect: str = self.engine.dialect.name
        if uri not in _at_head:
            with _migrations_lock:  # Alembic keeps its context in a module global: one migration at a time per process
                if uri not in _at_head:
                    self._keep_schema_current()
                    _at_head.add(uri)

    def __repr__(self) -> str:
        return f"Database({self.display!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction holding the workspace's write lock from its first statement to its end."""
        from sqlalchemy import exc

        with self._connection(write=True) as connection:
            try:
                with connection.begin() as begun:
                    if self.dialect == "postgresql":
                        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")
                    tx = Transaction(connection, self.display, self._secrets)
                    yield tx
                    if tx.failed:  # a failed statement was caught and the block went on: nothing of it commits
                        begun.rollback()
                        raise TransactionAborted(f"this write transaction was rolled back ({tx.failed})")
            except (exc.OperationalError, exc.InterfaceError) as e:  # BEGIN, the lock or COMMIT: the server went away
                raise _one_line(e, self.display, self._secrets) from None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import exc, text

        with self._connection() as connection:
            try:
                return list(connection.execute(text(sql), dict(params or {})).mappings())
            except exc.DBAPIError as e:
                raise _one_line(e, self.display, self._secrets) from None

    def value(self, key: str) -> str | None:
        """A value of the `workspace` table (e.g. its `id`)."""
        rows = self.query("SELECT value FROM workspace WHERE key=:key", {"key": key})
        return rows[0]["value"] if rows else None

    @contextlib.contextmanager
    def _connection(self, write: bool = False) -> Iterator[Any]:
        from sqlalchemy import exc

        try:
            connection = self.engine.connect()
        except exc.DBAPIError as e:  # unreachable, refused, or a connection option the driver does not know
            why = _first_line(e.orig, self._secrets)
            raise WorkspaceUnavailable(f"cannot open the workspace database {self.display}: {why}") from None
        with connection:
            if write:
                connection = connection.execution_options(mlmagics_write=True)
            yield connection

    # -- the schema ---------------------------------------------------------------------------------------
    def revision(self) -> str | None:
        """The schema revision the database is at (None: no mlmagics schema yet)."""
        from sqlalchemy import inspect

        with self._connection() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def _keep_schema_current(self) -> None:
        current = self.revision()
        if current == SCHEMA_HEAD:
            return
        if current is not None and current not in KNOWN_REVISIONS:
            shown = current if re.fullmatch(r"[\w.\-]{1,40}", str(current)) else f"{str(current)!r:.40}"
            raise SchemaTooNew(
                f"the workspace database {self.display} has schema {shown}, newer than this mlmagics knows "
                f"(up to {SCHEMA_HEAD}): upgrade mlmagics (pip install -U mlmagics) on this machine"
            )
        upgraded = self.upgrade()
        if current is not None and upgraded != current:
            print(f"mlmagics: upgraded the workspace schema of {self.display} from {current} to {upgraded}", file=sys.stderr)

    def upgrade(self, revision: str = "head") -> str:
        """Run the Alembic migrations up to `revision` under the write lock; returns the revision reached."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.transaction() as tx:
            config.attributes["connection"] = tx.connection
            command.upgrade(config, revision)
            return tx.connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _engine(uri: str) -> Any:
    with _engines_lock:
        engine = _engines.get(uri)
        if engine is None:
            engine = _engines[uri] = _create_engine(uri)
        return engine


def _create_engine(uri: str) -> Any:
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception:
        raise UserError(f"the workspace's metadata {uris.mask(uri)!r} is not a database URI") from None
    if url.get_backend_name() in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise UserError("a PostgreSQL workspace needs the [postgresql] extra: pip install 'mlmagics[postgresql]'") from None
        return create_engine(
            url,
            pool_pre_ping=True,
            hide_parameters=True,  # an error's text never shows the values (a service's keys, say)
            connect_args={"connect_timeout": 10, "application_name": "mlmagics"},
        )
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise UserError(f"the workspace's metadata must be sqlite:///<file> or postgresql://…, got {uris.mask(uri)!r}")
    _private_file(Path(url.database))
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's pysqlite recipe: BEGIN is said below
        dbapi_connection.execute("PRAGMA busy_timeout=60000")
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers go on beside a writer (a no-op once set)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get("mlmagics_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _private_file(database: Path) -> None:
    """A new SQLite database is made 0600 in a 0700 folder before SQLite opens it (its -wal and -shm files take
    its mode): it holds the services' keys."""
    if database.exists():
        return
    try:
        database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise WorkspaceUnavailable(f"cannot create the workspace database {database}: {e.strerror}") from None


def _forget_engines_after_fork() -> None:
    """A forked child must not share its parent's pooled connections: it opens its own. Its locks are new
    too: a lock another thread of the parent held at the fork would never be released in the child."""
    global _engines_lock, _migrations_lock
    _engines_lock, _migrations_lock = threading.Lock(), threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _first_line(error: BaseException | None, secrets: tuple[str, ...] | list[str] = ()) -> str:
    text = uris.scrub(str(error or "unknown error"), secrets).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # psycopg says "connection failed: …" then the server's reason on the next line: keep both, on one
    return " — ".join(lines[:2])[:500] if lines else "unknown error"


def _one_line(error: Any, display: str, secrets: tuple[str, ...] = ()) -> MlmagicsError:
    """A database error met while running a statement, as the one-line error to raise instead: a value the
    database refuses (PostgreSQL takes no NUL in a text) is the caller's; a lost connection is the workspace's.
    A full disk stays SQLAlchemy's error, for Workspace.space_for to name what did not fit. Anything else is a
    bug, raised as SQLAlchemy's error (whose text leaves the statement's values out)."""
    from sqlalchemy import exc

    if isinstance(error, exc.DataError):
        return UserError(f"the workspace database {display} refused a value: {_first_line(error.orig, secrets)}")
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)) and "full" not in str(error.orig):
        return WorkspaceUnavailable(f"lost the workspace database {display}: {_first_line(error.orig, secrets)}")
    return error
