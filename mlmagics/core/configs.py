"""Deploy configurations: v1's parameter names, defaults and validation.

Every target's `deploy_configuration(...)` returns a subclass of `DeploymentConfiguration`.
As in v1, every parameter defaults to None and the *effective* default applies when the
service is deployed (`config.effective("scoring_timeout_ms")` -> 60000). The settings shared
by all targets are enforced by the scoring server itself, so a service behaves the same on
this machine, in a container and on a cluster:

| setting | effective default | enforced as |
| --- | --- | --- |
| `auth_enabled` | target's (False local, True docker/kubernetes) | `Authorization: Bearer <key>`, else 401 |
| `scoring_timeout_ms` | 60000 | 500 `Scoring timeout after N ms` |
| `replica_max_concurrent_requests` | 1 | run() calls at once per replica = worker processes |
| `max_request_wait_time` | 500 ms | a request queued longer gets 503 + Retry-After |
| `collect_model_data` | False | `ModelDataCollector` records JSON lines |
| `max_request_body_mb` | 100 | larger bodies get 413 |
| `cors_origins` | none | CORS headers for these origins |
| `max_batch_size` (mlmagics only) | off | rows of concurrent requests scored by one run() call (adaptive batching) |
| `max_batch_latency_ms` (mlmagics only) | 10 | the longest a request waits for others to share its call |
| `server_limits` (mlmagics only) | the runtime's (docs: scoring server, Limits) | URL, headers, clients, bodies |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mlmagics.serving.settings import LIMITS

from .errors import UserError, WebserviceException

_CONFIGS: dict[str, type[DeploymentConfiguration]] = {}  # compute type -> configuration class, filled by the targets


class InvalidConfiguration(UserError, WebserviceException):
    """A deploy configuration value is not acceptable (raised as v1's WebserviceException too)."""


@dataclass
class DeploymentConfiguration:
    auth_enabled: bool | None = None
    # Keys given here go to the service's keys (the keys file or column) only: never into a repr,
    # the stored config or an answer (to_dict leaves them out).
    primary_key: str | None = field(default=None, repr=False)
    secondary_key: str | None = field(default=None, repr=False)
    scoring_timeout_ms: int | None = None
    replica_max_concurrent_requests: int | None = None
    max_request_wait_time: int | None = None
    collect_model_data: bool | None = None
    workers: int | None = None
    max_request_body_mb: float | None = None
    cors_origins: list[str] | None = None
    # mlmagics only: adaptive batching (mlmagics.serving.batching)
    max_batch_size: int | None = None
    max_batch_latency_ms: float | None = None
    # mlmagics only: the scoring server's HTTP limits (mlmagics.serving.settings.LIMITS), e.g. {"max_connections": 256}
    server_limits: dict[str, float] | None = None
    tags: dict[str, str] | None = None
    properties: dict[str, str] | None = None
    description: str | None = None

    compute_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {
        "auth_enabled": False,
        "scoring_timeout_ms": 60000,
        "replica_max_concurrent_requests": 1,
        "max_request_wait_time": 500,
        "collect_model_data": False,
        "max_request_body_mb": 100,
    }
    positive: ClassVar[tuple[str, ...]] = (
        "scoring_timeout_ms",
        "replica_max_concurrent_requests",
        "max_request_wait_time",
        "workers",
        "max_request_body_mb",
        "max_batch_size",
    )
    extra_fields: dict[str, Any] = field(default_factory=dict, repr=False)
    secrets: ClassVar[tuple[str, ...]] = ("primary_key", "secondary_key")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("compute_type"):  # a target's configuration registers itself (config_from_dict reads it)
            _CONFIGS[cls.compute_type] = cls

    def __post_init__(self) -> None:
        self.validate()

    def effective(self, name: str) -> Any:
        value = getattr(self, name)
        if value is not None:
            return value
        if name == "workers":
            return self.effective("replica_max_concurrent_requests")
        return self.defaults.get(name)

    def validation_errors(self) -> list[str]:
        errors = []
        for name in self.positive:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{name} must be a number, got {value!r}")
            elif value <= 0:
                errors.append(f"{name} must be greater than zero.")
        errors.extend(_limit_errors(self.server_limits))
        for name in ("tags", "properties"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                errors.append(f"{name} must be a dict of str to str")
        latency = self.max_batch_latency_ms
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)
                                    or not 0 <= latency <= 60000):  # fmt: skip
            errors.append(f"max_batch_latency_ms must be a number of milliseconds in [0, 60000], got {latency!r}")
        if isinstance(self.max_batch_size, int | float) and not isinstance(self.max_batch_size, bool) and (
            self.max_batch_size > 100_000 or self.max_batch_size != int(self.max_batch_size)
        ):
            errors.append(f"max_batch_size must be a whole number of rows up to 100000, got {self.max_batch_size!r}")
        if self.cors_origins is not None and not all(isinstance(o, str) for o in self.cors_origins):
            errors.append("cors_origins must be a list of origins such as 'https://app.example.com'")
        for name in self.secrets:  # the message never repeats the key
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and 1 <= len(value) <= 256 and _printable_word(value)):
                errors.append(f"{name} must be 1 to 256 printable characters without spaces (it is sent in a header)")
        return errors

    def validate(self) -> None:
        errors = self.validation_errors()
        if errors:
            raise InvalidConfiguration(f"Invalid {type(self).__name__}: " + " ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored and shown: everything but the keys (`service.get_keys()` has those)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra_fields", *self.secrets)}
        data["compute_type"] = self.compute_type
        return data

    def merged(self, **changes: Any) -> DeploymentConfiguration:
        """A copy with `changes` applied (None means: keep the current value)."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra_fields"}
        unknown = [k for k in changes if k not in current]
        if unknown:
            raise InvalidConfiguration(f"{type(self).__name__} has no setting {', '.join(unknown)}")
        current.update({k: v for k, v in changes.items() if v is not None})
        return type(self)(**current)

    def runtime_settings(
        self, service_name: str, keys_file: str, environment_variables: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """What the scoring server's `--config` file says for these settings (and the image's variables for the script)."""
        origins = self.cors_origins or []
        return {
            "auth_enabled": bool(self.effective("auth_enabled")),
            "keys_file": keys_file,
            "scoring_timeout_ms": int(self.effective("scoring_timeout_ms")),
            "max_request_wait_time": int(self.effective("max_request_wait_time")),
            "workers": int(self.effective("workers")),
            "collect_model_data": bool(self.effective("collect_model_data")),
            "max_body_bytes": int(float(self.effective("max_request_body_mb")) * 1024 * 1024),
            "cors_origins": list(origins),
            "service_name": service_name,
            **({"max_batch_size": int(self.max_batch_size)} if self.max_batch_size else {}),
            **({"max_batch_latency_ms": float(self.max_batch_latency_ms)} if self.max_batch_latency_ms is not None else {}),
            **({"environment_variables": dict(environment_variables)} if environment_variables else {}),
            **(self.server_limits or {}),
        }


def port_errors(port: Any) -> list[str]:
    """A port a target listens or publishes on: an integer 1..65535 (None: the target chooses)."""
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        return [f"port must be an integer in [1, 65535], got {port!r}"]
    return []


def _limit_errors(limits: Any) -> list[str]:
    """What is wrong with `server_limits`: names the runtime knows, numbers it can use."""
    if limits is None:
        return []
    if not isinstance(limits, dict):
        return [f"server_limits must be a dict such as {{'max_connections': 256}}, got {type(limits).__name__}"]
    errors = [f"server_limits has no limit {name!r} (known: {', '.join(LIMITS)})" for name in limits if name not in LIMITS]
    for name, value in limits.items():
        if name in LIMITS and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            errors.append(f"server_limits[{name!r}] must be a number >= 0, got {value!r}")
        elif name in LIMITS and value == 0 and name != "body_min_rate":
            errors.append(f"server_limits[{name!r}] must be greater than zero.")
    return errors


def _printable_word(text: str) -> bool:
    return text.isprintable() and not any(c.isspace() for c in text)


def config_from_dict(data: dict[str, Any]) -> DeploymentConfiguration:
    """Rebuild a stored configuration as its target's class."""
    data = dict(data)
    compute_type = data.pop("compute_type")
    cls = _CONFIGS.get(compute_type)
    if cls is None:
        raise UserError(f"no target of compute type {compute_type!r} is installed (known: {', '.join(_CONFIGS) or 'none'})")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
