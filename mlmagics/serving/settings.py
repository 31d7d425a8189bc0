"""Server settings: defaults < config file < environment < command line.

The environment variable names are the ones `azureml-inference-server-http` reads
(`AZUREML_ENTRY_SCRIPT`, `AZUREML_MODEL_DIR`, `AML_APP_ROOT`, `SCORING_TIMEOUT_MS`,
`WORKER_COUNT`, `AML_CORS_ORIGINS`, ...), so images and manifests written for v1 keep
working. The config file is JSON; its keys are either these field names or those
environment variable names (the reference server's `config.json` style).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    entry_script: str = ""  # absolute path; "" means `main.py` in the app root (v1 convention)
    app_root: str = ""  # working directory of the script; defaults to the current directory
    model_dir: str = ""  # AZUREML_MODEL_DIR
    host: str = "127.0.0.1"
    port: int = 5001
    health_port: int | None = None  # a second port answering only / and /ready (v1: HEALTH_PORT)
    separate_health_endpoint: bool = False  # v1's SEPERATE_HEALTH_ENDPOINT: the health port defaults to 5000
    listen_from: str = ""  # a holder's Unix socket that hands over the listening socket (listener.py); host/port unused
    serve_init_failure: bool = True  # init() failed: answer 503 with the reason (False: accept nothing, the socket is shared)
    workers: int = 1
    # Service settings (deploy configuration); enforced here so every target behaves the same.
    auth_enabled: bool = False
    primary_key: str = field(default="", repr=False)  # secrets stay out of repr (a log line, a traceback)
    secondary_key: str = field(default="", repr=False)
    keys_file: str = ""  # JSON {"primary_key":..,"secondary_key":..}; re-read when it changes
    scoring_timeout_ms: int = 3_600_000
    max_request_wait_time: int | None = 500  # ms a request may queue for a worker, then 503 (as the deploy targets)
    # adaptive batching (batching.py): rows of concurrent requests in one run() call; 0 or 1 = off
    max_batch_size: int = 0
    max_batch_latency_ms: float | None = None  # the longest a request waits for others to share its call; None: 10 ms
    # (or a @batched script's own), told apart from a service that sets 10
    max_body_bytes: int = 100 * 1024 * 1024  # -> 413, checked against Content-Length before the body is read
    # HTTP limits, enforced while bytes arrive (http.py; docs: reference/scoring-server "Limits"). Sizes as gunicorn and nginx.
    max_url_bytes: int = 8192  # the request line's URL -> 414
    max_header_line_bytes: int = 8192  # one header line -> 431
    max_header_bytes: int = 64 * 1024  # all header lines of a request -> 431
    max_headers: int = 100  # header lines of a request -> 431
    header_timeout_s: float = 10.0  # a request's head must be complete this long after its first byte -> 408
    body_min_rate: int = 240  # bytes/s a body must average once body_grace_s has passed -> 408 (Kestrel's rule)
    body_grace_s: float = 5.0
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this long
    send_timeout_s: float = 30.0  # a client that reads none of its answers this long is disconnected (nginx: send_timeout)
    max_connections: int = 1024  # open connections per worker; past it an idle one is closed, else 503
    max_pending_bytes: int = 1024 * 1024  # a connection's unanswered requests; past it the connection is not read
    max_buffered_bytes: int = 256 * 1024 * 1024  # request bodies one worker holds in all -> 503
    cors_origins: tuple[str, ...] = ()
    collect_model_data: bool = False
    data_collection_dir: str = ""
    data_collection_file_bytes: int = 10 * 1024 * 1024  # a collector file is rotated past this size
    data_collection_max_bytes: int = 1024 * 1024 * 1024  # all collected files of the service; oldest removed first
    service_name: str = "ML service"
    service_version: str = "1.0"
    service_path_prefix: str = ""
    log_format: str = "json"  # "json" (one object per line) or "text"
    log_level: str = "INFO"
    request_log: bool = True
    log_file: str = ""  # write the log here (stdout and stderr too) instead of stdout, rotated by size
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5  # server.log.1 ... server.log.5 are kept
    metrics_enabled: bool = True
    graceful_timeout_s: float = 30.0
    startup_timeout_s: float = 600.0  # how long a reload waits for the new workers' init()
    ssl_cert_file: str = ""  # serve HTTPS with this PEM certificate (chain) ...
    ssl_key_file: str = ""  # ... and its PEM private key
    # the script's own variables (v1: Environment.environment_variables), set in each worker before init()
    environment_variables: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    debug_port: str = ""  # v1's AZUREML_DEBUG_PORT: `port` or `host:port` of a listening debugger (debugger.py)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def separate_health_port(self) -> int | None:
        """The port of the health-only endpoint, when there is one: v1's rule (asked for with
        SEPERATE_HEALTH_ENDPOINT, default 5000), or a health port other than the scoring port."""
        if self.separate_health_endpoint:
            return self.health_port or 5000
        if self.health_port and self.health_port != self.port:
            return self.health_port
        return None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.primary_key, self.secondary_key) if k)


# The limits a deploy configuration may set (its `server_limits`), with the runtime's defaults above.
LIMITS = (
    "max_url_bytes", "max_header_line_bytes", "max_header_bytes", "max_headers", "header_timeout_s", "body_min_rate",
    "body_grace_s", "keep_alive_s", "send_timeout_s", "max_connections", "max_pending_bytes", "max_buffered_bytes",
    "data_collection_max_bytes",
)  # fmt: skip

# environment variable -> field name
ENVIRONMENT = {
    "AZUREML_ENTRY_SCRIPT": "entry_script",
    "AML_APP_ROOT": "app_root",
    "AZUREML_MODEL_DIR": "model_dir",
    "MLMAGICS_HOST": "host",
    "SERVER_PORT": "port",
    "HEALTH_PORT": "health_port",
    "SEPERATE_HEALTH_ENDPOINT": "separate_health_endpoint",  # sic, as v1 spells it
    "SEPARATE_HEALTH_ENDPOINT": "separate_health_endpoint",
    "MLMAGICS_LISTEN_FROM": "listen_from",
    "MLMAGICS_SERVE_INIT_FAILURE": "serve_init_failure",
    "WORKER_COUNT": "workers",
    "MLMAGICS_AUTH_ENABLED": "auth_enabled",
    "MLMAGICS_PRIMARY_KEY": "primary_key",
    "MLMAGICS_SECONDARY_KEY": "secondary_key",
    "MLMAGICS_KEYS_FILE": "keys_file",
    "SCORING_TIMEOUT_MS": "scoring_timeout_ms",
    "MLMAGICS_MAX_REQUEST_WAIT_TIME": "max_request_wait_time",
    "MLMAGICS_MAX_BATCH_SIZE": "max_batch_size",
    "MLMAGICS_MAX_BATCH_LATENCY_MS": "max_batch_latency_ms",
    "MLMAGICS_MAX_BODY_BYTES": "max_body_bytes",
    "MLMAGICS_MAX_URL_BYTES": "max_url_bytes",
    "MLMAGICS_MAX_HEADER_LINE_BYTES": "max_header_line_bytes",
    "MLMAGICS_MAX_HEADER_BYTES": "max_header_bytes",
    "MLMAGICS_MAX_HEADERS": "max_headers",
    "MLMAGICS_HEADER_TIMEOUT": "header_timeout_s",
    "MLMAGICS_BODY_MIN_RATE": "body_min_rate",
    "MLMAGICS_BODY_GRACE": "body_grace_s",
    "MLMAGICS_KEEP_ALIVE": "keep_alive_s",
    "MLMAGICS_SEND_TIMEOUT": "send_timeout_s",
    "MLMAGICS_MAX_CONNECTIONS": "max_connections",
    "MLMAGICS_MAX_PENDING_BYTES": "max_pending_bytes",
    "MLMAGICS_MAX_BUFFERED_BYTES": "max_buffered_bytes",
    "AML_CORS_ORIGINS": "cors_origins",
    "AML_MODEL_DC_STORAGE_ENABLED": "collect_model_data",
    "AML_MDC_STORAGE_ENABLED": "collect_model_data",
    "MLMAGICS_DATA_COLLECTION_DIR": "data_collection_dir",
    "MLMAGICS_DATA_COLLECTION_FILE_BYTES": "data_collection_file_bytes",
    "MLMAGICS_DATA_COLLECTION_MAX_BYTES": "data_collection_max_bytes",
    "SERVICE_NAME": "service_name",
    "SERVICE_VERSION": "service_version",
    "SERVICE_PATH_PREFIX": "service_path_prefix",
    "MLMAGICS_LOG_FORMAT": "log_format",
    "AZUREML_LOG_LEVEL": "log_level",
    "MLMAGICS_REQUEST_LOG": "request_log",
    "MLMAGICS_LOG_FILE": "log_file",
    "MLMAGICS_LOG_MAX_BYTES": "log_max_bytes",
    "MLMAGICS_LOG_BACKUPS": "log_backups",
    "MLMAGICS_METRICS": "metrics_enabled",
    "MLMAGICS_GRACEFUL_TIMEOUT": "graceful_timeout_s",
    "MLMAGICS_STARTUP_TIMEOUT": "startup_timeout_s",
    "AZUREML_DEBUG_PORT": "debug_port",
    "MLMAGICS_ENVIRONMENT_VARIABLES": "environment_variables",  # a JSON object
    "MLMAGICS_SSL_CERT_FILE": "ssl_cert_file",
    "MLMAGICS_SSL_KEY_FILE": "ssl_key_file",
}

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_NOT_ZERO = {
    "port", "workers", "scoring_timeout_ms", "max_url_bytes", "max_header_line_bytes", "max_header_bytes", "max_headers",
    "header_timeout_s", "keep_alive_s", "send_timeout_s", "max_connections", "max_pending_bytes", "max_buffered_bytes",
}  # fmt: skip
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, value: Any) -> Any:
    """Turn a config or environment value into the field's type, or say what is wrong."""
    kind = _FIELDS[name].type
    if kind == "Mapping[str, str]":
        return _variables(name, value)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind == "int":
            number = int(value)
        elif kind == "int | None":
            if value in (None, "", "none", "None"):
                return None
            number = int(value)
        elif kind == "float":
            number = float(value)
        elif kind == "float | None":
            if value in (None, "", "none", "None"):
                return None
            number = float(value)
        elif kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        else:
            return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name!r} has the invalid value {value!r}") from None
    if not math.isfinite(number):
        raise SettingsError(f"setting {name!r} must be a finite number, got {value!r}")
    if number < 0 or (number == 0 and name in _NOT_ZERO):
        raise SettingsError(f"setting {name!r} must be greater than zero, got {value!r}")
    return number


