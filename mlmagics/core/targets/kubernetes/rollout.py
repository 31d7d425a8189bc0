"""Why a rollout is not finishing, read from what the API server says — as soon as it says it.

Pure functions over the official client's model objects (`V1Deployment`, `V1Pod`, `CoreV1Event`),
so they are tested on objects deserialized from real API responses:

    diagnosis = diagnose(deployment, pods, events)
    diagnosis.kind      # 'CrashLoopBackOff'
    diagnosis.pod       # 'mnist-7d9c5b6f4-x2x9q' (whose logs explain it)
    diagnosis.message   # "container 'scoring' exited with code 1 (Error), restarted 2 times"

| kind | read from | meaning |
| --- | --- | --- |
| Healthy | Deployment status | `kubectl rollout status` would say "successfully rolled out" |
| Progressing | Deployment status, pods | still rolling out (pulling, starting, init() running, a node being added) |
| ImagePullBackOff | container waiting reason, `Failed` events | the image cannot be pulled (wrong location, no pull secret) |
| CreateContainerConfigError | container waiting reason | the container cannot be created (a missing Secret, a root image) |
| CrashLoopBackOff | container state, restart count | the server process exits (import error, OOMKilled) |
| ProbeFailure | `Unhealthy`/`Killing` events | GET /ready answers 503 (init() failed) or GET / stopped answering |
| Unschedulable | pod condition PodScheduled | no node has room (cpu_cores, memory_gb, gpu_cores, node_selector) |
| DeploymentFailed | Deployment conditions | ReplicaFailure (quota, admission) or ProgressDeadlineExceeded |

The scoring runtime accepts requests only once init() has finished, and then answers /ready with
200 (init() succeeded) or 503 (it failed). So a readiness probe that gets a 503 is a definite
failure, while one that times out means init() is still running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlmagics.serving.logs import readable

from .manifests import TEMPLATE_HASH_LABEL

HEALTHY = "Healthy"
PROGRESSING = "Progressing"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
PROBE_FAILURE = "ProbeFailure"
UNSCHEDULABLE = "Unschedulable"
DEPLOYMENT_FAILED = "DeploymentFailed"
FAILURES = (
    IMAGE_PULL_BACK_OFF,
    CREATE_CONTAINER_CONFIG_ERROR,
    CRASH_LOOP_BACK_OFF,
    PROBE_FAILURE,
    UNSCHEDULABLE,
    DEPLOYMENT_FAILED,
)

_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_CREATE_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError"}


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    message: str
    pod: str | None = None
    previous_logs: bool = False  # the container crashed: its previous instance's log explains why
    events: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES

    def report(self, logs: str = "") -> str:
        """The diagnosis as a person reads it: what, where, the pod's events and its last log lines."""
        lines = [f"{self.kind}: {self.message}" + (f" (pod {self.pod})" if self.pod else "")]
        if self.events:
            lines += ["Events:", *(f"  {e}" for e in self.events)]
        if logs.strip():
            which = "previous container's" if self.previous_logs else "pod's"
            lines += [f"Last log lines ({which}):", explain_log(logs)]
        return "\n".join(lines)


def _when(event: Any) -> str:
    """Sort key: events carry lastTimestamp, eventTime or only a creation time, depending on who wrote them."""
    stamp = event.last_timestamp or event.event_time or (event.metadata.creation_timestamp if event.metadata else None)
    return stamp.isoformat() if stamp is not None else ""


def format_event(event: Any) -> str:
    """Like `kubectl describe`: type, reason, count, message."""
    count = f" (x{event.count})" if event.count and event.count > 1 else ""
    return f"{event.type or 'Normal'} {event.reason}{count}: {(event.message or '').strip()}"


def rollout_status(deployment: Any) -> tuple[str, bool]:
    """`kubectl rollout status` for a Deployment: (message, done)."""
    name = deployment.metadata.name
    status, spec = deployment.status, deployment.spec
    if status is None or (deployment.metadata.generation or 0) > (status.observed_generation or 0):
        return "Waiting for deployment spec update to be observed...", False
    wanted = spec.replicas if spec.replicas is not None else 1
    updated, total, available = status.updated_replicas or 0, status.replicas or 0, status.available_replicas or 0
    if updated < wanted:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {wanted} new replicas have been updated...',
            False,
        )
    if total > updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas are pending termination...',
            False,
        )
    if available < updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas are available...',
            False,
        )
    return f'deployment "{name}" successfully rolled out', True


def current_pods(deployment: Any, pods: list[Any]) -> list[Any]:
    """The pods of the Deployment's current template (not the previous version's, not terminating ones)."""
    template_labels = (deployment.spec.template.metadata.labels or {}) if deployment is not None else {}
    wanted = template_labels.get(TEMPLATE_HASH_LABEL)
    out = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        if wanted and (pod.metadata.labels or {}).get(TEMPLATE_HASH_LABEL) != wanted:
            continue
        out.append(pod)
    return sorted(out, key=lambda p: p.metadata.name)


def pod_is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])) if pod.status else False


def _containers(pod: Any) -> list[Any]:
    status = pod.status
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])] if status else []


