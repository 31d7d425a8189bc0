"""The Kubernetes target's deploy configuration: v1's `AksWebservice.deploy_configuration` parameters,
defaults and validation messages, plus mlmagics's own (namespace, ingress, network policy, ...)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any

from ...configs import DeploymentConfiguration

NAMESPACE_REGEX = "^[a-z0-9]([a-z0-9-]{,61}[a-z0-9])?$"  # v1's _constants.NAMESPACE_REGEX
HOST_REGEX = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
AUTOSCALE_METRICS = ("cpu", "requests_in_flight")
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}  # a NetworkPolicyPeer's fields
NAME_REGEX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a Kubernetes object name (DNS subdomain)


@dataclass
class KubernetesServiceDeploymentConfiguration(DeploymentConfiguration):
    """v1's `AksServiceDeploymentConfiguration` (every v1 parameter), plus what a cluster user needs."""

    autoscale_enabled: bool | None = None
    autoscale_min_replicas: int | None = None
    autoscale_max_replicas: int | None = None
    autoscale_refresh_seconds: int | None = None
    autoscale_target_utilization: int | None = None
    cpu_cores: float | None = None
    memory_gb: float | None = None
    enable_app_insights: bool | None = None
    num_replicas: int | None = None
    gpu_cores: int | None = None
    period_seconds: int | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    namespace: str | None = None
    token_auth_enabled: bool | None = None
    compute_target_name: str | None = None
    cpu_cores_limit: float | None = None
    memory_gb_limit: float | None = None
    blobfuse_enabled: bool | None = None
    # beyond v1
    context: str | None = None
    registry: str | None = None
    image_pull_secret: str | list[str] | None = None
    ingress_host: str | None = None
    ingress_tls_secret: str | None = None
    ingress_class: str | None = None
    service_type: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    autoscale_metric: str | None = None
    dry_run: bool | None = None
    manifests_dir: str | None = None
    network_policy: bool | list[str | dict[str, Any]] | None = None
    model_data_claim: str | None = None

    compute_type = "Kubernetes"
    defaults = {
        **DeploymentConfiguration.defaults,
        "auth_enabled": True,
        "autoscale_min_replicas": 1,
        "autoscale_max_replicas": 10,
        "autoscale_refresh_seconds": 1,
        "autoscale_target_utilization": 70,
        "cpu_cores": 0.1,
        "memory_gb": 0.5,
        "enable_app_insights": False,
        "gpu_cores": 0,
        "period_seconds": 10,
        "initial_delay_seconds": 310,
        "timeout_seconds": 2,
        "success_threshold": 1,
        "failure_threshold": 3,
        "token_auth_enabled": False,
        "blobfuse_enabled": True,
        "service_type": "ClusterIP",
        "autoscale_metric": "cpu",
        "dry_run": False,
        "manifests_dir": "manifests",
    }
    # v1 (1.61): "Invalid configuration, <name> must be greater than zero." for each of these when set
    positive = (
        "cpu_cores",
        "memory_gb",
        "period_seconds",
        "initial_delay_seconds",
        "timeout_seconds",
        "success_threshold",
        "failure_threshold",
        *DeploymentConfiguration.positive,
        "num_replicas",
    )

    def effective(self, name: str) -> Any:
        if name == "autoscale_enabled" and self.autoscale_enabled is None:
            return self.num_replicas is None  # v1: "Defaults to True if num_replicas is None"
        if name == "context" and self.context is None:
            return self.compute_target_name
        return super().effective(name)

    def validation_errors(self) -> list[str]:
        """v1's `validate_configuration` rule for rule (1.61, with its messages), then the settings v1 did not have."""
        errors = super().validation_errors()
        # v1 compares a limit with the request only when the request is given; the default request counts here
        # too, since the API server would refuse a limit below it anyway.
        for limit, request in (("cpu_cores_limit", "cpu_cores"), ("memory_gb_limit", "memory_gb")):
            value, wanted = getattr(self, limit), self.effective(request)
            if value is not None and not _number(value):
                errors.append(f"{limit} must be a number, got {value!r}")
            elif value is not None and _number(wanted) and value < wanted:
                errors.append(f"{limit} must be greater than or equal to {request}.")
        if self.gpu_cores is not None:
            if not isinstance(self.gpu_cores, int) or isinstance(self.gpu_cores, bool):
                errors.append(f"gpu_cores must be a whole number of GPUs on Kubernetes, got {self.gpu_cores!r}")
            elif self.gpu_cores < 0:
                errors.append("gpu_cores must be greater than or equal to zero.")
        if self.namespace and (not isinstance(self.namespace, str) or not re.match(NAMESPACE_REGEX, self.namespace)):
            errors.append(f"namespace must be a valid Kubernetes namespace. Regex for validation is {NAMESPACE_REGEX}")
        errors += self._autoscale_errors()
        if self.token_auth_enabled and self.auth_enabled:
            errors.append("auth_enabled and token_auth_enabled cannot both be true.")
        elif self.token_auth_enabled:
            errors.append(
                "token_auth_enabled (Azure AD tokens) has no counterpart outside Azure; use key auth (auth_enabled=True)"
            )
        return errors + self._cluster_errors()

    def _autoscale_errors(self) -> list[str]:
        errors = []
        scale = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds", "autoscale_target_utilization")
        for name in scale:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                return [f"{name} must be a number, got {value!r}"]
        if self.autoscale_enabled:
            if self.num_replicas:
                errors.append("autoscale enabled and num_replicas provided.")
            for name in ("autoscale_min_replicas", "autoscale_max_replicas"):
                if getattr(self, name) is not None and getattr(self, name) <= 0:
                    errors.append(f"{name} must be greater than zero.")
            low, high = self.autoscale_min_replicas, self.autoscale_max_replicas
            if low and high and low > high:
                errors.append("autoscale_min_replicas cannot be greater than autoscale_max_replicas.")
            for name in ("autoscale_refresh_seconds", "autoscale_target_utilization"):
                if getattr(self, name) is not None and getattr(self, name) <= 0:
                    errors.append(f"{name} must be greater than zero.")
        else:
            if self.autoscale_enabled is False and not self.num_replicas:
                errors.append("autoscale disabled but num_replicas not provided.")
            # v1 checks the raw value: with autoscale_enabled left None, any autoscale_* value is refused too
            errors += [f"{name} provided without enabling autoscaling." for name in scale if getattr(self, name)]
        return errors

    def _cluster_errors(self) -> list[str]:
        errors = []
        for name in ("context", "registry", "compute_target_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                errors.append(f"{name} must be a non-empty string, got {value!r}")
        for name in ("ingress_class", "ingress_tls_secret"):  # "" removes it on update (None keeps it, as in v1)
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                errors.append(f"{name} must be a string, got {getattr(self, name)!r}")
        secrets = self.image_pull_secret
        if secrets is not None and not (
            isinstance(secrets, str) or (isinstance(secrets, list) and all(isinstance(s, str) and s for s in secrets))
        ):
            errors.append("image_pull_secret must be a Secret name or a list of them")
        host = self.ingress_host
        if host is not None and (not isinstance(host, str) or host and not HOST_REGEX.match(host)):
            errors.append(f"ingress_host must be a DNS name such as 'ml.example.com', got {self.ingress_host!r}")
        if self.ingress_tls_secret and not self.ingress_host:
            errors.append("ingress_tls_secret needs ingress_host (the name the certificate is for)")
        if self.service_type is not None and self.service_type not in SERVICE_TYPES:
            errors.append(f"service_type must be one of {', '.join(SERVICE_TYPES)}, got {self.service_type!r}")
        if self.autoscale_metric is not None and self.autoscale_metric not in AUTOSCALE_METRICS:
            errors.append(f"autoscale_metric must be one of {', '.join(AUTOSCALE_METRICS)}, got {self.autoscale_metric!r}")
        if self.node_selector is not None and not (
            isinstance(self.node_selector, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.node_selector.items())
        ):
            errors.append("node_selector must be a dict of label to value, e.g. {'agentpool': 'gpu'}")
        if self.tolerations is not None and not (
            isinstance(self.tolerations, list)
            and all(isinstance(t, dict) and set(t) <= TOLERATION_KEYS for t in self.tolerations)
        ):
            errors.append(f"tolerations must be a list of dicts with the keys {', '.join(sorted(TOLERATION_KEYS))}")
        if self.manifests_dir is not None and not isinstance(self.manifests_dir, str | os.PathLike):
            errors.append(f"manifests_dir must be a folder path, got {self.manifests_dir!r}")
        errors += _network_policy_errors(self.network_policy)
        claim = self.model_data_claim  # "" removes it on update (None keeps it)
        if claim is not None and not (isinstance(claim, str) and (not claim or NAME_REGEX.match(claim))):
            errors.append(f"model_data_claim must name a PersistentVolumeClaim such as 'model-data', got {claim!r}")
        return errors


def _network_policy_errors(policy: Any) -> list[str]:
    """network_policy: True (anyone may reach the port), False (no policy), or a list of sources: CIDRs or
    NetworkPolicyPeer dicts."""
    if policy is None or isinstance(policy, bool):
        return []
    if isinstance(policy, list) and policy:
        bad = []
        for peer in policy:
            if isinstance(peer, str):
                try:
                    ipaddress.ip_network(peer, strict=False)
                except ValueError:
                    bad.append(peer)
            elif not (isinstance(peer, dict) and peer and set(peer) <= PEER_KEYS):
                bad.append(peer)
        if not bad:
            return []
        return [f"network_policy sources must be CIDRs such as '10.0.0.0/8' or dicts with {', '.join(sorted(PEER_KEYS))}, "
                f"got {', '.join(map(repr, bad))}"]  # fmt: skip
    return [
        "network_policy must be True (ingress from anyone, on the service's port only), False, or a non-empty list of "
        f"sources (CIDRs or NetworkPolicyPeer dicts), got {policy!r}"
    ]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


AksServiceDeploymentConfiguration = KubernetesServiceDeploymentConfiguration
