"""`azureml.core.model.Model.get_model_path` for scoring scripts.

Where a deployed model lives, in the order this looks:

1. `$AZUREML_MODEL_DIR/<name>/<version>/<entry>` — several models deployed together;
2. `$AZUREML_MODEL_DIR/<entry>` when that folder *is* `<name>/<version>` — one model
   deployed (what later v1 SDKs set, and what mlmagics sets for a single model);
3. `./azureml-models/<name>/<version>/<entry>` relative to the app root (the 2019 layout);
4. `$AZUREML_MODEL_DIR/<name>`, then `./<name>` (v1's fallback).

`<version>` is the one asked for, else the highest integer folder; `<entry>` is the single
file or folder inside it (v1 refuses a version folder that holds more than one). A name that is
absolute or climbs out with `..` is refused, so a name taken from a request cannot reach other files.
"""

from __future__ import annotations

import os

MODELS_DIR = "azureml-models"


class ModelNotFoundException(Exception):
    """No deployed model has that name (and version)."""


class InvalidModelName(ModelNotFoundException, ValueError):
    """A name that would lead out of the model folders (absolute, or climbing with '..')."""


def _checked_name(model_name: object) -> str:
    # The name becomes part of a path: it must stay below the folder it is looked up in.
    norm = os.path.normpath(model_name) if isinstance(model_name, str) and model_name and "\0" not in model_name else ""
    if not norm or os.path.isabs(model_name) or norm in (".", "..") or norm.startswith(".." + os.sep):
        raise InvalidModelName(f"model name {model_name!r} is not valid: it cannot be absolute or leave the model folder")
    return model_name


def _single_entry(folder: str) -> str:
    entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
    if len(entries) != 1:
        raise ModelNotFoundException(f"Dir {folder} can contain only 1 file or folder, found {len(entries)}")
    return os.path.join(folder, entries[0])


def _versioned(name_dir: str, version: int | None) -> str | None:
    if not os.path.isdir(name_dir):
        return None
    if version is not None:
        folder = os.path.join(name_dir, str(version))
        return _single_entry(folder) if os.path.isdir(folder) else None
    versions = [int(v) for v in os.listdir(name_dir) if v.isdigit() and os.path.isdir(os.path.join(name_dir, v))]
    return _single_entry(os.path.join(name_dir, str(max(versions)))) if versions else None


class Model:
    """The scoring-time face of a registered model."""

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace=None) -> str:
        """Path of the deployed model `model_name` (a file or a folder).

        >>> Model.get_model_path("sklearn_mnist")  # doctest: +SKIP
        'azureml-models/sklearn_mnist/1/sklearn_mnist_model.pkl'
        """
        model_name = _checked_name(model_name)
        model_dir = os.environ.get("AZUREML_MODEL_DIR", "")
        looked: list[str] = []
        if model_dir:
            found = _versioned(os.path.join(model_dir, model_name), version)
            if found:
                return found
            looked.append(os.path.join(model_dir, model_name, str(version or "<latest>")))
            parent, leaf = os.path.split(os.path.normpath(model_dir))
            if os.path.basename(parent) == model_name and leaf.isdigit() and version in (None, int(leaf)):
                return _single_entry(model_dir)
        found = _versioned(os.path.join(MODELS_DIR, model_name), version)
        if found:
            return found
        looked.append(os.path.join(MODELS_DIR, model_name, str(version or "<latest>")))
        for fallback in ([os.path.join(model_dir, model_name)] if model_dir else []) + [model_name]:
            if os.path.exists(fallback):
                return fallback
            looked.append(fallback)
        raise ModelNotFoundException(
            f"Model {model_name!r}{'' if version is None else f' version {version}'} not found; looked in "
            + ", ".join(looked)
            + f" (working directory {os.getcwd()})"
        )
