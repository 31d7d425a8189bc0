"""Command-line arguments shared by the CLI and the magics, so `mlmagics service deploy` and
`%deploy` accept the same flags and mean the same v1 parameters by them. The targets' names, aliases
and default are the core's (its registry), so a face never lists them itself.

    parser = argparse.ArgumentParser()
    add_deploy_options(parser)
    deploy_settings(parser.parse_args([... "--cpu", "1", "--autoscale", "1:4"]))
    # {'cpu_cores': 1.0, 'autoscale_enabled': True, 'autoscale_min_replicas': 1, 'autoscale_max_replicas': 4}
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mlmagics.core import Webservice, default_target, target_class, target_names
from mlmagics.core.errors import UserError


# -- targets ----------------------------------------------------------------------------------------------
def targets() -> list[tuple[str, tuple[str, ...], str]]:
    """The core's targets as users name them, the default first: (name, aliases, description), e.g.
    [('local', (), 'A service running on this machine'), ('docker', ('aci',), 'A service in a container on ...'), ...]."""
    classes = dict.fromkeys(target_class(name) for name in target_names())  # each target once, in the registry's order
    listed = [(*_names(cls), cls.target_description) for cls in classes]
    default = default_target_name()
    return sorted(listed, key=lambda target: target[0] != default)


def _names(cls: type[Webservice]) -> tuple[str, tuple[str, ...]]:
    """A target's name (its compute type, lowercase) and its other names: ('docker', ('aci',))."""
    name = cls.compute_type.lower()
    return name, tuple(n for n in cls.names if n != name)


def default_target_name() -> str | None:
    """Where a deploy that names no target goes: the core's `default_target()` ($MLMAGICS_DEFAULT_TARGET, else
    local). None when $MLMAGICS_DEFAULT_TARGET names no target; such a deploy then says so."""
    try:
        return default_target().compute_type.lower()
    except UserError:
        return None


def target_choices() -> list[str]:
    """Every name a target answers to, for `choices=`: ['local', 'docker', 'aci', 'kubernetes', 'aks']."""
    return [n for name, aliases, _ in targets() for n in (name, *aliases)]


def target_label(name: str) -> str:
    """'docker (aci)', for 'docker' or 'aci': a target's name and what else it is called."""
    main, aliases = _names(target_class(name))
    return f"{main} ({', '.join(aliases)})" if aliases else main


def target_help() -> str:
    """'local, docker (aci), kubernetes (aks)': the targets for a help text, the default first."""
    return ", ".join(target_label(name) for name, _, _ in targets())


