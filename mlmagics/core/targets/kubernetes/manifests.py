"""The Kubernetes objects of a service, generated from its deploy configuration (plain dicts).

    manifests = render(config, ServiceSpec(name="mnist", image_location="registry.local/myimage:2", ...))
    print(to_yaml(manifests))            # what `kubectl apply -f` (or a GitOps tool) takes

| object | when | what it carries |
| --- | --- | --- |
| Secret `<name>-keys` | auth_enabled | the keys as `keys.json`, mounted read-only; re-read by the server (no restart) |
| Deployment `<name>` | always | the server: requests/limits, probes on its routes, env, non-root, rolling updates |
| Service `<name>` | always | port 80 -> the container's port `http` (5001) |
| HorizontalPodAutoscaler `<name>` | autoscale | autoscaling/v2, min/max replicas, target utilization (see below) |
| PodDisruptionBudget `<name>` | more than one replica | at most one replica down during node drains |
| Ingress `<name>` | ingress_host | `http(s)://<host>/api/v1/service/<name>/score` (v1's URI shape), TLS when ingress_tls_secret |
| NetworkPolicy `<name>` | network_policy | traffic in only on the service's port, from anyone or from the sources given |

Every object carries the labels `app.kubernetes.io/managed-by: mlmagics` and `mlmagics.io/service: <name>`:
`delete()` removes by that selector, and nothing else matches it.

**Autoscaling and v1's "utilization".** v1 measured utilization as busy replicas / replicas, a
replica being busy while it runs `replica_max_concurrent_requests` requests. Kubernetes has no such
signal built in, so `autoscale_metric` chooses:

- `"cpu"` (default; any cluster with metrics-server): CPU usage as a percentage of the CPU *request*
  (`cpu_cores`). It equals v1's notion when a request keeps one replica's requested CPU busy, i.e.
  when `cpu_cores` is what one `run()` uses; with a smaller request the HPA scales out earlier.
- `"requests_in_flight"` (needs Prometheus and the Prometheus Adapter): the runtime's gauge
  `mlmagics_requests_in_flight` (scraped from `/metrics` on the pods' health port 5000, which needs no key
  while the scoring port's does; the pods carry `prometheus.io/*`
  annotations) as a Pods metric, with target `utilization × replica_max_concurrent_requests` per pod —
  exactly v1's busy-replica ratio.

v1 scaled up within about a second and down after about a minute: the HPA scales up without a
stabilization window and down after 60 s. `autoscale_refresh_seconds` has no per-HPA equivalent
(the controller's sync period is a cluster flag, 15 s by default); it is recorded as an annotation.

**A read-only root filesystem.** The server runs as the image's non-root user with no capabilities,
no privilege escalation, the runtime's seccomp profile and `readOnlyRootFilesystem`. What it may
write has a bounded emptyDir: `/tmp` (HOME and TMPDIR point there) and the script's working folder,
`/var/azureml-app`, which an init container fills with a copy of the image's app folder (a v1 script
may write next to itself; the models are a link into the image, not copied).

**Collected model data** (`collect_model_data`) goes to `/tmp/model-data`, an emptyDir: it is lost
with the pod. `model_data_claim="<pvc>"` keeps it on that PersistentVolumeClaim instead, in a folder
per pod (`<claim>/<pod name>/...`), so replicas never write the same file; with more than one replica
the claim must allow ReadWriteMany. Deleting the service leaves the claim and its data alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlmagics.serving.settings import ENVIRONMENT

from ..container import APP, DATA_DIR, HEALTH_PORT, PORT, UID, image_repo
from .config import KubernetesServiceDeploymentConfiguration

MANAGED_BY = "mlmagics"
FIELD_MANAGER = "mlmagics"
SERVICE_LABEL = "mlmagics.io/service"
TEMPLATE_HASH_LABEL = "mlmagics.io/template-hash"
WORKSPACE_ANNOTATION = "mlmagics.io/workspace-path"
CONTAINER = "scoring"
# v1's URI shape: http://<host>/api/v1/service/<name>/score (the runtime strips this prefix)
PATH_PREFIX = "/api/v1/service/{name}"
IN_FLIGHT_METRIC = "mlmagics_requests_in_flight"
# Where an image has not been pushed yet, a dry run names it under this reserved, never-resolving host.
PLACEHOLDER_REGISTRY = "registry.invalid"
# The writable places of a read-only pod are emptyDirs on the node's disk, bounded: the kubelet evicts a pod
# that writes past a sizeLimit instead of letting it fill the node.
SCRATCH_SIZE_LIMIT = "2Gi"  # /tmp: temporary files, and collected model data without a claim (capped at 1 GiB by default)
APP_SIZE_LIMIT = "1Gi"  # the working folder: the app (the models are not copied) and what the script writes there
# The init container's copy of the image's app folder into the working folder's emptyDir. Into a folder of its
# own (mounted by subPath): the emptyDir's root belongs to root, whose mode copytree could not copy.
COPY_APP = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], symlinks=True)"


def planned_location(registry: str | None, image_name: str, version: int) -> str:
    """Where `image.push(registry)` will put an image (the Docker target's push naming); a placeholder without a registry."""

    host = (registry or PLACEHOLDER_REGISTRY).split("://", 1)[-1].strip().rstrip("/")
    return f"{host}/{image_repo()}/{image_name}:{version}"


@dataclass(frozen=True)
class ContainerLayout:
    """Where things are inside the service's container image, as the Docker target builds it
    (container.py: v1's /var/azureml-app and port 5001, a non-root user, `python` on the PATH)."""

    app_root: str = APP
    port: int = PORT
    health_port: int = HEALTH_PORT  # probes and Prometheus, never exposed by the Service
    python: str = "python"
    keys_dir: str = "/var/mlmagics/keys"  # a folder: Secret volumes update in place only when not mounted by subPath
    scratch_dir: str = "/tmp"  # an emptyDir: temporary files, the runtime's metrics files, collected model data
    data_dir: str = DATA_DIR  # where model_data_claim is mounted
    app_copy_dir: str = "/mlmagics/app-copy"  # where the init container sees the working folder's emptyDir
    user: int = UID  # runAsUser/runAsGroup/fsGroup: the image's own user, who owns the app folder

    def model_dir(self, model_ids: list[str]) -> str:
        """AZUREML_MODEL_DIR: the model's version folder for one model (as later v1 SDKs set it), else all models."""
        if len(model_ids) == 1:
            name, _, version = model_ids[0].partition(":")
            return f"{self.app_root}/azureml-models/{name}/{version}"
        return f"{self.app_root}/azureml-models"


LAYOUT = ContainerLayout()


@dataclass
class ServiceSpec:
    """What the manifests need besides the configuration: the service, its image and its keys."""

    name: str
    image_location: str
    image_id: str = ""
    entry_script: str = "score.py"
    model_ids: list[str] = field(default_factory=list)
    environment_variables: dict[str, str] = field(default_factory=dict)  # the script's own (v1's Environment)
    namespace: str | None = None
    keys: tuple[str, str] | None = None
    workspace: str = ""  # the workspace folder, recorded as an annotation
    layout: ContainerLayout = LAYOUT


def labels(name: str, image_id: str = "") -> dict[str, str]:
    """The labels of every object of service `name` (selectors use only `mlmagics.io/service`)."""
    out = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "scoring-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SERVICE_LABEL: name,
    }
    if image_id:
        image_name, _, version = image_id.partition(":")
        out["app.kubernetes.io/version"] = version
        out["mlmagics.io/image"] = _label_value(f"{image_name}-{version}")
    return out


