"""What models and images share: `name:version` ids, v1's lookups and filters, and tags.

    Model(ws, "sklearn_mnist")            # the latest version
    Image(ws, id="myimage:2")             # one version
    Model.list(ws, tags=[["stage", "prod"]])
"""

from __future__ import annotations

from typing import Any, ClassVar

from .errors import NotFoundError, UserError
from .store.metadata import Row
from .workspace import Workspace, dumps, loads


def split_id(item_id: str) -> tuple[str, int | None]:
    """'name:3' -> ('name', 3); 'name' -> ('name', None)."""
    name, _, version = item_id.partition(":")
    if version and not version.isdigit():
        raise UserError(f"id {item_id!r} must look like name:version with an integer version")
    return name, int(version) if version else None


def tag_filter_matches(tags: dict[str, str], wanted: Any) -> bool:
    """v1's filters: ['key'], [['key', 'value']], or (here too) {'key': 'value'}."""
    if not wanted:
        return True
    if isinstance(wanted, dict):
        wanted = list(wanted.items())
    for item in wanted:
        if isinstance(item, str):
            if item not in tags:
                return False
        else:
            key, value = item
            if tags.get(key) != value:
                return False
    return True


def row_matches(row: Row, tags: Any, properties: Any) -> bool:
    return tag_filter_matches(loads(row["tags"], {}), tags) and tag_filter_matches(loads(row["properties"], {}), properties)


class Versioned:
    """A row of `table` keyed by (name, version); subclasses say what they are called."""

    table: ClassVar[str]
    noun: ClassVar[str]  # "model", "image"
    missing: ClassVar[str]  # how to say it is not there: "is not registered", "does not exist"
    not_found: ClassVar[type[NotFoundError]] = NotFoundError
    example: ClassVar[str]

    workspace: Workspace
    name: str
    version: int
    tags: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    def _load_common(self, row: Row) -> None:
        """The columns every versioned table has; a subclass's `_load` reads its own after these."""
        self.name = row["name"]
        self.version = row["version"]
        self.description: str | None = row["description"]
        self.tags = loads(row["tags"], {})
        self.properties: dict[str, str] = loads(row["properties"], {})
        self.created_time: str = row["created_time"]
        self.created_by: dict[str, str] = loads(row.get("created_by"), {})

    @classmethod
    def _find(cls, ws: Workspace, name: str | None, item_id: str | None, tags: Any, properties: Any,
              version: int | None) -> Row:
        if item_id:
            name, version = split_id(item_id)
        if not name:
            raise UserError(f"give a {cls.noun} name or id, e.g. {cls.example}")
        query = f"SELECT * FROM {cls.table} WHERE name=:name" + (" AND version=:version" if version is not None else "")
        query += " ORDER BY version DESC"
        if not tags and not properties:  # one row, found by the primary key's index, however many versions there are
            query += " LIMIT 1"
        for row in ws.query(query, {"name": name, "version": version}):
            if row_matches(row, tags, properties):
                return row
        wanted = f"{name}:{version}" if version is not None else name
        recent = ws.query(f"SELECT name, version FROM {cls.table} WHERE name=:name ORDER BY version DESC LIMIT 5", {"name": name})
        known = ", ".join(f"{r['name']}:{r['version']}" for r in recent) or "none"
        raise cls.not_found(f"{cls.noun} {wanted} {cls.missing} in {ws.display} (versions of {name}: {known})")

    @classmethod
    def _rows(cls, ws: Workspace, tags: Any = None, properties: Any = None, name: str | None = None) -> list[Row]:
        query = f"SELECT * FROM {cls.table}" + (" WHERE name=:name" if name else "") + " ORDER BY name, version DESC"
        return [row for row in ws.query(query, {"name": name}) if row_matches(row, tags, properties)]

    def _set(self, **columns: Any) -> None:
        """Write columns of this version's row (dicts JSON-encoded)."""
        assignments = ", ".join(f"{k}=:{k}" for k in columns)
        values = {k: dumps(v) if isinstance(v, dict | list) else v for k, v in columns.items()}
        with self.workspace.transaction() as tx:
            tx.execute(
                f"UPDATE {self.table} SET {assignments} WHERE name=:_name AND version=:_version",
                {**values, "_name": self.name, "_version": self.version},
            )

    def update(self, tags: dict | None = None, description: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if tags is not None:
            self.tags = changes["tags"] = {k: str(v) for k, v in tags.items()}
        if description is not None:
            self.description = changes["description"] = description
        if changes:
            self._set(**changes)

    def add_tags(self, tags: dict) -> None:
        self.update(tags={**self.tags, **tags})

    def remove_tags(self, tags: list[str]) -> None:
        self.update(tags={k: v for k, v in self.tags.items() if k not in tags})