# -- values -----------------------------------------------------------------------------------------------
def key_values(items: list[str] | None, what: str = "tag") -> dict[str, str]:
    """['k=v', ...] -> {'k': 'v'}; a missing '=' is a one-line error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} {item!r} must look like key=value")
        out[key] = value
    return out


def autoscale_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit():
        raise argparse.ArgumentTypeError(f"--autoscale takes MIN:MAX replicas, e.g. 1:4 (got {text!r})")
    return int(low), int(high)


def positive_int(flag: str) -> Callable[[str], int]:
    """A `type=` for a flag that counts something: anything but 1, 2, 3 ... is an error naming the flag."""

    def count(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{flag} takes a positive integer, got {text!r}")
        return int(text)

    return count


# -- option groups ----------------------------------------------------------------------------------------
def add_source_options(parser: argparse.ArgumentParser) -> None:
    """What to deploy: an image, or models + a script (an image is created for you)."""
    parser.add_argument("--image", help="image id NAME:VERSION (or NAME for its latest version)")
    parser.add_argument("--model", action="append", help="model NAME[:VERSION] (repeatable); with --script")
    parser.add_argument("--script", help="scoring script (init() + run()); with --model")
    parser.add_argument("--requirements", help="pip requirements file for the image")
    parser.add_argument("--conda-file", help="conda environment file for the image")
    parser.add_argument("--runtime", choices=["python", "spark-py"], default="python")


def add_deploy_options(parser: argparse.ArgumentParser) -> None:
    """Every target's settings, with v1's parameter names behind them (a target rejects what it lacks)."""
    shared = parser.add_argument_group("service settings (all targets)")
    auth = shared.add_mutually_exclusive_group()
    auth.add_argument("--auth", dest="auth_enabled", action="store_true", default=None, help="require a key")
    auth.add_argument("--no-auth", dest="auth_enabled", action="store_false", help="no key needed")
    shared.add_argument("--timeout-ms", type=int, dest="scoring_timeout_ms", help="scoring_timeout_ms (default 60000)")
    shared.add_argument(
        "--concurrency", type=int, dest="replica_max_concurrent_requests", help="replica_max_concurrent_requests (default 1)"
    )
    shared.add_argument("--max-wait-ms", type=int, dest="max_request_wait_time", help="max_request_wait_time (default 500)")
    shared.add_argument("--workers", type=int, help="worker processes per replica (default: --concurrency)")
    shared.add_argument(
        "--collect-data",
        dest="collect_model_data",
        action="store_true",
        default=None,
        help="collect_model_data: ModelDataCollector records inputs and predictions",
    )
    shared.add_argument("--cors", action="append", dest="cors_origins", help="allowed CORS origin (repeatable)")
    shared.add_argument("--max-batch-size", type=int, dest="max_batch_size",
                        help="adaptive batching: rows of concurrent requests in one run() call (default: off)")
    shared.add_argument("--max-batch-latency-ms", type=float, dest="max_batch_latency_ms",
                        help="adaptive batching: the longest a request waits to share a call (default 10)")  # fmt: skip
    shared.add_argument("--tag", action="append", help="key=value (repeatable)")
    shared.add_argument("--description")
    local = parser.add_argument_group(target_label("local"))
    local.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    container = parser.add_argument_group(f"{target_label('docker')}, {target_label('kubernetes')}")
    container.add_argument("--cpu", type=float, dest="cpu_cores", help="cpu_cores")
    container.add_argument("--memory", type=float, dest="memory_gb", help="memory_gb")
    tls = parser.add_argument_group(f"{target_label('docker')}: HTTPS (ssl_enabled, all three together)")
    tls.add_argument("--ssl-cert", dest="ssl_cert_pem_file", help="PEM certificate the service presents")
    tls.add_argument("--ssl-key", dest="ssl_key_pem_file", help="its PEM private key")
    tls.add_argument("--ssl-cname", dest="ssl_cname", help="the name in the certificate: the scoring URI's host")
    cluster = parser.add_argument_group(target_label("kubernetes"))
    cluster.add_argument("--replicas", type=int, dest="num_replicas", help="num_replicas (turns autoscale off)")
    cluster.add_argument("--autoscale", type=autoscale_range, metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    cluster.add_argument(
        "--target-utilization",
        type=int,
        dest="autoscale_target_utilization",
        help="autoscale_target_utilization in percent (default 70)",
    )
    cluster.add_argument("--namespace", help="Kubernetes namespace")
    cluster.add_argument("--context", help="kubeconfig context")
    cluster.add_argument("--dry-run", action="store_true", help="write the manifests instead of applying them")


def add_update_options(parser: argparse.ArgumentParser) -> None:
    """What `update` takes: the service, an image to move it to, and any deploy setting but the port."""
    parser.add_argument("name", help="the service")
    parser.add_argument("--image", help="image id NAME:VERSION (or NAME for its latest version)")
    add_deploy_options(parser)


_SETTINGS = (
    "auth_enabled",
    "scoring_timeout_ms",
    "replica_max_concurrent_requests",
    "max_request_wait_time",
    "workers",
    "collect_model_data",
    "cors_origins",
    "max_batch_size",
    "max_batch_latency_ms",
    "description",
    "port",
    "cpu_cores",
    "memory_gb",
    "ssl_cert_pem_file",
    "ssl_key_pem_file",
    "ssl_cname",
    "num_replicas",
    "autoscale_target_utilization",
    "namespace",
    "context",
)


def deploy_request(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for `mlmagics.core.deploy.deploy(ws, name, ...)` from parsed source and deploy flags
    (no target: the core picks its default)."""
    return {
        "target": args.target,
        "image": args.image,
        "models": args.model,
        "script": args.script,
        "requirements": args.requirements,
        "conda_file": args.conda_file,
        "runtime": args.runtime,
        "wait": not args.no_wait,
        "update": getattr(args, "update", False),
        **deploy_settings(args),
    }


def deploy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The v1 keyword arguments the parsed flags stand for (flags not given are left out)."""
    settings = {name: getattr(args, name, None) for name in _SETTINGS}
    if getattr(args, "tag", None):
        settings["tags"] = key_values(args.tag)
    if getattr(args, "autoscale", None):
        settings["autoscale_enabled"] = True
        settings["autoscale_min_replicas"], settings["autoscale_max_replicas"] = args.autoscale
    if getattr(args, "dry_run", False):
        settings["dry_run"] = True
    if any(settings[name] for name in ("ssl_cert_pem_file", "ssl_key_pem_file", "ssl_cname")):
        settings["ssl_enabled"] = True  # v1's validation then asks for the missing ones
    return {k: v for k, v in settings.items() if v is not None}


def update_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`deploy_settings` for `Webservice.update`: a service keeps its port."""
    return {k: v for k, v in deploy_settings(args).items() if k != "port"}
