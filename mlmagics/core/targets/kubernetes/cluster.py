"""A Kubernetes cluster from kubeconfig: the compute target of the Kubernetes target (v1's `AksCompute`).

    cluster = KubernetesCompute.attach(context="kind-dev", namespace="ml")     # any cluster in kubeconfig
    cluster.wait_for_completion(show_output=True)                              # checks it answers
    Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration(), deployment_target=cluster)

v1's spelling works too: `ComputeTarget.attach(ws, "myaks", AksCompute.attach_configuration(context=...))`.
Creating a cluster (`AksCompute.provisioning_configuration()`, `ComputeTarget.create`) is out of
scope: make one with your provider's tools (AKS, EKS, GKE, k3s, kind) and attach it.

This module holds every call to the API server, through the official `kubernetes` client:
server-side apply with field manager `mlmagics` (so re-deploys are idempotent and the fields
other managers own — an HPA's replica count — are left alone), listing and deleting by label,
reading a rollout's Deployment, pods and events, and pod logs. It is the one part of the
target no test here can run against a live API server (none can be installed on these
machines): `tests/test_kubernetes_live.py` runs it when MLMAGICS_TEST_KUBE_CONTEXT names a cluster.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ...errors import ComputeTargetException, NotFoundError, TargetUnavailable, UserError, WebserviceException
from .manifests import CONTAINER, FIELD_MANAGER, MANAGED_BY, SERVICE_LABEL, selector
from .rollout import pod_is_ready


def sdk() -> Any:
    """The Kubernetes client package, imported on first use: it takes about 3 s to import (the rest of
    mlmagics should not wait for it), and without the kubernetes extra it is not there at all."""
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError:
        raise TargetUnavailable("the kubernetes target needs the Kubernetes client: pip install 'mlmagics[kubernetes]'") from None
    return kubernetes

# kind -> (client API class, the method suffix of its namespaced calls), in the order delete() removes them
KINDS = {
    "Ingress": ("NetworkingV1Api", "ingress"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler"),
    "PodDisruptionBudget": ("PolicyV1Api", "pod_disruption_budget"),
    "Service": ("CoreV1Api", "service"),
    "Deployment": ("AppsV1Api", "deployment"),
    "Secret": ("CoreV1Api", "secret"),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy"),  # last: the pods stay shielded until they are gone
}
IN_CLUSTER = "in-cluster"
NO_CLUSTER = (
    "no Kubernetes cluster configured: {why}. Point KUBECONFIG (or ~/.kube/config) at a cluster and pick one with "
    "context=..., or deploy with dry_run=True to write the manifests instead"
)


def kubeconfig_path(config_file: str | None = None) -> str:
    return os.path.expanduser(config_file or os.environ.get("KUBECONFIG") or "~/.kube/config")


@dataclass
class KubernetesAttachConfiguration:
    """What `ComputeTarget.attach` needs: a kubeconfig context (v1's resource_group/cluster_name have no meaning here)."""

    context: str | None = None
    namespace: str | None = None
    config_file: str | None = None


@dataclass(frozen=True)
class ClusterService:
    """A service found in the cluster (by its labels), wherever it was deployed from."""

    name: str
    namespace: str
    image: str
    image_id: str
    ready_replicas: int
    replicas: int
    workspace: str


class KubernetesCompute:
    """A cluster in kubeconfig (`context`), and the namespace services go to."""

    type = "Kubernetes"

    def __init__(
        self, context: str | None = None, namespace: str | None = None, config_file: str | None = None, name: str | None = None
    ) -> None:
        self.context = context
        self.config_file = config_file
        self.name = name or context or "kubernetes"
        self._namespace = namespace
        self._api_client: Any = None
        self._apis: dict[str, Any] = {}
        self.provisioning_state = "Unknown"
        self.provisioning_errors: list[str] = []

    def __repr__(self) -> str:
        return f"KubernetesCompute(context={self.context!r}, namespace={self.namespace!r})"

    # -- v1 entry points ------------------------------------------------------------------------------
    @staticmethod
    def attach(
        context: str | None = None, namespace: str | None = None, config_file: str | None = None, name: str | None = None
    ) -> KubernetesCompute:
        """The cluster of kubeconfig context `context` (None: the current context); reads kubeconfig now.

        Raises TargetUnavailable with what to do when there is no kubeconfig or no such context.
        """
        compute = KubernetesCompute(context, namespace, config_file, name)
        compute._connect()
        return compute

    @staticmethod
    def attach_configuration(
        context: str | None = None,
        namespace: str | None = None,
        config_file: str | None = None,
        resource_group: str | None = None,
        cluster_name: str | None = None,
        resource_id: str | None = None,
    ) -> KubernetesAttachConfiguration:
        """v1's `AksCompute.attach_configuration`; `cluster_name` is taken as the kubeconfig context when no context is given."""
        if resource_group or resource_id:
            # An Azure resource group means nothing to kubeconfig; say so instead of ignoring it.
            hint = f" (e.g. context={cluster_name!r})" if cluster_name else ""
            raise UserError(f"attach a cluster by its kubeconfig context{hint}: resource_group/resource_id are Azure's")
        return KubernetesAttachConfiguration(context or cluster_name, namespace, config_file)

    @staticmethod
    def provisioning_configuration(*args: Any, **kwargs: Any) -> None:
        raise UserError(
            "creating a Kubernetes cluster is out of scope for mlmagics: create one with your provider (AKS, EKS, GKE, "
            "k3s, kind), then KubernetesCompute.attach(context=...)"
        )

    def wait_for_completion(self, show_output: bool = False) -> None:
        """v1 waited for provisioning; here: check that the API server answers, and say which cluster it is."""
        try:
            version = self._api("VersionApi").get_code()
        except TargetUnavailable as e:
            self.provisioning_state, self.provisioning_errors = "Failed", [e.message]
            raise
        self.provisioning_state, self.provisioning_errors = "Succeeded", []
        if show_output:
            print(
                f"Kubernetes {version.git_version} at {self._api_client.configuration.host} "
                f"(context {self.context}, namespace {self.namespace})"
            )

    # -- connection -------------------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._connect()
        return self._namespace or "default"

    def _connect(self) -> Any:
        """An ApiClient for the context; fills in the context's name and default namespace."""
        if self._api_client is not None:
            return self._api_client
        client, config = sdk().client, sdk().config
        path = kubeconfig_path(self.config_file)
        in_cluster = self.context == IN_CLUSTER or (
            self.context is None and not os.path.exists(path) and os.environ.get("KUBERNETES_SERVICE_HOST")
        )
        if in_cluster:  # a notebook running in a pod: its service account
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as e:
                raise TargetUnavailable(NO_CLUSTER.format(why=f"no in-cluster service account ({e})")) from None
            self.context = IN_CLUSTER
            if self._namespace is None:
                try:
                    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                        self._namespace = f.read().strip()
                except OSError:
                    pass
            self._api_client = client.ApiClient(configuration)
            return self._api_client
        if not any(os.path.exists(p) for p in path.split(os.pathsep)):
            raise TargetUnavailable(NO_CLUSTER.format(why=f"there is no kubeconfig at {path}"))
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)
        except config.ConfigException as e:
            raise TargetUnavailable(NO_CLUSTER.format(why=f"{path} is not a usable kubeconfig ({e})")) from None
        names = [c["name"] for c in contexts or []]
        if self.context is None:
            if not active:
                raise TargetUnavailable(
                    NO_CLUSTER.format(why=f"{path} has no current context; pass context= ({', '.join(names)})")
                )
            chosen = active
        else:
            chosen = next((c for c in contexts if c["name"] == self.context), None)
            if chosen is None:
                raise TargetUnavailable(
                    NO_CLUSTER.format(
                        why=f"kubeconfig {path} has no context {self.context!r} (it has: {', '.join(names) or 'none'})"
                    )
                )
        self.context = chosen["name"]
        if self._namespace is None:
            self._namespace = chosen.get("context", {}).get("namespace") or "default"
        try:
            self._api_client = config.new_client_from_config(config_file=path, context=self.context, persist_config=False)
        except config.ConfigException as e:
            raise TargetUnavailable(NO_CLUSTER.format(why=f"context {self.context!r} cannot be used ({e})")) from None
        return self._api_client

    def _api(self, name: str) -> Any:
        if name not in self._apis:
            self._apis[name] = getattr(sdk().client, name)(self._connect())
        return self._apis[name]

    def _call(
        self, what: str, function: Any, *args: Any, missing: tuple[int, ...] = (), otherwise: Any = None, **kwargs: Any
    ) -> Any:
        """Call the API; its errors become one line that says what to do. A status in `missing`
        (404: not there) returns `otherwise` instead."""
        try:
            return function(*args, **kwargs)
        except sdk().client.exceptions.ApiException as e:
            if e.status in missing:
                return otherwise
            raise _api_error(what, e, self) from None
        except Exception as e:  # urllib3 connection errors, TLS, DNS, expired credentials
            if type(e).__module__.startswith(("urllib3", "ssl", "socket", "kubernetes.config")) or isinstance(e, OSError):
                host = self._api_client.configuration.host if self._api_client else "?"
                raise TargetUnavailable(
                    f"cannot reach the Kubernetes API server at {host} (context {self.context}): {e}"
                ) from None
            raise

    def _send(self, what: str, function: Any, *args: Any, **kwargs: Any) -> None:
        """A write whose answer mlmagics does not need: the answer is not deserialized (API servers answer
        a delete with the object or with a Status, and a strict client would choke on the other one)."""
        response = self._call(what, function, *args, _preload_content=False, **kwargs)
        if response is not None and hasattr(response, "release_conn"):
            response.read()
            response.release_conn()

    def _namespaced(self, kind: str, verb: str) -> Any:
        api, suffix = KINDS[kind]
        return getattr(self._api(api), f"{verb}_namespaced_{suffix}")

    # -- objects ----------------------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any], namespace: str) -> None:
        """Server-side apply (`kubectl apply --server-side --force-conflicts --field-manager=mlmagics`)."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        self._send(
            f"apply {kind} {name}",
            self._namespaced(kind, "patch"),
            name,
            namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def objects(self, service: str, namespace: str) -> list[tuple[str, str]]:
        """(kind, name) of every object labelled as service `service`'s."""
        found = []
        for kind in KINDS:
            items = self._call(f"list {kind}s", self._namespaced(kind, "list"), namespace, label_selector=selector(service)).items
            found += [(kind, item.metadata.name) for item in items]
        return found

    def delete(self, kind: str, name: str, namespace: str) -> None:
        # already gone (404) is what we wanted
        self._send(
            f"delete {kind} {name}",
            self._namespaced(kind, "delete"),
            name,
            namespace,
            missing=(404,),
            propagation_policy="Background",
        )

    def read_deployment(self, name: str, namespace: str) -> Any:
        """The Deployment, or None when there is none."""
        apps = self._api("AppsV1Api")
        return self._call(f"read Deployment {name}", apps.read_namespaced_deployment, name, namespace, missing=(404,))

    def read_rollout(self, name: str, namespace: str) -> tuple[Any, list[Any], list[Any]]:
        """The Deployment, its pods, and the events of the pods that are not ready (what `diagnose` reads)."""
        deployment = self.read_deployment(name, namespace)
        core = self._api("CoreV1Api")
        pods = self._call("list pods", core.list_namespaced_pod, namespace, label_selector=f"{SERVICE_LABEL}={name}").items
        events: list[Any] = []
        for pod in [p for p in pods if not pod_is_ready(p)][:5]:
            field = f"involvedObject.kind=Pod,involvedObject.name={pod.metadata.name}"
            events += self._call("list events", core.list_namespaced_event, namespace, field_selector=field).items
        return deployment, pods, events

    def pods(self, name: str, namespace: str) -> list[Any]:
        core = self._api("CoreV1Api")
        return self._call("list pods", core.list_namespaced_pod, namespace, label_selector=f"{SERVICE_LABEL}={name}").items

    def pod_log(self, pod: str, namespace: str, tail_lines: int, previous: bool = False) -> str:
        # 400: the container has not started yet, or has no previous instance: no log to show
        core = self._api("CoreV1Api")
        return self._call(
            f"read the log of pod {pod}",
            core.read_namespaced_pod_log,
            pod,
            namespace,
            missing=(400, 404),
            otherwise="",
            container=CONTAINER,
            tail_lines=tail_lines,
            previous=previous,
        )

    def annotate_pod(self, pod: str, namespace: str, annotations: dict[str, str]) -> None:
        self._send(
            f"annotate pod {pod}",
            self._api("CoreV1Api").patch_namespaced_pod,
            pod,
            namespace,
            {"metadata": {"annotations": annotations}},
            _content_type="application/strategic-merge-patch+json",
        )

    def load_balancer_address(self, name: str, namespace: str) -> str | None:
        service = self._call(f"read Service {name}", self._api("CoreV1Api").read_namespaced_service, name, namespace)
        ingress = (service.status.load_balancer.ingress or []) if service.status and service.status.load_balancer else []
        return (ingress[0].ip or ingress[0].hostname) if ingress else None

    def services(self, all_namespaces: bool = False) -> list[ClusterService]:
        """The mlmagics services in the namespace (or every namespace), found by their labels."""
        apps = self._api("AppsV1Api")
        wanted = f"app.kubernetes.io/managed-by={MANAGED_BY},{SERVICE_LABEL}"
        if all_namespaces:
            items = self._call("list Deployments", apps.list_deployment_for_all_namespaces, label_selector=wanted).items
        else:
            items = self._call("list Deployments", apps.list_namespaced_deployment, self.namespace, label_selector=wanted).items
        out = []
        for d in items:
            notes = d.metadata.annotations or {}
            out.append(
                ClusterService(
                    name=d.metadata.labels[SERVICE_LABEL],
                    namespace=d.metadata.namespace,
                    image=d.spec.template.spec.containers[0].image,
                    image_id=notes.get("mlmagics.io/image-id", ""),
                    ready_replicas=(d.status.ready_replicas or 0) if d.status else 0,
                    replicas=(d.status.replicas or 0) if d.status else 0,
                    workspace=notes.get("mlmagics.io/workspace-path", ""),
                )
            )
        return sorted(out, key=lambda s: (s.namespace, s.name))


