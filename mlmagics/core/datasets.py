"""v1's `Dataset`: files or a table, defined by where they are, registered by name and version.

    datastore = Datastore.get_default(ws)
    table = Dataset.Tabular.from_delimited_files([(datastore, "diabetes/*.csv")])
    table = table.register(ws, "diabetes", create_new_version=True)     # version 1, 2, ...
    Dataset.get_by_name(ws, "diabetes").to_pandas_dataframe()
    files = Dataset.File.from_files((datastore, "images/"))
    files.download("local-copy/")

A dataset is a definition (paths and reading options), as in v1: registering it stores the
definition, not the data, so it reads what the paths hold when used. Paths are `(datastore,
"relative/path-or-glob")` tuples (v1's), `DataReference`s, http(s) URLs (read when used), or —
beyond v1, which refused them — local paths.
"""

from __future__ import annotations

import builtins
import enum
import glob
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import requests

from .datastores import DataReference, Datastore
from .errors import NotFoundError, UserError
from .workspace import Workspace, dumps, loads, now

_ENCODINGS = {"utf8": "utf-8", "iso88591": "iso-8859-1", "latin1": "latin-1", "ascii": "ascii", "utf16": "utf-16",
              "utf32": "utf-32", "utf8bom": "utf-8-sig", "windows1252": "cp1252"}  # fmt: skip
MAX_FILES = 100_000
_PATH_TYPES = (
    "Invalid argument type for `path`. It can be single value or a list of: string starting with \"http://\" or "
    '"https://", `azureml.data.datapath.DataPath` object, or tuple of `azureml.core.Datastore` object and string for '
    "relative path in the datastore.Url of blob can't contains SAS token, please use datastore instead."
)


class PromoteHeadersBehavior(enum.IntEnum):
    """v1's `azureml.data.dataset_type_definitions.PromoteHeadersBehavior`."""

    NO_HEADERS = 0
    ONLY_FIRST_FILE_HAS_HEADERS = 1
    COMBINE_ALL_FILES_HEADERS = 2
    ALL_FILES_HAVE_SAME_HEADERS = 3


class dataset_type_definitions:  # noqa: N801 - v1's module name, imported as `from azureml.data import dataset_type_definitions`
    PromoteHeadersBehavior = PromoteHeadersBehavior


def _paths(path: Any) -> list[dict[str, str]]:
    """v1's `path` argument as stored entries: {"datastore", "path"} | {"url"} | {"local"}."""
    items = path if isinstance(path, list) else [path]
    if not items:
        raise UserError(_PATH_TYPES)
    out = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[0], Datastore) or not isinstance(item[1], str):
                raise UserError("Invalid tuple for path. Please make sure the tuple consists of a datastore and a path/SQL query")
            out.append({"datastore": item[0].name, "path": item[1]})
        elif isinstance(item, DataReference):
            out.append({"datastore": item.datastore.name, "path": item.path_on_datastore})
        elif isinstance(item, str) and item.startswith(("http://", "https://")):
            if "sig=" in item:
                raise UserError(_PATH_TYPES)
            out.append({"url": item})
        elif isinstance(item, str | os.PathLike) and str(item).strip() and "\0" not in str(item):
            out.append({"local": os.path.abspath(item)})
        else:
            raise UserError(_PATH_TYPES)
    return out