def selector(name: str) -> str:
    """The label selector that finds every object of service `name` (and nothing else)."""
    return f"{SERVICE_LABEL}={name},app.kubernetes.io/managed-by={MANAGED_BY}"


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return value.strip("-_.") or "x"


def cpu_quantity(cores: float) -> str:
    """0.1 -> '100m', 2 -> '2'."""
    millis = round(float(cores) * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(gb: float) -> str:
    """v1's GB as binary units: 0.5 -> '512Mi', 2 -> '2Gi'."""
    mib = round(float(gb) * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def scoring_uri(config: KubernetesServiceDeploymentConfiguration, name: str, namespace: str | None) -> str:
    """Where clients send requests: the Ingress host when there is one, else the Service's cluster DNS name."""
    path = PATH_PREFIX.format(name=name) + "/score"
    if config.ingress_host:
        scheme = "https" if config.ingress_tls_secret else "http"
        return f"{scheme}://{config.ingress_host}{path}"
    return f"http://{name}.{namespace or 'default'}.svc.cluster.local{path}"


def replicas(config: KubernetesServiceDeploymentConfiguration) -> int:
    """How many replicas run at least (autoscale: the minimum)."""
    if config.effective("autoscale_enabled"):
        return int(config.effective("autoscale_min_replicas"))
    return int(config.num_replicas or 1)


def env_for(settings: dict[str, Any]) -> list[dict[str, str]]:
    """The runtime's settings as the environment variables it reads (serving/settings.py is the one list)."""

    variable: dict[str, str] = {}
    for env_name, field_name in ENVIRONMENT.items():
        variable.setdefault(field_name, env_name)
    out = []
    for key, value in settings.items():
        if key not in variable:
            raise ValueError(f"the scoring runtime has no setting {key!r}")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True)
        elif isinstance(value, list | tuple):
            text = ",".join(map(str, value))
        else:
            text = str(value)
        out.append({"name": variable[key], "value": text})
    return out


def render(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> list[dict[str, Any]]:
    """Every object of the service, in the order they are applied (the Secret before the pods that mount it)."""
    out = []
    auth = bool(config.effective("auth_enabled"))
    if auth:
        out.append(keys_secret(spec))
    out.append(deployment(config, spec))
    out.append(service(config, spec))
    if config.effective("autoscale_enabled"):
        out.append(autoscaler(config, spec))
    if replicas(config) > 1:
        out.append(disruption_budget(spec))
    if config.ingress_host:
        out.append(ingress(config, spec))
    if config.network_policy:
        out.append(network_policy(config, spec))
    return out


def _metadata(spec: ServiceSpec, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    meta["labels"] = labels(spec.name, spec.image_id)
    if annotations:
        meta["annotations"] = annotations
    return meta


def keys_secret(spec: ServiceSpec) -> dict[str, Any]:
    primary, secondary = spec.keys or ("", "")
    payload = json.dumps({"primary_key": primary, "secondary_key": secondary}).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(spec, f"{spec.name}-keys"),
        "type": "Opaque",
        "data": {"keys.json": base64.b64encode(payload).decode()},
    }


def _annotations(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, str]:
    out = {"mlmagics.io/image-id": spec.image_id, "mlmagics.io/models": ",".join(spec.model_ids)}
    if spec.workspace:
        out[WORKSPACE_ANNOTATION] = spec.workspace
    if config.description:
        out["mlmagics.io/description"] = config.description
    if config.tags:
        out["mlmagics.io/tags"] = json.dumps(config.tags, sort_keys=True)
    if config.properties:
        out["mlmagics.io/properties"] = json.dumps(config.properties, sort_keys=True)
    return out


def runtime_env(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> list[dict[str, str]]:
    layout = spec.layout
    settings = config.runtime_settings(spec.name, f"{layout.keys_dir}/keys.json", spec.environment_variables)
    if not settings["auth_enabled"]:
        settings.pop("keys_file")
    timeout_s = int(config.effective("scoring_timeout_ms")) / 1000
    settings.update(
        {
            "entry_script": spec.entry_script,  # relative to the app root, as v1's AZUREML_ENTRY_SCRIPT
            "app_root": layout.app_root,
            "host": "0.0.0.0",
            "port": layout.port,
            # the kubelet's probes and Prometheus ask here, without the key that /metrics needs on the scoring port
            "health_port": layout.health_port,
            "service_version": spec.image_id.partition(":")[2] or "1",
            "service_path_prefix": PATH_PREFIX.format(name=spec.name),
            # lost with the pod unless a claim keeps it
            "data_collection_dir": layout.data_dir if config.model_data_claim else f"{layout.scratch_dir}/model-data",
            # a failed init() keeps the server up to answer /ready with 503: what the rollout diagnosis reads
            "serve_init_failure": True,
            # SIGTERM: finish what is in flight; Kubernetes waits terminationGracePeriodSeconds (below)
            "graceful_timeout_s": round(timeout_s + 5),
        }
    )
    if spec.model_ids:
        settings["model_dir"] = layout.model_dir(spec.model_ids)
    return env_for(settings)


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "health"}, **{k: int(v) for k, v in timing.items()}}


def _locked_down() -> dict[str, Any]:
    """A container's own lock-down (the pod's securityContext adds the non-root user and the seccomp profile).
    A new dict each time: YAML would write an object used twice as an anchor and an alias."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}


def pod_template(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    layout = spec.layout
    requests = {"cpu": cpu_quantity(config.effective("cpu_cores")), "memory": memory_quantity(config.effective("memory_gb"))}
    # Memory is limited to the request unless told otherwise (a leaking model is OOMKilled and reported,
    # instead of starving its node); CPU is not limited by default: throttling would add latency.
    limits = {"memory": memory_quantity(config.memory_gb_limit or config.effective("memory_gb"))}
    if config.cpu_cores_limit:
        limits["cpu"] = cpu_quantity(config.cpu_cores_limit)
    gpus = int(config.effective("gpu_cores"))
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    timeout_s = int(config.effective("scoring_timeout_ms")) / 1000
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image_location,
        "imagePullPolicy": "IfNotPresent",
        "command": [layout.python, "-m", "mlmagics.serving"],
        "ports": [
            {"name": "http", "containerPort": layout.port, "protocol": "TCP"},
            {"name": "health", "containerPort": layout.health_port, "protocol": "TCP"},
        ],
        "env": runtime_env(config, spec),
        "resources": {"requests": requests, "limits": limits},
        # v1's liveness settings; Kubernetes requires successThreshold 1 for liveness, so
        # success_threshold applies to readiness (GET /ready: 200 once init() succeeded).
        "livenessProbe": _probe(
            "/",
            initialDelaySeconds=config.effective("initial_delay_seconds"),
            periodSeconds=config.effective("period_seconds"),
            timeoutSeconds=config.effective("timeout_seconds"),
            successThreshold=1,
            failureThreshold=config.effective("failure_threshold"),
        ),
        "readinessProbe": _probe(
            "/ready",
            periodSeconds=5,
            timeoutSeconds=config.effective("timeout_seconds"),
            successThreshold=config.effective("success_threshold"),
            failureThreshold=config.effective("failure_threshold"),
        ),
        # Let the Service stop routing to a pod before it stops accepting (no 502s during rolling updates).
        "lifecycle": {"preStop": {"exec": {"command": [layout.python, "-c", "import time; time.sleep(5)"]}}},
        "securityContext": _locked_down(),
        "volumeMounts": [
            {"name": "scratch", "mountPath": layout.scratch_dir},
            {"name": "app", "mountPath": layout.app_root, "subPath": "app"},
        ],
    }
    # The working folder: the image's app folder, copied where the script may write (v1 scripts write next to themselves).
    copy_app = {
        "name": "app",
        "image": spec.image_location,
        "imagePullPolicy": "IfNotPresent",
        "command": [layout.python, "-c", COPY_APP, layout.app_root, f"{layout.app_copy_dir}/app"],
        # no more than the server's: the pod asks for what it did before
        "resources": {"requests": dict(requests), "limits": dict(limits)},
        "securityContext": _locked_down(),
        "volumeMounts": [{"name": "app", "mountPath": layout.app_copy_dir}],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "scratch", "emptyDir": {"sizeLimit": SCRATCH_SIZE_LIMIT}},
        {"name": "app", "emptyDir": {"sizeLimit": APP_SIZE_LIMIT}},
    ]
    if config.model_data_claim:  # one folder per pod on the claim: replicas never write the same file
        container["env"].append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        container["volumeMounts"].append({"name": "model-data", "mountPath": layout.data_dir, "subPathExpr": "$(POD_NAME)"})
        volumes.append({"name": "model-data", "persistentVolumeClaim": {"claimName": config.model_data_claim}})
    if config.effective("auth_enabled"):
        # The whole Secret as a directory (not subPath): the kubelet updates it in place when the keys change.
        container["volumeMounts"].append({"name": "keys", "mountPath": layout.keys_dir, "readOnly": True})
        volumes.append({"name": "keys", "secret": {"secretName": f"{spec.name}-keys", "defaultMode": 0o440}})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the scoring server never talks to the API server
        "terminationGracePeriodSeconds": round(timeout_s + 15),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": layout.user,
            "runAsGroup": layout.user,
            "fsGroup": layout.user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [copy_app],
        "containers": [container],
        "volumes": volumes,
    }
    secrets = config.image_pull_secret
    if secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in config.tolerations]
    template_labels = labels(spec.name, spec.image_id)
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(layout.health_port), "prometheus.io/path": "/metrics"}
    template = {"metadata": {"labels": template_labels, "annotations": scrape}, "spec": pod_spec}
    # A hash of the template tells this version's pods from the previous version's during a rollout.
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]
    template_labels[TEMPLATE_HASH_LABEL] = digest
    return template


def progress_deadline(config: KubernetesServiceDeploymentConfiguration) -> int:
    """Seconds Kubernetes gives a rollout before it reports ProgressDeadlineExceeded (covers v1's slow init())."""
    return max(600, int(config.effective("initial_delay_seconds")) + 300)


def deployment(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {SERVICE_LABEL: spec.name}},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": progress_deadline(config),
        # A new version takes traffic only once ready; the old pods serve until then.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": pod_template(config, spec),
    }
    if not config.effective("autoscale_enabled"):
        body["replicas"] = replicas(config)  # with autoscale the HPA owns the count: apply must not reset it
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, spec.name, _annotations(config, spec)),
        "spec": body,
    }


