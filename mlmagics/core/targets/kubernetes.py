"""The Kubernetes target (v1's AKS): a service as a Deployment, Service, HPA, Secret and Ingress on any cluster.

    config = AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_target_utilization=30,
                                                autoscale_min_replicas=1, autoscale_max_replicas=4,
                                                context="prod", namespace="ml", ingress_host="ml.example.com")
    service = Webservice.deploy_from_image(ws, "mnist", image, config)   # image pushed: image.push(registry)
    service.wait_for_deployment(show_output=True)    # follows the rollout like `kubectl rollout status`
    service.update(image=Image(ws, id="myimage:2"))  # a rolling update; rolled back if the new version fails
    service.delete()                                 # every object it created, by label

    # No cluster? Write the manifests instead (for GitOps, or to read them):
    plan = Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration(dry_run=True))
    plan.manifest_files                              # [manifests/mnist.yaml, manifests/mnist-keys.secret.yaml]

mlmagics drives Kubernetes, it does not imitate it: the objects (`kubernetes_manifests.py`) are
applied with server-side apply (`kubernetes_cluster.py`), and a rollout's failures are read from
the pods and events the API server reports (`kubernetes_rollout.py`) — an image that cannot be
pulled, a crash loop, a failing init() or no room on any node end `wait_for_deployment()` within
a few seconds of Kubernetes knowing, with the pod's events and last log lines.

**Dry run** (`dry_run=True`, `%deploy aks NAME --dry-run`): nothing is applied and nothing is
recorded in the workspace — the result is a service object in state `DryRun` whose
`manifests`/`manifest_files` hold what a deploy would apply. The YAML goes to
`manifests_dir` (default `./manifests`): `<name>.yaml` with every object but the keys, and
`<name>-keys.secret.yaml` (mode 0600) with the keys' Secret — keep that one out of git. An image not
pushed yet is named where `image.push(registry)` will put it (`<registry>/mlmagics/<image>:<version>`,
registry= in the configuration), else under `registry.invalid/`, a placeholder that never resolves.

**Keys** live in a Secret mounted as a directory; the server re-reads `keys.json` every second, so
`regen_key()` needs no restart. The kubelet refreshes mounted Secrets on its sync loop (up to about
a minute); mlmagics annotates the pods so that they sync at once.
"""

from __future__ import annotations

import html
import ipaddress
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import progress as progress_mod
from ..configs import DeploymentConfiguration
from ..errors import ConflictError, TargetUnavailable, UserError, WebserviceException
from ..images import Image
from ..progress import Progress
from ..services import FAILED, HEALTHY, TRANSITIONING, UNHEALTHY, Webservice, new_key, swagger_uri_for
from ..workspace import Workspace, dumps, now
from . import kubernetes_manifests as manifests_mod
from .kubernetes_cluster import KubernetesCompute
from .kubernetes_rollout import HEALTHY as ROLLED_OUT
from .kubernetes_rollout import Diagnosis, diagnose

DRY_RUN = "DryRun"
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