AksCompute = KubernetesCompute


class ComputeTarget:
    """v1's `ComputeTarget.attach(workspace, name, attach_configuration)`; only Kubernetes clusters exist here."""

    def __new__(cls, workspace: Any = None, name: str | None = None, **kwargs: Any) -> ComputeTarget:
        """v1's look-up of an attached compute by name: a workspace keeps none (a cluster is a kubeconfig
        context), so this says how to attach one — as v1 did for a name it did not know."""
        raise ComputeTargetException(
            f"ComputeTargetNotFound: compute target {name!r} is not attached here; clusters are kubeconfig contexts: "
            "KubernetesCompute.attach(context=...)"
        )

    @staticmethod
    def attach(workspace: Any, name: str, attach_configuration: KubernetesAttachConfiguration) -> KubernetesCompute:
        if not isinstance(attach_configuration, KubernetesAttachConfiguration):
            raise UserError("attach_configuration must come from KubernetesCompute.attach_configuration(context=...)")
        c = attach_configuration
        return KubernetesCompute.attach(c.context, c.namespace, c.config_file, name=name)

    @staticmethod
    def create(*args: Any, **kwargs: Any) -> None:
        KubernetesCompute.provisioning_configuration()


def _api_error(what: str, error: Any, cluster: KubernetesCompute) -> Exception:
    """An ApiException as one line: the status, the API server's own message, and what to do."""
    try:
        message = json.loads(error.body).get("message") or error.reason
    except (TypeError, ValueError, AttributeError):
        message = error.reason
    where = f"(context {cluster.context})"
    if error.status in (401, 403):
        return TargetUnavailable(
            f"the cluster refused to {what} {where}: {message}. Check the kubeconfig credentials and that your "
            "user may manage Deployments, Services, Secrets, HPAs, PDBs, Ingresses, NetworkPolicies, pods/log and events in the "
            "namespace"
        )
    if error.status == 404 and "namespaces" in str(message):
        return NotFoundError(f"cannot {what} {where}: {message}; create it (kubectl create namespace ...) or pick another")
    return WebserviceException(f"cannot {what} {where}: HTTP {error.status} {message}")
