"""v1's `CondaDependencies`: a conda environment file, read, edited and written as v1 notebooks do.

    cd = CondaDependencies.create(pip_packages=["azureml-defaults", "scikit-learn"], conda_packages=["numpy"])
    cd.add_pip_package("joblib")
    open("myenv.yml", "w").write(cd.serialize_to_string())

The file keeps v1's layout (its header comment, `python=` first, then `pip:` and the conda
packages, then the channels). Two choices differ from v1, on purpose:
- the default Python is the one running here (v1: 3.8.13, 3.10.18 in its last release): the model is
  pickled by this Python's packages, and an image gets exactly those (`environments.py`);
- SDK packages (`azureml-defaults`, `azureml-core`, …) are kept as written, never pinned to an SDK
  version: the scoring runtime provides what they provided, and an image build drops them, saying so.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

PYTHON_DEFAULT_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
DEFAULT_CHANNELS = ["anaconda", "conda-forge"]
DEFAULT_PIP_PACKAGES = ["azureml-defaults"]
_KEYS = {"name", "channels", "dependencies", "prefix", "variables"}
_HEADER = """\
# Conda environment specification. The dependencies defined in this file will
# be automatically provisioned for runs with userManagedDependencies=False.

# Details about the Conda environment file format:
# https://conda.io/docs/user-guide/tasks/manage-environments.html#create-env-file-manually