class KubernetesWebservice(Webservice):
    """A service on a Kubernetes cluster (v1's `AksWebservice`)."""

    compute_type = "Kubernetes"
    config_class = KubernetesServiceDeploymentConfiguration
    poll_interval = 1.0

    # A dry run's result (faces show a service with `manifests` as a plan, not as a running service):
    manifests: list[dict[str, Any]] = []  # the objects a deploy or update would apply
    manifest_files: list[Path] = []  # where they were written
    applied: list[dict[str, Any]] = []  # the objects this process applied (a live deploy or update)

    @staticmethod
    def deploy_configuration(
        autoscale_enabled: bool | None = None,
        autoscale_min_replicas: int | None = None,
        autoscale_max_replicas: int | None = None,
        autoscale_refresh_seconds: int | None = None,
        autoscale_target_utilization: int | None = None,
        collect_model_data: bool | None = None,
        auth_enabled: bool | None = None,
        cpu_cores: float | None = None,
        memory_gb: float | None = None,
        enable_app_insights: bool | None = None,
        scoring_timeout_ms: int | None = None,
        replica_max_concurrent_requests: int | None = None,
        max_request_wait_time: int | None = None,
        num_replicas: int | None = None,
        primary_key: str | None = None,
        secondary_key: str | None = None,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
        gpu_cores: int | None = None,
        period_seconds: int | None = None,
        initial_delay_seconds: int | None = None,
        timeout_seconds: int | None = None,
        success_threshold: int | None = None,
        failure_threshold: int | None = None,
        namespace: str | None = None,
        token_auth_enabled: bool | None = None,
        compute_target_name: str | None = None,
        cpu_cores_limit: float | None = None,
        memory_gb_limit: float | None = None,
        blobfuse_enabled: bool | None = None,
        *,
        context: str | None = None,
        registry: str | None = None,
        image_pull_secret: str | list[str] | None = None,
        ingress_host: str | None = None,
        ingress_tls_secret: str | None = None,
        ingress_class: str | None = None,
        service_type: str | None = None,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        autoscale_metric: str | None = None,
        dry_run: bool | None = None,
        manifests_dir: str | None = None,
        network_policy: bool | list[str | dict[str, Any]] | None = None,
        model_data_claim: str | None = None,
        workers: int | None = None,
        max_request_body_mb: float | None = None,
        cors_origins: list[str] | None = None,
        server_limits: dict[str, float] | None = None,
    ) -> KubernetesServiceDeploymentConfiguration:
        """v1's parameters, names, defaults and validation (all errors in one InvalidConfiguration), then:

        - `context`: the kubeconfig context (default: the current one; v1's `compute_target_name` is read as one);
          `namespace` defaults to the context's namespace, else `default`.
        - `registry`: push the image there first if it is not pushed yet (`image.push(registry)`).
        - `image_pull_secret`: Secret name(s) for a private registry.
        - `ingress_host`, `ingress_tls_secret`, `ingress_class`: an Ingress at
          `http(s)://<host>/api/v1/service/<name>/score` (v1's URI shape); `update(ingress_host="")` removes it.
        - `service_type`: ClusterIP (default), NodePort or LoadBalancer.
        - `node_selector`, `tolerations`: where the pods may run (e.g. GPU nodes).
        - `autoscale_metric`: "cpu" (default) or "requests_in_flight" (v1's busy-replica ratio; needs the
          Prometheus Adapter) — see kubernetes_manifests.py.
        - `dry_run`, `manifests_dir`: write the manifests (default folder ./manifests) instead of applying them.
        - `network_policy` (mlmagics only): a NetworkPolicy letting traffic in only on the service's port — from
          anyone with True, or only from the sources listed: CIDRs (`"10.0.0.0/8"`) or NetworkPolicyPeer dicts
          (`{"namespaceSelector": {"matchLabels": {"team": "web"}}}`). Needs a CNI that enforces NetworkPolicies.
        - `model_data_claim` (mlmagics only): a PersistentVolumeClaim to keep collected model data on (a folder per
          pod; ReadWriteMany for more than one replica); without it the data lives in the pod and goes with it.
        - `enable_app_insights` and `blobfuse_enabled` are accepted and have no effect (Azure services);
          `/metrics` serves Prometheus metrics, and the model is inside the image.

        >>> AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_max_replicas=4).effective("cpu_cores")
        0.1
        """
        return KubernetesServiceDeploymentConfiguration(**locals())

    # -- where -------------------------------------------------------------------------------------------
    @property
    def namespace(self) -> str | None:
        return self.target.get("namespace") or self.config.namespace

    @property
    def context(self) -> str | None:
        return self.target.get("context") or self.config.effective("context")

    def _cluster(self, deployment_target: Any = None) -> KubernetesCompute:
        cached = getattr(self, "_compute", None)
        if cached is not None and deployment_target is None:
            return cached
        self._compute = _compute_for(self.config, deployment_target, self.target)
        return self._compute

    # -- deploying ---------------------------------------------------------------------------------------
    @classmethod
    def _before_deploy(
        cls,
        workspace: Workspace,
        name: str,
        image: Image,
        config: DeploymentConfiguration,
        deployment_target: Any,
        progress: Progress,
    ) -> Webservice | None:
        """A dry run ends here (nothing applied, nothing recorded); otherwise check the cluster and image first."""
        if config.effective("dry_run"):
            return cls._dry_run(workspace, name, image, config, deployment_target, progress)
        # What can fail early fails here, in one line, before a record exists: no cluster, a Deployment
        # of that name that is not this workspace's, an image the cluster cannot pull (or its push).
        cluster = _compute_for(config, deployment_target, {})
        namespace = config.namespace or cluster.namespace
        existing = cluster.read_deployment(name, namespace)
        owner = (existing.metadata.annotations or {}).get(manifests_mod.WORKSPACE_ANNOTATION) if existing else None
        if existing is not None and owner != str(workspace.path):
            raise ConflictError(
                f"a Deployment {name!r} already exists in namespace {namespace} (context {cluster.context}), "
                f"{'deployed from workspace ' + owner if owner else 'not made by mlmagics'}; choose another name or namespace"
            )
        cls._image_location(image, config, progress=progress)
        return None

    @classmethod
    def _dry_run(
        cls, workspace: Workspace, name: str, image: Image, config: Any, deployment_target: Any, progress: Progress
    ) -> KubernetesWebservice:
        namespace = config.namespace or (
            deployment_target._namespace if isinstance(deployment_target, KubernetesCompute) else None
        )
        keys = {"primary": config.primary_key or new_key(), "secondary": config.secondary_key or new_key()}
        uri = manifests_mod.scoring_uri(config, name, namespace)
        stamp = now()
        row = {
            "name": name,
            "image_id": image.id,
            "state": DRY_RUN,
            "config": dumps(config.to_dict()),
            "scoring_uri": None,
            "swagger_uri": None,
            "keys": dumps(keys),
            "description": config.description,
            "tags": dumps(config.tags or {}),
            "properties": dumps(config.properties or {}),
            "created_time": stamp,
            "updated_time": stamp,
            "error": None,
            "target": dumps({"namespace": namespace, "planned_scoring_uri": uri}),
        }
        service = cls(workspace, name, _row=row)
        progress.stage(f"Writing the manifests of {name} (dry run: nothing is applied)")
        service._plan(image, config, progress)
        return service

    def _plan(self, image: Image, config: Any, progress: Progress) -> None:
        """Write the manifests a deploy of `image` with `config` would apply (a dry run)."""
        location = self._image_location(image, config, dry_run=True, progress=progress)
        self.manifests = manifests_mod.render(config, self._spec(image, config, self.namespace, location))
        folder = Path(config.effective("manifests_dir")).expanduser().resolve()
        self.manifest_files = manifests_mod.write(self.manifests, folder, self.name)
        for path in self.manifest_files:
            progress.log(f"wrote {path}")

    def _spec(self, image: Image, config: Any, namespace: str | None, location: str) -> manifests_mod.ServiceSpec:
        return manifests_mod.ServiceSpec(
            name=self.name,
            image_location=location,
            image_id=image.id,
            entry_script=image.execution_script,
            model_ids=list(image.model_ids),
            namespace=namespace,
            keys=(self._keys["primary"], self._keys["secondary"]),
            workspace=str(self.workspace.path),
        )

    @staticmethod
    def _image_location(image: Image, config: Any, dry_run: bool = False, progress: Progress | None = None) -> str:
        """Where the cluster pulls the image from; pushes it to `config.registry` first when needed."""
        pushed = image.build_info.get("pushed")
        if pushed and (not config.registry or pushed.startswith(config.registry.split("://", 1)[-1].rstrip("/") + "/")):
            return image.image_location
        if dry_run:
            return manifests_mod.planned_location(config.registry, image.name, image.version)
        if not config.registry:
            raise UserError(_NOT_PUSHED.format(image=image.id))
        # the Docker target builds it first if needed; its end is a line of this deploy, not the end of it
        return image.push(config.registry, progress=_Step(progress) if progress is not None else None)

    def _start(self, image: Image, progress: Progress, deployment_target: Any = None) -> None:
        config = self.config
        cluster = self._cluster(deployment_target)
        namespace = config.namespace or cluster.namespace
        location = self._image_location(image, config, progress=progress)
        uri = manifests_mod.scoring_uri(config, self.name, namespace)
        self._save(
            scoring_uri=uri,
            swagger_uri=swagger_uri_for(uri),
            state=TRANSITIONING,
            error=None,
            target={"context": cluster.context, "namespace": namespace, "config_file": cluster.config_file, "image": location},
        )
        progress.log(
            f"applying to namespace {namespace} of context {cluster.context} (server-side apply, field manager mlmagics)"
        )
        self._apply(cluster, manifests_mod.render(config, self._spec(image, config, namespace, location)), progress)

    def _apply(self, cluster: KubernetesCompute, objects: list[dict[str, Any]], progress: Progress) -> None:
        """Apply `objects`, then delete this service's objects that are no longer wanted (an Ingress dropped, ...)."""
        namespace = self.namespace
        for manifest in objects:
            cluster.apply(manifest, namespace)
            progress.log(f"{manifest['kind']}/{manifest['metadata']['name']} applied")
        wanted = {(m["kind"], m["metadata"]["name"]) for m in objects}
        for kind, name in cluster.objects(self.name, namespace):
            if (kind, name) not in wanted:
                cluster.delete(kind, name, namespace)
                progress.log(f"{kind}/{name} deleted (no longer part of the service)")
        self.applied = objects

    # -- following a rollout -----------------------------------------------------------------------------
    def startup_timeout(self) -> float:
        """A bit longer than the Deployment's progress deadline, so Kubernetes reports a stuck rollout first."""
        return manifests_mod.progress_deadline(self.config) + 30.0

    def _diagnosis(self) -> Diagnosis:
        cluster = self._cluster()
        deployment, pods, events = cluster.read_rollout(self.name, self.namespace)
        if deployment is None and self.state not in (TRANSITIONING, DRY_RUN):
            found = Diagnosis(UNHEALTHY, "its Deployment is gone from the cluster; service.reload() creates it again")
        else:
            found = diagnose(deployment, pods, events)
        self._last_diagnosis = found
        return found

    def _follow_rollout(self, emit: Callable[[str], None], timeout: float) -> Diagnosis:
        """Poll until the rollout is done or fails (or `timeout`), emitting each new status line."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            found = self._diagnosis()
            if found.message != last:
                emit(found.message)
                last = found.message
            if found.kind == ROLLED_OUT or found.failed or found.kind == UNHEALTHY:
                return found
            if time.monotonic() > deadline:
                return Diagnosis(UNHEALTHY, f"not rolled out after {timeout:.0f} s: {found.message}", found.pod)
            time.sleep(self.poll_interval)

    def _explain(self, found: Diagnosis) -> str:
        """The diagnosis with the failing pod's last log lines (its previous container's after a crash)."""
        logs = ""
        if found.pod:
            cluster = self._cluster()
            logs = cluster.pod_log(found.pod, self.namespace, 20, previous=found.previous_logs)
            if not logs.strip() and found.previous_logs:
                logs = cluster.pod_log(found.pod, self.namespace, 20)
        return found.report(logs)

    def _state_of(self, found: Diagnosis) -> tuple[str, str | None]:
        if found.kind == ROLLED_OUT:
            return HEALTHY, None
        if found.failed:
            return FAILED, self._explain(found)
        if found.kind == UNHEALTHY:
            return UNHEALTHY, self._explain(found)
        return TRANSITIONING, None

    def wait_for_deployment(
        self, show_output: bool = False, timeout_sec: float | None = None, progress: progress_mod.Progress | None = None
    ) -> None:
        """Follow the rollout like `kubectl rollout status`; on failure raise WebserviceException saying which
        (ImagePullBackOff, CrashLoopBackOff, ProbeFailure, Unschedulable, ...) with the pod's events and log."""
        if self.state == DRY_RUN:
            message = f"{DRY_RUN}: nothing was deployed, nothing to wait for (manifests in {self.manifest_files[0].parent})"
            if progress is not None:
                progress.done(True, message)
            elif show_output:
                print(message)
            return
        text = show_output and progress is None
        if text:
            print(self.state, flush=True)
        emit = progress.log if progress is not None else (lambda line: print(line, flush=True)) if text else (lambda line: None)
        found = self._follow_rollout(emit, timeout_sec if timeout_sec is not None else self.startup_timeout())
        state, error = self._state_of(found)
        fields: dict[str, Any] = {"state": state, "error": error}
        if state == HEALTHY and self.config.effective("service_type") == "LoadBalancer" and not self.config.ingress_host:
            address = self._cluster().load_balancer_address(self.name, self.namespace)
            if address:
                uri = f"http://{address}{manifests_mod.PATH_PREFIX.format(name=self.name)}/score"
                fields.update(scoring_uri=uri, swagger_uri=swagger_uri_for(uri))
        self._save(**fields)
        if text:
            print(state, flush=True)
        if state != HEALTHY:
            if progress is not None:
                progress.done(False, f"{found.kind}: {found.message}")
            raise WebserviceException(
                f"Service deployment polling reached non-successful terminal state, current service state: {state}\n"
                f"Error: {error}"
            )
        if text:
            print('AKS service creation operation finished, operation "Succeeded"')
        if progress is not None:
            progress.done(True, f"{self.name} is Healthy at {self.scoring_uri}")

    # -- hooks ---------------------------------------------------------------------------------------------
    def _probe(self) -> tuple[str, str | None]:
        if self.state == DRY_RUN:
            return DRY_RUN, None
        try:
            return self._state_of(self._diagnosis())
        except TargetUnavailable as e:  # the cluster is out of reach from here: say so, keep the last known state
            return self.state, e.message

    def update(self, image: Image | None = None, **settings: Any) -> None:
        """A rolling update to `image` and/or settings; the old pods serve until the new ones are ready, and a
        new version that fails is rolled back (WebserviceException says why). `dry_run=True` writes the
        manifests of the update instead."""
        if settings.get("dry_run") or self.state == DRY_RUN:
            report = progress_mod.resolve(settings.pop("progress", None), settings.pop("show_output", False))
            report.stage(f"Writing the manifests of the update of {self.name} (dry run: nothing is applied)")
            self._plan(image or self.image, self.config.merged(**settings), report)
            report.done(True, f"{len(self.manifests)} objects written to {self.manifest_files[0].parent}")
            return
        super().update(image, **settings)

    def _update(self, image: Image, config: DeploymentConfiguration, progress: Progress) -> None:
        cluster = self._cluster()
        moved = config.namespace and config.namespace != self.namespace
        if moved or config.effective("context") != self.config.effective("context"):
            raise UserError("a service keeps its cluster and namespace on update; delete it and deploy again to move it")
        previous = manifests_mod.render(self.config, self._spec(self.image, self.config, self.namespace, self.target["image"]))
        location = self._image_location(image, config, progress=progress)
        self._apply(cluster, manifests_mod.render(config, self._spec(image, config, self.namespace, location)), progress)
        found = self._follow_rollout(progress.log, manifests_mod.progress_deadline(config) + 30.0)
        if found.kind != ROLLED_OUT:
            explained = self._explain(found)
            progress.log(f"rolling back to {self.image_id}")
            self._apply(cluster, previous, progress)
            raise WebserviceException(
                f"update of {self.name} to {image.id} failed and was rolled back; {self.image_id} keeps serving.\n{explained}"
            )
        uri = manifests_mod.scoring_uri(config, self.name, self.namespace)
        self._save(target={**self.target, "image": location}, scoring_uri=uri, swagger_uri=swagger_uri_for(uri))

    def _stop(self) -> None:
        if self.state == DRY_RUN:
            return
        cluster = self._cluster()
        for kind, name in cluster.objects(self.name, self.namespace):
            cluster.delete(kind, name, self.namespace)

    def delete(
        self,
        delete_collected_data: bool = False,
        progress: Progress | None = None,
        show_output: bool = False,
        forget: bool = False,
    ) -> None:
        """Delete every object of the service from the cluster (by label), then its record.

        `forget=True` removes the record even when the cluster cannot be reached any more (its objects, if the
        cluster still exists, stay). Collected data lives in the pods (and goes with them) unless
        `model_data_claim` keeps it; that claim is not mlmagics's, so its data stays and this says where —
        `delete_collected_data=True` is refused for it rather than deleting someone's volume."""
        if self.state == DRY_RUN:
            raise UserError(f"{self.name} is a dry run: nothing was deployed or recorded; delete the files in its manifests_dir")
        if delete_collected_data and self.config.model_data_claim:
            raise UserError(
                f"the data {self.name} collected is on the PersistentVolumeClaim {self.config.model_data_claim}, which "
                "mlmagics did not create and other services may share: delete the service without "
                "delete_collected_data, then its folders (one per pod) or the claim with kubectl"
            )
        try:
            super().delete(delete_collected_data, progress, show_output)
        except TargetUnavailable:
            if not forget:
                raise
            with self.workspace.transaction() as db:
                db.execute("DELETE FROM services WHERE name=?", (self.name,))

    def _collected_data_location(self) -> str | None:
        claim = self.config.model_data_claim
        if not claim:  # in the pods' emptyDirs: gone with them
            return None
        return f"the PersistentVolumeClaim {claim} in namespace {self.namespace or 'default'} (a folder per pod)"

    def deleted_summary(self, remove_hint: str = "") -> str:
        return super().deleted_summary("kubectl, on the claim mlmagics did not create,")

    def _logs(self, num_lines: int) -> str:
        if self.state == DRY_RUN:
            return ""
        cluster = self._cluster()
        found = getattr(self, "_last_diagnosis", None)
        if found is not None and found.failed and found.pod:
            return cluster.pod_log(found.pod, self.namespace, num_lines, previous=found.previous_logs) or cluster.pod_log(
                found.pod, self.namespace, num_lines
            )
        pods = sorted(cluster.pods(self.name, self.namespace), key=lambda p: p.metadata.name)
        if len(pods) == 1:
            return cluster.pod_log(pods[0].metadata.name, self.namespace, num_lines)
        return "\n".join(
            f"==> pod/{p.metadata.name} <==\n{cluster.pod_log(p.metadata.name, self.namespace, num_lines)}" for p in pods
        )

    def _keys_changed(self) -> None:
        if self.state == DRY_RUN or not self.auth_enabled:
            return
        cluster = self._cluster()
        secret = manifests_mod.keys_secret(self._spec(self.image, self.config, self.namespace, self.target.get("image", "")))
        cluster.apply(secret, self.namespace)
        # The kubelet refreshes a mounted Secret when it syncs the pod; a pod update makes it sync now.
        for pod in cluster.pods(self.name, self.namespace):
            cluster.annotate_pod(pod.metadata.name, self.namespace, {"mlmagics.io/keys-updated": now()})

    # -- showing -------------------------------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        data = super().serialize()
        data.update(namespace=self.namespace, context=self.context)
        if self.state == DRY_RUN:
            data.update(manifests=[str(p) for p in self.manifest_files], plannedScoringUri=self.target.get("planned_scoring_uri"))
        return data

    def _repr_html_(self) -> str | None:
        if self.state != DRY_RUN:
            return None
        files = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in self.manifest_files)
        kinds = ", ".join(f"{m['kind']}/{m['metadata']['name']}" for m in self.manifests)
        yaml_text = html.escape(manifests_mod.to_yaml(self.manifests, redact_secrets=True))
        return (
            f"<div><b>Dry run of {html.escape(self.name)}</b>: nothing was applied. {html.escape(kinds)}"
            f"<ul>{files}</ul><details><summary>manifests (Secret data hidden)</summary><pre>{yaml_text}</pre></details></div>"
        )


AksWebservice = KubernetesWebservice


class _Step:
    """Reports a nested operation (a push) into the deploy's progress: its `done` is one more line."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def stage(self, name: str, total: int | None = None) -> None:
        self.progress.log(name)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)

    def log(self, line: str) -> None:
        self.progress.log(line)

    def done(self, ok: bool, message: str = "") -> None:
        self.progress.log(message)


_NOT_PUSHED = (
    "image {image} is not in a registry the cluster can pull from: push it first (image.push('registry.example.com/team')) "
    "or pass registry=... in the deploy configuration"
)


def _compute_for(config: Any, deployment_target: Any, recorded: dict[str, Any]) -> KubernetesCompute:
    """The cluster: the recorded one (an existing service), else the deployment target, else the configuration's context."""
    if recorded.get("context"):
        return KubernetesCompute(recorded["context"], recorded.get("namespace"), recorded.get("config_file"))
    if deployment_target is not None:
        if not isinstance(deployment_target, KubernetesCompute):
            raise UserError("deployment_target must be a cluster: KubernetesCompute.attach(context=...)")
        return deployment_target
    return KubernetesCompute(config.effective("context"), config.namespace)