def _pod_failure(pod: Any, events: list[Any]) -> Diagnosis | None:
    name = pod.metadata.name
    shown = tuple(format_event(e) for e in events if e.type == "Warning")[-6:]
    for status in _containers(pod):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in _PULL_REASONS:
            pulled = [e.message for e in events if e.reason == "Failed" and (e.message or "").startswith("Failed to pull image")]
            detail = pulled[-1] if pulled else (waiting.message or waiting.reason)
            return Diagnosis(
                IMAGE_PULL_BACK_OFF,
                f"cannot pull image {status.image!r}: {detail}. Check the image location (image.push(registry)) and, "
                "for a private registry, image_pull_secret=",
                name,
                events=shown,
            )
        if waiting and waiting.reason in _CREATE_REASONS:
            return Diagnosis(
                CREATE_CONTAINER_CONFIG_ERROR,
                f"container {status.name!r} cannot be created: {waiting.message or waiting.reason}",
                name,
                events=shown,
            )
    killed = [e for e in events if e.reason == "Killing" and "liveness probe" in (e.message or "")]
    if killed:
        probes = [e.message for e in events if e.reason == "Unhealthy" and (e.message or "").startswith("Liveness")]
        return Diagnosis(
            PROBE_FAILURE,
            "the liveness probe (GET /) failed and the container was restarted: "
            + (probes[-1] if probes else killed[-1].message)
            + ". A slow init() needs a larger initial_delay_seconds; a busy run() a larger timeout_seconds",
            name,
            previous_logs=True,
            events=shown,
        )
    for status in _containers(pod):
        waiting = status.state.waiting if status.state else None
        terminated = (status.state.terminated if status.state else None) or (
            status.last_state.terminated if status.last_state else None
        )
        crashed = terminated is not None and terminated.exit_code != 0 and (status.restart_count or 0) >= 1
        if (waiting and waiting.reason == "CrashLoopBackOff") or crashed:
            message = f"container {status.name!r} keeps exiting"
            if terminated is not None:
                message = (
                    f"container {status.name!r} exited with code {terminated.exit_code} ({terminated.reason}), "
                    f"restarted {status.restart_count or 0} times"
                )
                if terminated.reason == "OOMKilled":
                    message += "; it needs more memory than its limit: raise memory_gb (or memory_gb_limit)"
            return Diagnosis(CRASH_LOOP_BACK_OFF, message, name, previous_logs=True, events=shown)
    failed_ready = [
        e for e in events if e.reason == "Unhealthy" and (e.message or "").startswith("Readiness probe failed: HTTP probe failed")
    ]
    if failed_ready:
        return Diagnosis(
            PROBE_FAILURE,
            f"the scoring script did not start: GET /ready answers {failed_ready[-1].message.rsplit(' ', 1)[-1]} "
            "(init() or the import failed; the traceback is in the log)",
            name,
            events=shown,
        )
    for condition in pod.status.conditions or [] if pod.status else []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            if any(e.reason == "TriggeredScaleUp" for e in events):
                return None  # the cluster autoscaler is adding a node: still progressing
            return Diagnosis(
                UNSCHEDULABLE,
                f"no node can run it: {condition.message}. Lower cpu_cores/memory_gb/gpu_cores, "
                "check node_selector/tolerations, or add nodes",
                name,
                events=shown,
            )
    return None


def _waiting_on(pods: list[Any], events_by_pod: dict[str, list[Any]]) -> str:
    """A short note on what the first not-ready pod is doing (for the progress line)."""
    for pod in pods:
        if pod_is_ready(pod):
            continue
        for status in _containers(pod):
            if status.state and status.state.waiting:
                return f"pod {pod.metadata.name}: {status.state.waiting.reason}"
        probes = [e for e in events_by_pod.get(pod.metadata.name, []) if e.reason == "Unhealthy"]
        if probes:
            return f"pod {pod.metadata.name}: init() still running (readiness probe not answered yet)"
        if pod.status and pod.status.phase == "Pending":
            return f"pod {pod.metadata.name}: Pending"
        return f"pod {pod.metadata.name}: starting"
    return ""


def diagnose(deployment: Any, pods: list[Any], events: list[Any]) -> Diagnosis:
    """The state of a rollout, failures first. `events` may be any namespace events: those of other objects are ignored."""
    if deployment is None:
        return Diagnosis(PROGRESSING, "waiting for the Deployment to be created")
    pods_now = current_pods(deployment, pods)
    events_by_pod: dict[str, list[Any]] = {}
    for event in sorted(events, key=_when):
        involved = event.involved_object
        if involved is not None and involved.kind == "Pod":
            events_by_pod.setdefault(involved.name, []).append(event)
    for pod in pods_now:
        found = _pod_failure(pod, events_by_pod.get(pod.metadata.name, []))
        if found is not None:
            return found
    for condition in (deployment.status.conditions or []) if deployment.status else []:
        if condition.type == "ReplicaFailure" and condition.status == "True":
            return Diagnosis(DEPLOYMENT_FAILED, f"pods cannot be created: {condition.message}")
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return Diagnosis(
                DEPLOYMENT_FAILED,
                f"{condition.message} (no progress within progressDeadlineSeconds); service.get_logs() may say why",
            )
    message, done = rollout_status(deployment)
    if done:
        return Diagnosis(HEALTHY, message)
    note = _waiting_on(pods_now, events_by_pod)
    return Diagnosis(PROGRESSING, f"{message} ({note})" if note else message)


def explain_log(text: str) -> str:
    """The runtime's JSON log lines as text, with a failure's traceback spelled out."""

    return "\n".join(readable(text.splitlines()))