"""
_NAME_END = re.compile(r"[\[=<>~!;@ ]")


def package_name(spec: str) -> str:
    """'scikit-learn[alldeps]>=1.0' -> 'scikit-learn'; a wheel file -> its distribution name."""
    text = spec.strip()
    if text.endswith(".whl"):
        return os.path.basename(text).split("-")[0]
    return _NAME_END.split(text, maxsplit=1)[0]


class CondaDependencies:
    """A conda environment specification (v1's class; a YAML file with `python=`, conda packages and a `pip:` list)."""

    def __init__(self, conda_dependencies_file_path: str | os.PathLike | None = None, _underlying_structure: Any = None):
        if _underlying_structure is not None:
            data = _underlying_structure
        elif conda_dependencies_file_path is not None:
            try:
                data = yaml.safe_load(Path(conda_dependencies_file_path).read_text())
            except OSError as e:
                raise UserError(f"cannot read the conda file {conda_dependencies_file_path}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise UserError(f"Environment error: {conda_dependencies_file_path} is not valid YAML: {e}") from None
        else:
            data = {
                "name": "project_environment",
                "dependencies": [f"python={PYTHON_DEFAULT_VERSION}", {"pip": list(DEFAULT_PIP_PACKAGES)}],
                "channels": list(DEFAULT_CHANNELS),
            }
        if not isinstance(data, dict):
            raise UserError("Environment error: not a valid YAML structure")
        for key in data:
            if key not in _KEYS:
                raise UserError(f"Environment error: unknown {key} key in environment specification")
        self._data: dict[str, Any] = {k: data[k] for k in data}
        self._data["dependencies"] = _checked_dependencies(data.get("dependencies"))
        channels = data.get("channels")
        if channels is not None and not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)):
            raise UserError("Environment error: channels must be a list of channel names")

    @staticmethod
    def create(
        pip_indexurl: str | None = None,
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        python_version: str = PYTHON_DEFAULT_VERSION,
        pin_sdk_version: bool = True,
    ) -> CondaDependencies:
        """v1's factory. `pip_indexurl` comes first (as in v1): `create(['numpy'])` sets it, not the packages.
        `pin_sdk_version` is accepted and has no effect: SDK packages are provided by the runtime."""
        cd = CondaDependencies()
        cd.set_python_version(python_version)
        cd.set_pip_requirements([])
        for package in DEFAULT_PIP_PACKAGES if pip_packages is None else pip_packages:
            cd.add_pip_package(package)
        for package in conda_packages or []:
            cd.add_conda_package(package)
        if pip_indexurl:
            cd.set_pip_option(f"--find-links {pip_indexurl}")
        return cd

    # -- the pip list -----------------------------------------------------------------------------------
    def _pip(self, create: bool = False) -> list[str] | None:
        for entry in self._data["dependencies"]:
            if isinstance(entry, dict) and "pip" in entry:
                if entry["pip"] is None:
                    entry["pip"] = []
                return entry["pip"]
        if not create:
            return None
        pip: list[str] = []
        self._data["dependencies"].append({"pip": pip})
        return pip

    @property
    def pip_packages(self) -> Iterator[str]:
        return iter([str(p) for p in self._pip() or [] if not str(p).startswith("-")])

    @property
    def pip_options(self) -> Iterator[str]:
        return iter([str(p) for p in self._pip() or [] if str(p).startswith("-")])

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip package; one of the same name is replaced (and moves to the end)."""
        if not isinstance(pip_package, str) or not pip_package.strip() or pip_package.startswith("-"):
            raise UserError(f"Invalid package name {pip_package}")
        self.remove_pip_package(pip_package)
        pip = self._pip(create=True)
        assert pip is not None
        pip.append(pip_package)

    def remove_pip_package(self, pip_package: str) -> None:
        pip = self._pip()
        if pip is not None:
            name = package_name(pip_package).lower()
            pip[:] = [p for p in pip if str(p).startswith("-") or package_name(str(p)).lower() != name]

    def set_pip_option(self, pip_option: str) -> None:
        """A pip option line (`--extra-index-url ...`); one with the same first word is replaced."""
        if not isinstance(pip_option, str) or not pip_option.startswith("-"):
            raise UserError(f"Invalid pip option {pip_option}")
        pip = self._pip(create=True)
        assert pip is not None
        first = pip_option.split()[0]
        pip[:] = [p for p in pip if not (str(p).startswith("-") and str(p).split()[0] == first)]
        pip.insert(0, pip_option)

    def set_pip_requirements(self, pip_requirements: list[str]) -> None:
        pip = self._pip(create=True)
        assert pip is not None
        pip[:] = list(pip_requirements)

    # -- conda packages, python, channels ------------------------------------------------------------------
    @property
    def conda_packages(self) -> Iterator[str]:
        return iter([str(d) for d in self._data["dependencies"] if not isinstance(d, dict)])

    def add_conda_package(self, conda_package: str) -> None:
        """Appended unless the exact string is there (`numpy` and `numpy=1.2` may both be); `python…` replaces python."""
        if _is_python(conda_package):
            self.set_python_version(conda_package.partition("=")[2].lstrip("=") or PYTHON_DEFAULT_VERSION)
            return
        if conda_package not in list(self.conda_packages):
            self._data["dependencies"].append(conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        if _is_python(conda_package):
            raise UserError("python must not be removed from conda dependencies")
        name = package_name(conda_package)
        self._data["dependencies"] = [
            d for d in self._data["dependencies"] if isinstance(d, dict) or package_name(str(d)) != name
        ]

    def set_python_version(self, version: str) -> None:
        deps = self._data["dependencies"]
        for i, dep in enumerate(deps):
            if not isinstance(dep, dict) and _is_python(str(dep)):
                deps[i] = f"python={version}"
                return
        deps.insert(0, f"python={version}")

    def get_python_version(self) -> str | None:
        for dep in self._data["dependencies"]:
            if not isinstance(dep, dict) and _is_python(str(dep)):
                return str(dep).partition("=")[2].lstrip("=") or None
        return None

    @property
    def conda_channels(self) -> Iterator[str]:
        return iter([str(c) for c in self._data.get("channels") or []])

    def add_channel(self, channel: str) -> None:
        channels = self._data.setdefault("channels", [])
        if channel not in channels:
            channels.append(channel)

    def remove_channel(self, channel: str) -> None:
        self._data["channels"] = [c for c in self._data.get("channels") or [] if c != channel]

    # -- writing -------------------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return yaml.safe_load(self.serialize_to_string())

    def serialize_to_string(self) -> str:
        """The YAML text, in v1's layout: header comment, name, dependencies (python first, pip), channels."""
        ordered: dict[str, Any] = {k: self._data[k] for k in ("name", "dependencies", "channels") if k in self._data}
        ordered.update({k: v for k, v in self._data.items() if k not in ordered})
        return _HEADER + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)

    def save(self, path: str | os.PathLike) -> str:
        """Write the file; v1's checks: a file path (not a folder) in an existing folder, python listed."""
        if os.path.isdir(path):
            raise UserError(
                "Cannot save a conda environment specification file to a directory. Please specify a fully "
                "qualified path along with the file name to save the file."
            )
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UserError("Cannot save the conda environment specification file to an invalid path.")
        if self.get_python_version() is None:
            raise UserError("Python package is missing.")
        Path(path).write_text(self.serialize_to_string())
        return str(path)

    def save_to_file(self, base_directory: str | os.PathLike, conda_file_path: str | None = None) -> str:
        """v1's older form: `save_to_file(".", conda_file_path="myenv.yml")`, the file relative to the folder."""
        return self.save(Path(base_directory) / (conda_file_path or "conda_dependencies.yml"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CondaDependencies) and self.serialize_to_string() == other.serialize_to_string()

    def __repr__(self) -> str:
        return self.serialize_to_string()


def _checked_dependencies(dependencies: Any) -> list[Any]:
    """The `dependencies` list as read: package strings and at most a `{pip: [strings]}` entry, else one line."""
    if dependencies is None:
        return []
    if not isinstance(dependencies, list):
        raise UserError(f"Environment error: dependencies must be a list, got {type(dependencies).__name__}")
    for entry in dependencies:
        if isinstance(entry, dict):
            pip = entry.get("pip")
            if pip is not None and not (isinstance(pip, list) and all(isinstance(p, str) for p in pip)):
                raise UserError("Environment error: the pip entry of dependencies must be a list of package strings")
        elif not isinstance(entry, (str, int, float)) or isinstance(entry, bool):
            raise UserError(f"Environment error: dependencies holds {entry!r}, not a package string")
    return list(dependencies)


def _is_python(spec: str) -> bool:
    return package_name(spec.split("::")[-1]) == "python"
