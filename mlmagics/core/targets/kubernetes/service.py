"""The Kubernetes target's Webservice: a service as Kubernetes objects on a cluster (see the package's docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import progress as progress_mod
from ...configs import DeploymentConfiguration
from ...errors import ConflictError, TargetUnavailable, UserError, WebserviceException
from ...images import Image
from ...plans import DeploymentPlan
from ...progress import Progress
from ...services import FAILED, HEALTHY, TRANSITIONING, UNHEALTHY, Webservice, new_key, swagger_uri_for
from ...workspace import Workspace, now
from ..docker import DockerWebservice  # the cluster pulls what the Docker target built and pushed
from . import manifests as manifests_mod
from .cluster import KubernetesCompute
from .config import KubernetesServiceDeploymentConfiguration
from .rollout import HEALTHY as ROLLED_OUT
from .rollout import Diagnosis, diagnose


class KubernetesWebservice(Webservice):
    """A service on a Kubernetes cluster (v1's `AksWebservice`)."""

    compute_type = "Kubernetes"
    names = ("kubernetes", "aks")
    target_description = "A service on a Kubernetes cluster"
    config_class = KubernetesServiceDeploymentConfiguration
    config: KubernetesServiceDeploymentConfiguration
    poll_interval = 1.0

    applied: list[dict[str, Any]] = []  # the objects this process applied (a deploy or update from here)

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
        max_batch_size: int | None = None,
        max_batch_latency_ms: float | None = None,
        server_limits: dict[str, float] | None = None,
    ) -> KubernetesServiceDeploymentConfiguration:
        """v1's parameters, names, defaults and validation (all errors in one InvalidConfiguration), then:

        - `context`: the kubeconfig context (default: the current one; v1's `compute_target_name` is read as one);
          `namespace` defaults to the context's namespace, else `default`.
        - `registry`: push the image there first if it is not pushed yet (`DockerWebservice.push_image(image, registry)`).
        - `image_pull_secret`: Secret name(s) for a private registry.
        - `ingress_host`, `ingress_tls_secret`, `ingress_class`: an Ingress at
          `http(s)://<host>/api/v1/service/<name>/score` (v1's URI shape); `update(ingress_host="")` removes it.
        - `service_type`: ClusterIP (default), NodePort or LoadBalancer.
        - `node_selector`, `tolerations`: where the pods may run (e.g. GPU nodes).
        - `autoscale_metric`: "cpu" (default) or "requests_in_flight" (v1's busy-replica ratio; needs the
          Prometheus Adapter) — see manifests.py.
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
    def namespace(self) -> str:
        """Recorded when deployed; before that, the configuration's, else the cluster context's default."""
        return self.target.get("namespace") or self.config.namespace or self._cluster().namespace

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
    ) -> DeploymentPlan | None:
        """A dry run ends here with its plan (nothing applied, nothing recorded); otherwise check the cluster
        and the image first."""
        assert isinstance(config, KubernetesServiceDeploymentConfiguration)
        if config.effective("dry_run"):
            namespace = config.namespace or (
                deployment_target._namespace if isinstance(deployment_target, KubernetesCompute) else None
            )
            keys = (config.primary_key or new_key(), config.secondary_key or new_key())
            progress.stage(f"Writing the manifests of {name} (dry run: nothing is applied)")
            return _plan(workspace, name, image, config, namespace, keys, progress)
        # What can fail early fails here, in one line, before a record exists: no cluster, a Deployment
        # of that name that is not this workspace's, an image the cluster cannot pull (or its push).
        cluster = _compute_for(config, deployment_target, {})
        namespace = config.namespace or cluster.namespace
        existing = cluster.read_deployment(name, namespace)
        owner = (existing.metadata.annotations or {}).get(manifests_mod.WORKSPACE_ANNOTATION) if existing else None
        if existing is not None and owner != workspace.identity:
            raise ConflictError(
                f"a Deployment {name!r} already exists in namespace {namespace} (context {cluster.context}), "
                f"{'deployed from workspace ' + owner if owner else 'not made by mlmagics'}; choose another name or namespace"
            )
        cls._image_location(image, config, progress=progress)
        return None

    def _spec(self, image: Image, config: Any, namespace: str | None, location: str) -> manifests_mod.ServiceSpec:
        return _spec(self.workspace, self.name, image, namespace, (self._keys["primary"], self._keys["secondary"]), location)

    @staticmethod
    def _image_location(image: Image, config: Any, dry_run: bool = False, progress: Progress | None = None) -> str:
        """Where the cluster pulls the image from; pushes it to `config.registry` first when needed."""
        pushed = image.build_info.get("pushed")
        if pushed and (not config.registry or pushed.startswith(config.registry.split("://", 1)[-1].rstrip("/") + "/")):
            return pushed
        if dry_run:
            return manifests_mod.planned_location(config.registry, image.name, image.version)
        if not config.registry:
            raise UserError(_NOT_PUSHED.format(image=image.id))
        # the Docker target builds it first if needed; its end is a line of this deploy, not the end of it
        return DockerWebservice.push_image(image, config.registry, progress=_Step(progress) if progress is not None else None)

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
        if deployment is None and self.state != TRANSITIONING:
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
        try:
            return self._state_of(self._diagnosis())
        except TargetUnavailable as e:  # the cluster is out of reach from here: say so, keep the last known state
            return self.state, e.message

    def update(self, image: Image | None = None, **settings: Any) -> DeploymentPlan | None:
        """A rolling update to `image` and/or settings; the old pods serve until the new ones are ready, and a
        new version that fails is rolled back (WebserviceException says why). `dry_run=True` returns the plan
        of the update instead (its manifests written, nothing applied)."""
        if settings.pop("dry_run", False):
            keys = (self._keys["primary"], self._keys["secondary"])
            return _plan_update(self.workspace, self.name, image or self.image, self.config, self.namespace, keys, settings)
        super().update(image, **settings)
        return None

    def _update(self, image: Image, config: DeploymentConfiguration, progress: Progress) -> None:
        assert isinstance(config, KubernetesServiceDeploymentConfiguration)
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
            with self.workspace.transaction() as tx:
                tx.execute("DELETE FROM services WHERE name=:name", {"name": self.name})

    def runs_on(self) -> str:
        context, namespace = self.target.get("context"), self.target.get("namespace")
        return f"Kubernetes {context}/{namespace or 'default'}" if context else "Kubernetes"

    def _collected_data_location(self) -> str | None:
        claim = self.config.model_data_claim
        if not claim:  # in the pods' emptyDirs: gone with them
            return None
        return f"the PersistentVolumeClaim {claim} in namespace {self.namespace or 'default'} (a folder per pod)"

    def deleted_summary(self, remove_hint: str = "") -> str:
        return super().deleted_summary("kubectl, on the claim mlmagics did not create,")

    def _logs(self, num_lines: int) -> str:
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
        if not self.auth_enabled:
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
        return data


AksWebservice = KubernetesWebservice


def _spec(workspace: Workspace, name: str, image: Image, namespace: str | None, keys: tuple[str, str],
          location: str) -> manifests_mod.ServiceSpec:  # fmt: skip
    return manifests_mod.ServiceSpec(
        name=name,
        image_location=location,
        image_id=image.id,
        entry_script=image.execution_script,
        model_ids=list(image.model_ids),
        environment_variables=dict(image.environment_variables),
        namespace=namespace,
        keys=keys,
        workspace=workspace.identity,
    )


def _plan(workspace: Workspace, name: str, image: Image, config: Any, namespace: str | None, keys: tuple[str, str],
          progress: Progress) -> DeploymentPlan:  # fmt: skip
    """Write the manifests a deploy of `image` with `config` would apply, and return them as a plan."""
    location = KubernetesWebservice._image_location(image, config, dry_run=True, progress=progress)
    manifests = manifests_mod.render(config, _spec(workspace, name, image, namespace, keys, location))
    files = manifests_mod.write(manifests, Path(config.effective("manifests_dir")).expanduser().resolve(), name)
    for path in files:
        progress.log(f"wrote {path}")

    def replan(new_image: Image | None = None, **settings: Any) -> DeploymentPlan:
        return _plan_update(workspace, name, new_image or image, config, namespace, keys, settings)

    return DeploymentPlan(
        name=name,
        compute_type=KubernetesWebservice.compute_type,
        image_id=image.id,
        manifests=manifests,
        manifest_files=files,
        planned_scoring_uri=manifests_mod.scoring_uri(config, name, namespace),
        keys=keys if config.effective("auth_enabled") else None,
        render_yaml=manifests_mod.to_yaml,
        replan=replan,
    )


def _plan_update(workspace: Workspace, name: str, image: Image, config: Any, namespace: str | None, keys: tuple[str, str],
                 settings: dict[str, Any]) -> DeploymentPlan:  # fmt: skip
    """The plan of an update of `name` to `image` with `settings` merged into `config` (a service's
    `update(dry_run=True)`, a plan's `update`): its manifests written, nothing applied."""
    report = progress_mod.resolve(settings.pop("progress", None), settings.pop("show_output", False))
    report.stage(f"Writing the manifests of the update of {name} (dry run: nothing is applied)")
    plan = _plan(workspace, name, image, config.merged(**settings), namespace, keys, report)
    report.done(True, f"{len(plan.manifests)} objects written to {plan.folder}")
    return plan


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
    "image {image} is not in a registry the cluster can pull from: push it first "
    "(DockerWebservice.push_image(image, 'registry.example.com/team')) or pass registry=... in the deploy configuration"
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
