"""registry_bench.py's mlmagics worker: v1's model registry calls on a team workspace (or a folder one).

Runs in the project venv (``.venv``) with the checkout importable; see ``common.py`` for the
operations and their output. The workspace is

- ``uri``: ``Workspace(metadata="postgresql://<user>@<host>:<port>/<fresh db>", artifacts="s3://<fresh bucket>/workspace")``,
  the password from ``PGPASSWORD`` and the S3 endpoint from ``AWS_ENDPOINT_URL`` (set by the driver);
- ``folder``: ``Workspace(<folder>)`` (SQLite and local files), for when the URI form is not there yet;
- ``auto``: ``uri`` when ``Workspace`` takes ``metadata=``, else ``folder``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

PACKAGES = ("mlmagics", "sqlalchemy", "alembic", "fsspec", "s3fs", "psycopg", "boto3", "moto")


def resolve_store(wanted: str) -> str:
    """``auto`` → ``uri`` when this checkout's ``Workspace`` takes ``metadata=``/``artifacts=``, else ``folder``."""
    from mlmagics import Workspace

    parameters = inspect.signature(Workspace.__init__).parameters
    has_uri = "metadata" in parameters and "artifacts" in parameters
    if wanted == "auto":
        return "uri" if has_uri else "folder"
    if wanted == "uri" and not has_uri:
        raise RuntimeError("this checkout's Workspace takes no metadata=/artifacts= yet; use --mlmagics-store folder")
    return wanted


def metadata_url(config: dict[str, Any]) -> str:
    pg = config["pg"]
    return f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/{config['database']}"


def artifacts_url(config: dict[str, Any]) -> str:
    return f"s3://{config['bucket']}/workspace"


class MlmagicsSide:
    label = "mlmagics"

    def open(self, config: dict[str, Any]) -> None:
        from mlmagics import Model

        self.Model, self.config = Model, config
        self.store = resolve_store(config["store"])
        if self.store == "uri":
            self.where = f"Workspace(metadata={metadata_url(config)!r}, artifacts={artifacts_url(config)!r})"
        else:
            self.where = f"Workspace({config['folder']!r})"
        self.ws = self._workspace()

    def _workspace(self) -> Any:
        from mlmagics import Workspace

        if self.store == "uri":
            return Workspace(metadata=metadata_url(self.config), artifacts=artifacts_url(self.config))  # type: ignore[call-arg]
        return Workspace(self.config["folder"])

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """A fresh database and bucket (URI store), then the workspace opened once (it creates its schema)."""
        store = resolve_store(config["store"])
        if store == "uri":
            common.create_database(config)
            common.create_bucket(config)
        self.open({**config, "store": store})
        common.log(self.label, f"workspace ready: {self.where}")
        return {"store": store, "workspace": self.where}

    def describe(self) -> dict[str, Any]:
        versions = {}
        for package in PACKAGES:
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                versions[package] = "not installed"
        return {"python": sys.version.split()[0], "packages": versions, "store": self.store, "workspace": self.where}

    def register(self, path: Path, name: str) -> tuple[int, dict[str, float]]:
        return self.Model.register(self.ws, str(path), name).version, {}

    def populate_one(self, path: Path, name: str) -> int:
        return self.Model.register(self.ws, str(path), name).version

    def list_versions(self, name: str) -> list[int]:
        return [model.version for model in self.Model.list(self.ws, name=name)]

    def latest(self, name: str) -> int:
        return self.Model(self.ws, name).version

    def extra_latest(self, name: str) -> tuple[str, Callable[[], int]] | None:
        return None

    def forget_local_copies(self) -> bool:
        """A workspace of URIs keeps a copy of each artifact it stored or fetched in its folder on this machine
        (`ws.path`, under $MLMAGICS_HOME): empty that cache (`artifacts/sha256/`), so the next download reads S3."""
        if self.store != "uri":
            return False  # a folder workspace's artifacts are local files
        cache = Path(self.ws.path) / "artifacts" / "sha256"
        if not cache.is_dir():
            raise RuntimeError(f"no artifact cache at {cache}: the workspace's local layout changed; update forget_local_copies")
        for entry in cache.iterdir():
            common.remove_tree(entry)
        return True

    def download_elsewhere(self, name: str, target: Path, folder: Path) -> tuple[str, float] | None:
        """The same download from a Workspace opened (untimed) just before with a fresh $MLMAGICS_HOME: as a new
        process on another machine, whose first S3 call also sets up its S3 client."""
        if self.store != "uri":
            return None
        os.environ["MLMAGICS_HOME"] = str(folder)
        elsewhere = self._workspace()
        started = time.perf_counter()
        self.Model(elsewhere, name).download(str(target))
        return "latest + download from a just-opened Workspace (fresh $MLMAGICS_HOME)", time.perf_counter() - started

    def download_latest(self, name: str, target: Path) -> Path:
        return Path(self.Model(self.ws, name).download(str(target)))


if __name__ == "__main__":
    sys.exit(common.main(MlmagicsSide()))