def service(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "type": config.effective("service_type"),
            "selector": {SERVICE_LABEL: spec.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    target = int(config.effective("autoscale_target_utilization"))
    if config.effective("autoscale_metric") == "requests_in_flight":
        per_pod = target / 100 * int(config.effective("replica_max_concurrent_requests"))
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": IN_FLIGHT_METRIC},
                "target": {"type": "AverageValue", "averageValue": f"{round(per_pod * 1000)}m"},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
        }
    annotations = {
        "mlmagics.io/autoscale-target-utilization": str(target),
        "mlmagics.io/autoscale-refresh-seconds": str(config.effective("autoscale_refresh_seconds")),
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec, spec.name, annotations),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": int(config.effective("autoscale_min_replicas")),
            "maxReplicas": int(config.effective("autoscale_max_replicas")),
            "metrics": [metric],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 60},
            },
        },
    }


def disruption_budget(spec: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec, spec.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {SERVICE_LABEL: spec.name}}},
    }


def ingress(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    timeout_s = round(int(config.effective("scoring_timeout_ms")) / 1000 + 5)
    annotations = {
        # ingress-nginx defaults to 1 MB bodies and 60 s reads; the service's own limits apply instead
        "nginx.ingress.kubernetes.io/proxy-body-size": f"{int(config.effective('max_request_body_mb'))}m",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": str(timeout_s),
        "nginx.ingress.kubernetes.io/proxy-send-timeout": str(timeout_s),
    }
    body: dict[str, Any] = {
        "rules": [
            {
                "host": config.ingress_host,
                "http": {
                    "paths": [
                        {
                            "path": PATH_PREFIX.format(name=spec.name),
                            "pathType": "Prefix",
                            "backend": {"service": {"name": spec.name, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ]
    }
    if config.ingress_class:
        body["ingressClassName"] = config.ingress_class
    if config.ingress_tls_secret:
        body["tls"] = [{"hosts": [config.ingress_host], "secretName": config.ingress_tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(spec, spec.name, annotations),
        "spec": body,
    }


def network_policy(config: KubernetesServiceDeploymentConfiguration, spec: ServiceSpec) -> dict[str, Any]:
    """Ingress to the service's pods only on its port (clients): from anyone with `network_policy=True`, else from
    the sources listed — CIDRs, or NetworkPolicyPeer dicts (namespaceSelector, podSelector, ipBlock) — and on the
    health port only from pods of the cluster (Prometheus; the kubelet's probes come from the node, which a
    NetworkPolicy always lets in). Egress stays open (a script may call out); a cluster without a NetworkPolicy
    implementation (a CNI such as Calico or Cilium) accepts the object and enforces nothing."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": "http"}]}
    if isinstance(config.network_policy, list):
        rule["from"] = [{"ipBlock": {"cidr": peer}} if isinstance(peer, str) else dict(peer) for peer in config.network_policy]
    health = {"ports": [{"protocol": "TCP", "port": "health"}], "from": [{"namespaceSelector": {}}]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "podSelector": {"matchLabels": {SERVICE_LABEL: spec.name}},
            "policyTypes": ["Ingress"],
            "ingress": [rule, health],
        },
    }


def to_yaml(manifests: list[dict[str, Any]], redact_secrets: bool = False) -> str:
    """A multi-document YAML stream (`kubectl apply -f` takes it); `redact_secrets` hides Secret data for display."""
    docs = []
    for manifest in manifests:
        if redact_secrets and manifest["kind"] == "Secret":
            manifest = {**manifest, "data": {k: "<redacted>" for k in manifest.get("data", {})}}
        docs.append(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))
    return "---\n" + "---\n".join(docs)


def write(manifests: list[dict[str, Any]], folder: Path, name: str) -> list[Path]:
    """Write `<name>.yaml` (every object but the keys) and `<name>-keys.secret.yaml` (mode 0600: keep it out of git)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        f"# The Kubernetes objects of mlmagics service {name}, generated by mlmagics (dry run).\n"
        "# Apply: kubectl apply --server-side --field-manager=mlmagics -f <this file>\n"
    )
    main = folder / f"{name}.yaml"
    main.write_text(header + to_yaml([m for m in manifests if m["kind"] != "Secret"]))
    paths = [main]
    secret_path = folder / f"{name}-keys.secret.yaml"
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    if secrets:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when an earlier run left the file with a wider mode
        with open(fd, "w") as f:
            f.write(header.replace("objects", "keys") + to_yaml(secrets))
        paths.append(secret_path)
    else:
        secret_path.unlink(missing_ok=True)  # left by an earlier run with auth on
    return paths
