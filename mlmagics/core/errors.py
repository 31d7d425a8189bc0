"""Errors the core raises. Each message is one line that says what to do.

The names follow the Azure ML v1 SDK (`WebserviceException`, `ModelNotFoundException`), so
`except` clauses written for v1 keep working after a search-and-replace of the imports.
"""

from __future__ import annotations


class MlmagicsError(Exception):
    """Base class of every error mlmagics raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(MlmagicsError, ValueError):
    """A parameter or input is not acceptable (validation)."""


class NotFoundError(MlmagicsError, LookupError):
    """The named model, image or service does not exist in the workspace."""


class ConflictError(MlmagicsError):
    """The operation is refused because of something else (a name taken, an object in use)."""


class ModelNotFoundException(NotFoundError):
    pass


class ComputeTargetException(NotFoundError):
    """A compute target (a cluster) is not attached, or cannot be created here."""


class ImageException(MlmagicsError):
    """Image creation or use failed."""


class WebserviceException(MlmagicsError):
    """A deployment, or a call to a deployed service, failed."""


class TargetUnavailable(MlmagicsError):
    """The deployment target cannot be reached or is not built yet (no Docker engine, no cluster)."""


class StorageFullError(UserError):
    """The workspace's disk is full: nothing was stored, and the workspace is unchanged."""