# environment_variables: bounded so that a subprocess the script starts can still be given them (Linux: 128 KiB
# for one NAME=value, 2 MiB for a process's arguments and environment together).
MAX_VARIABLES = 1000
MAX_VARIABLE_BYTES = 128 * 1024
MAX_VARIABLES_BYTES = 1024 * 1024


def _variables(name: str, value: Any) -> dict[str, str]:
    """The script's environment variables, a JSON object of names to strings. The values may be secrets:
    no message quotes them."""
    wanted = f"setting {name!r} must be a JSON object of names to strings"
    if isinstance(value, str):
        if len(value) > MAX_VARIABLES_BYTES:
            raise SettingsError(f"{wanted} of at most {MAX_VARIABLES_BYTES} bytes in all, got {len(value)} characters")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise SettingsError(f"{wanted}; its text is not valid JSON") from None
    if not isinstance(value, Mapping):
        raise SettingsError(f"{wanted}, not {type(value).__name__}")
    if len(value) > MAX_VARIABLES:
        raise SettingsError(f"{wanted}, at most {MAX_VARIABLES} of them; got {len(value)}")
    variables: dict[str, str] = {}
    total = 0
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SettingsError(f"{wanted}: {str(key)[:100]!r} is not a variable name (empty, or holds '=' or NUL)")
        if not isinstance(item, (str, int, float)):  # bool is an int
            raise SettingsError(f"{wanted}: the value of {key[:100]!r} is {type(item).__name__}")
        text = str(item)
        try:
            size = len(os.fsencode(key)) + len(os.fsencode(text)) + 2  # NAME=value and its NUL
        except UnicodeEncodeError:
            raise SettingsError(f"{wanted}: {key[:100]!r} or its value holds a character the OS cannot take") from None
        if "\0" in text or size > MAX_VARIABLE_BYTES:
            raise SettingsError(f"{wanted}: the value of {key[:100]!r} holds a NUL or is over {MAX_VARIABLE_BYTES} bytes")
        total += size
        variables[key] = text
    if total > MAX_VARIABLES_BYTES:
        raise SettingsError(f"{wanted} of at most {MAX_VARIABLES_BYTES} bytes in all, got {total}")
    return variables