class AbstractDataset:
    """What both kinds share: the definition, registration, and where the files are."""

    kind = ""

    def __init__(self, workspace: Workspace | None, paths: list[dict[str, str]], options: dict[str, Any]) -> None:
        self._workspace, self._paths, self._options = workspace, paths, options
        self.name: str | None = None
        self.version: int | None = None
        self.description: str | None = None
        self.tags: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, paths={self._paths!r})"

    @property
    def id(self) -> str | None:
        return f"{self.name}:{self.version}" if self.name else None

    def _definition(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": self._paths, "options": self._options}

    def _workspace_for(self, entry: dict[str, str]) -> Workspace:
        if self._workspace is None:
            raise UserError("this dataset names a datastore but no workspace: register it, or build it from a Datastore")
        return self._workspace

    def files(self) -> builtins.list[str]:
        """The local files (or URLs) the definition names now, in a stable order (at most MAX_FILES of them)."""
        out: builtins.list[str] = []
        for entry in self._paths:
            if "url" in entry:
                out.append(entry["url"])
            elif "local" in entry:
                local = entry["local"]
                found = sorted(_at_most(glob.iglob(local, recursive=True))) if any(c in local for c in "*?[") else [local]
                for item in found:
                    if os.path.isdir(item):
                        out += sorted(str(p) for p in _at_most(p for p in Path(item).rglob("*") if p.is_file()))
                    else:
                        out.append(item)
            else:
                datastore = Datastore(self._workspace_for(entry), entry["datastore"])
                out += [str(p) for p in datastore.resolve(entry["path"])]
            _at_most(out)
        return out

    def register(
        self,
        workspace: Workspace,
        name: str,
        description: str | None = None,
        tags: dict | None = None,
        create_new_version: bool = False,
    ) -> AbstractDataset:
        """Store the definition as `name` (the next version with `create_new_version=True`); returns the registered copy."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or not name.isprintable():
            raise UserError(f"a dataset name is 1-255 printable characters, got {name!r:.80}")
        if tags is not None and not isinstance(tags, dict):
            raise UserError(f"tags must be a dict of names to values, got {type(tags).__name__}")
        text = json.dumps(self._definition(), sort_keys=True)
        with workspace.transaction() as tx:
            latest = tx.execute("SELECT version, definition FROM datasets WHERE name=:name ORDER BY version DESC LIMIT 1",
                                {"name": name}).first()  # fmt: skip
            if latest is not None and latest["definition"] == text:
                version = latest["version"]
            elif latest is not None and not create_new_version:
                raise UserError(
                    f'There is already a dataset registered under name "{name}". Specify `create_new_version=True` to '
                    "register the dataset as a new version. Use `update`, `add_tags`, or `remove_tags` to change only the "
                    "description or tags."
                )
            else:
                version = tx.next_version("dataset", name)
                tx.execute(
                    "INSERT INTO datasets (name, version, definition, description, tags, created_time)"
                    " VALUES (:name, :version, :definition, :description, :tags, :created_time)",
                    {"name": name, "version": version, "definition": text, "description": description,
                     "tags": dumps({k: str(v) for k, v in (tags or {}).items()}), "created_time": now()},
                )  # fmt: skip
        return Dataset.get_by_name(workspace, name, version)


class TabularDataset(AbstractDataset):
    kind = "tabular"

    def to_pandas_dataframe(self, on_error: str = "null", out_of_range_datetime: str = "null") -> Any:
        import pandas as pd  # only here: pandas is the data scientist's, not a dependency of the deploy core

        options = self._options
        header = PromoteHeadersBehavior(options.get("header", 3))
        frames = []
        for number, file in enumerate(self.files()):
            if options.get("format") == "parquet":
                frames.append(pd.read_parquet(file))
                continue
            has_header = header in (PromoteHeadersBehavior.ALL_FILES_HAVE_SAME_HEADERS,
                                    PromoteHeadersBehavior.COMBINE_ALL_FILES_HEADERS) or (
                header == PromoteHeadersBehavior.ONLY_FIRST_FILE_HAS_HEADERS and number == 0)  # fmt: skip
            if options.get("separator") == "\n":  # v1's idiom for one value per line (JSON request bodies)
                lines = [line for line in _read_text(file, options.get("encoding", "utf-8")).splitlines() if line]
                frame = pd.DataFrame({"Column1": lines[1:] if has_header else lines})
            else:
                frame = pd.read_csv(
                    file,
                    sep=options.get("separator", ","),
                    header=0 if has_header else None,
                    encoding=options.get("encoding", "utf-8"),
                    dtype=None if options.get("infer_column_types", True) else str,
                    engine="python" if len(options.get("separator", ",")) != 1 else "c",
                )
            if not has_header:
                frame.columns = [f"Column{i + 1}" for i in range(len(frame.columns))]
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        return frame.head(options["take"]) if "take" in options else frame

    def take(self, count: int) -> TabularDataset:
        """The first `count` rows, as a dataset (v1's): `.to_pandas_dataframe()` reads them."""
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UserError(f"take() needs a row count (an int >= 0), got {count!r}")
        count = min(count, self._options.get("take", count))
        return TabularDataset(self._workspace, self._paths, {**self._options, "take": count})


def _read_text(file: str, encoding: str) -> str:
    if file.startswith(("http://", "https://")):
        return requests.get(file, timeout=60).content.decode(encoding)
    return Path(file).read_text(encoding=encoding)


class FileDataset(AbstractDataset):
    kind = "file"

    def to_path(self) -> builtins.list[str]:
        """The files' paths relative to their common folder (v1's `to_path`)."""
        files = [f for f in self.files() if not f.startswith(("http://", "https://"))]
        if not files:
            return []
        root = os.path.commonpath([os.path.dirname(f) for f in files])
        return ["/" + os.path.relpath(f, root) for f in files]

    def download(self, target_path: str | None = None, overwrite: bool = False) -> builtins.list[str]:
        """Copy the files to `target_path` (default: a new temporary folder), keeping their relative paths."""
        target = Path(target_path or tempfile.mkdtemp(prefix="dataset-"))
        files = [f for f in self.files() if not f.startswith(("http://", "https://"))]
        out = []
        for file, relative in zip(files, self.to_path(), strict=True):
            destination = target / relative.lstrip("/")
            if destination.exists() and not overwrite:
                raise UserError(f"{destination} exists; pass overwrite=True to replace it")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, destination)
            out.append(str(destination))
        return out


class _TabularFactory:
    @staticmethod
    def from_delimited_files(
        path: Any,
        validate: bool = True,
        include_path: bool = False,
        infer_column_types: bool = True,
        set_column_types: Any = None,
        separator: str = ",",
        header: Any = True,
        partition_format: Any = None,
        support_multi_line: bool = False,
        empty_as_string: bool = False,
        encoding: str = "utf8",
    ) -> TabularDataset:
        if encoding.lower() not in _ENCODINGS:
            raise UserError(f"Invalid encoding '{encoding}'. The supported encodings are 'utf8', 'iso88591', 'latin1', "
                            "'ascii', 'utf16', 'utf32', 'utf8bom' and 'windows1252'.")  # fmt: skip
        options = {"separator": separator, "header": int(_header(header)), "encoding": _ENCODINGS[encoding.lower()],
                   "infer_column_types": infer_column_types}  # fmt: skip
        dataset = TabularDataset(_workspace_of(path), _paths(path), options)
        if validate:
            _validate(dataset)
        return dataset

    @staticmethod
    def from_parquet_files(path: Any, validate: bool = True, include_path: bool = False, set_column_types: Any = None,
                           partition_format: Any = None) -> TabularDataset:  # fmt: skip
        dataset = TabularDataset(_workspace_of(path), _paths(path), {"format": "parquet"})
        if validate:
            _validate(dataset)
        return dataset


class _FileFactory:
    @staticmethod
    def from_files(path: Any, validate: bool = True, partition_format: Any = None, is_file: bool = False) -> FileDataset:
        dataset = FileDataset(_workspace_of(path), _paths(path), {})
        if validate:
            _validate(dataset)
        return dataset

    @staticmethod
    def upload_directory(src_dir: str, target: Any, pattern: str | None = None, overwrite: bool = False,
                         show_progress: bool = True) -> FileDataset:  # fmt: skip
        """v1's replacement of `Datastore.upload`: copy `src_dir` to `target` ((datastore, path) or a DataReference)."""
        datastore, prefix = (target.datastore, target.path_on_datastore) if isinstance(target, DataReference) else target
        datastore.upload(src_dir, prefix, overwrite=overwrite, show_progress=show_progress)
        return FileDataset(datastore.workspace, [{"datastore": datastore.name, "path": prefix or ""}], {})


class Dataset:
    """v1's entry point: `Dataset.Tabular`, `Dataset.File`, `Dataset.get_by_name`."""

    Tabular = _TabularFactory
    File = _FileFactory

    @staticmethod
    def get_by_name(workspace: Workspace, name: str, version: Any = "latest") -> AbstractDataset:
        if version != "latest" and (not str(version).isdigit() or len(str(version)) > 9):
            raise UserError(f'Invalid value {version} for version. Version value must be number or "latest".')
        if version == "latest":
            rows = workspace.query("SELECT * FROM datasets WHERE name=:name ORDER BY version DESC LIMIT 1", {"name": name})
        else:
            rows = workspace.query("SELECT * FROM datasets WHERE name=:name AND version=:version",
                                   {"name": name, "version": int(version)})  # fmt: skip
        if not rows:
            shown = "None" if version == "latest" else version
            raise NotFoundError(f'Cannot find dataset registered with name "{name}" (version: {shown}) in the workspace.')
        row = rows[0]
        definition = json.loads(row["definition"])
        cls = TabularDataset if definition["kind"] == "tabular" else FileDataset
        dataset = cls(workspace, definition["paths"], definition["options"])
        dataset.name, dataset.version = row["name"], row["version"]
        dataset.description, dataset.tags = row["description"], loads(row["tags"], {})
        return dataset

    @staticmethod
    def list(workspace: Workspace) -> dict[str, AbstractDataset]:
        names = [r["name"] for r in workspace.query("SELECT DISTINCT name FROM datasets ORDER BY name")]
        return {name: Dataset.get_by_name(workspace, name) for name in names}


def _at_most(items: Any) -> builtins.list[Any]:
    """The items, refused in one line past MAX_FILES (a path such as '/' would otherwise walk the whole disk)."""
    kept = builtins.list(itertools.islice(items, MAX_FILES + 1))
    if len(kept) > MAX_FILES:
        raise UserError(f"the dataset's paths name more than {MAX_FILES} files: name a narrower folder or glob")
    return kept


def _header(header: Any) -> PromoteHeadersBehavior:
    if isinstance(header, PromoteHeadersBehavior):
        return header
    if header is True:
        return PromoteHeadersBehavior.ALL_FILES_HAVE_SAME_HEADERS
    if header is False:
        return PromoteHeadersBehavior.NO_HEADERS
    if isinstance(header, str) and header in PromoteHeadersBehavior.__members__:
        return PromoteHeadersBehavior[header]
    raise UserError("Unsupported header provided. The allowed values are "
                    + "".join(m for m in PromoteHeadersBehavior.__members__ if m != "ALL_FILES_HAVE_SAME_HEADERS")
                    + "ALL_FILES_HAVE_SAME_HEADERS")  # fmt: skip


def _workspace_of(path: Any) -> Workspace | None:
    for item in path if isinstance(path, list) else [path]:
        if isinstance(item, tuple) and item and isinstance(item[0], Datastore):
            return item[0].workspace
        if isinstance(item, DataReference):
            return item.datastore.workspace
    return None


def _validate(dataset: AbstractDataset) -> None:
    """v1 read the data when a dataset was defined; here: the named files must exist."""
    files = dataset.files()
    missing = [f for f in files if not f.startswith(("http://", "https://")) and not os.path.isfile(f)]
    if not files or missing:
        raise UserError(
            "Failed to validate the data.If data is inaccessible, please set validate to False.\n"
            + (f"no file at {', '.join(missing[:3])}" if missing else "the paths name no file")
        )