def _normalise(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = ENVIRONMENT.get(key, key)
        if name not in _FIELDS or name == "extra":
            continue
        values[name] = _coerce(name, value)
    return values


def load_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise SettingsError(f"config file {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise SettingsError(f"config file {path} nests its JSON too deeply") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"config file {path} must hold a JSON object")
    unknown = sorted(k for k in raw if ENVIRONMENT.get(k, k) not in _FIELDS)
    values = _normalise(raw, path)
    if unknown:
        values["extra"] = {k: raw[k] for k in unknown}
    return values


def resolve(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge the settings sources and check them.

    >>> resolve({"entry_script": "score.py", "port": 8000}).port
    8000
    """
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    config_file = config_file or environ.get("AZUREML_CONFIG_FILE") or ""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    values.update(_normalise({k: v for k, v in environ.items() if k in ENVIRONMENT}, "environment"))
    values.update(_normalise(cli, "command line"))

    app_root = _absolute(values.get("app_root") or ".")
    values["app_root"] = app_root
    entry = values.get("entry_script") or ""
    if entry:
        # v1 joins AZUREML_ENTRY_SCRIPT onto the app root; a command-line path is relative to the CWD.
        values["entry_script"] = _absolute(entry if "entry_script" in cli else os.path.join(app_root, entry))
    for path in ("model_dir", "log_file", "ssl_cert_file", "ssl_key_file"):
        if values.get(path):
            values[path] = _absolute(values[path])
    if not values.get("data_collection_dir"):
        values["data_collection_dir"] = os.path.join(app_root, "model-data")
    settings = Settings(**values)
    check(settings)
    return settings


def _absolute(path: str) -> str:
    """`path` made absolute; the working directory is read only for a relative path, since a reload's
    may be gone (an update removed the release the server started in)."""
    if os.path.isabs(path):
        return os.path.normpath(path)
    try:
        return os.path.abspath(path)
    except FileNotFoundError:
        raise SettingsError(f"{path!r} is relative, and the working directory it is relative to no longer exists") from None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server side TLS context for `ssl_cert_file` + `ssl_key_file`, or None for plain HTTP."""
    if not settings.ssl_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file)
    except (OSError, ssl.SSLError) as e:
        raise SettingsError(
            f"cannot use the TLS certificate {settings.ssl_cert_file} with the key {settings.ssl_key_file}: "
            f"{getattr(e, 'strerror', None) or e}; give PEM files that belong together"
        ) from None
    return context


def check(settings: Settings) -> None:
    if settings.log_format not in {"json", "text"}:
        raise SettingsError(f"log_format must be 'json' or 'text', got {settings.log_format!r}")
    if settings.log_file and not os.access(os.path.dirname(settings.log_file), os.W_OK):
        raise SettingsError(f"cannot write the log file {settings.log_file}: its folder does not exist or is not writable")
    if settings.log_file and (settings.log_max_bytes < 4096 or settings.log_backups < 1):
        raise SettingsError(
            "a log file needs log_max_bytes >= 4096 and log_backups >= 1, "
            f"got {settings.log_max_bytes} and {settings.log_backups}"
        )
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port must be in 1..65535, got {settings.port}")
    if bool(settings.ssl_cert_file) != bool(settings.ssl_key_file):
        raise SettingsError("HTTPS needs both ssl_cert_file and ssl_key_file (PEM files); give both or neither")
    if settings.ssl_cert_file:
        tls_context(settings)  # a certificate that cannot be used is a start-up error, not a failed handshake later
    if settings.debug_port:
        from .debugger import address

        try:
            address(settings.debug_port)
        except ValueError:
            raise SettingsError(f"AZUREML_DEBUG_PORT must be a port or host:port, got {settings.debug_port!r}") from None
    health = settings.separate_health_port
    if health is not None and not 0 < health < 65536:
        raise SettingsError(f"health_port must be in 1..65535, got {health}")
    if health == settings.port:
        raise SettingsError(f"the separate health port must differ from the scoring port {settings.port}")
    if settings.auth_enabled and not (settings.keys or settings.keys_file):
        raise SettingsError("auth_enabled is true but no key is set: give primary_key/secondary_key or keys_file")
    if settings.max_buffered_bytes < settings.max_body_bytes:
        raise SettingsError(
            f"max_buffered_bytes ({settings.max_buffered_bytes}) must be at least max_body_bytes ({settings.max_body_bytes}): "
            "a body of the largest allowed size must fit"
        )
    if settings.entry_script and not settings.entry_script.endswith(".py"):
        raise SettingsError(f"the entry script must be a .py file, got {settings.entry_script}")
