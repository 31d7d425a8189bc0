"""The Kubernetes target's Webservice, end to end through the official `kubernetes` client over HTTP.

No Kubernetes API server can be installed on these machines, so the client talks to `ApiStandIn`
(conftest.py): a recorder of requests that answers reads with recorded API responses.
These tests show what mlmagics sends (server-side apply with field manager mlmagics, label
selectors, deletes, log reads) and how it reads real answers (a crash loop, a failing init(), a
rollout that succeeds); that a cluster accepts the objects is checked by test_live.py
when MLMAGICS_TEST_KUBE_CONTEXT names one, and by the schema tests in test_manifests.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from mlmagics.core import (
    ConflictError,
    DockerWebservice,
    Recorder,
    TargetUnavailable,
    UserError,
    Webservice,
    WebserviceException,
    Workspace,
)
from mlmagics.core.targets.kubernetes import AksWebservice, KubernetesWebservice
from mlmagics.core.targets.kubernetes.cluster import ComputeTarget, KubernetesCompute

PLURALS = {
    "Secret": "/api/v1/namespaces/ml/secrets",
    "Deployment": "/apis/apps/v1/namespaces/ml/deployments",
    "Service": "/api/v1/namespaces/ml/services",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/ml/poddisruptionbudgets",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/ml/ingresses",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies",
}


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(KubernetesWebservice, "poll_interval", 0.05)
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def pushed_image(echo_image):
    """`pushed_image(ws, tmp_path, version="v1", location=...)`: an echo image recorded as pushed to `location`."""

    def make(ws, tmp_path, version="v1", location="registry.example.com/team/echo:1"):
        image = echo_image(ws, tmp_path / f"src-{version}", version=version)
        image.set_build_info(pushed=location)
        return image

    return make


@pytest.fixture(scope="session")
def deployed(pushed_image):
    """`deployed(ws, tmp_path, api, **settings)`: service mnist of a pushed echo image, deployed through the stand-in."""

    def deploy(ws, tmp_path, api, **settings):
        image = pushed_image(ws, tmp_path)
        config = AksWebservice.deploy_configuration(**settings)
        return Webservice.deploy_from_image(ws, "mnist", image, config)

    return deploy


def test_no_cluster_is_one_line_saying_what_to_do_and_leaves_nothing_behind(ws, tmp_path, monkeypatch, pushed_image):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    image = pushed_image(ws, tmp_path)
    with pytest.raises(TargetUnavailable) as caught:
        Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration())
    assert "no Kubernetes cluster configured: there is no kubeconfig at" in caught.value.message
    assert "dry_run=True" in caught.value.message and "\n" not in caught.value.message
    assert Webservice.list(ws) == []


def test_an_unknown_context_lists_the_known_ones(ws, tmp_path, api):
    with pytest.raises(TargetUnavailable, match="has no context 'prod' \\(it has: stand-in\\)"):
        KubernetesCompute.attach(context="prod")


def test_an_image_the_cluster_cannot_pull_is_refused_before_anything_happens(ws, tmp_path, api, echo_image):
    image = echo_image(ws, tmp_path / "src")
    with pytest.raises(UserError, match=r"image echo:1 is not in a registry the cluster can pull from: push it first"):
        Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration())
    assert api.calls("PATCH") == [] and Webservice.list(ws) == []


def test_deploying_applies_every_object_server_side_as_mlmagics(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api, ingress_host="ml.example.com")
    patches = api.calls("PATCH")
    assert [p["path"] for p in patches] == [
        PLURALS["Secret"] + "/mnist-keys", PLURALS["Deployment"] + "/mnist", PLURALS["Service"] + "/mnist",
        PLURALS["HorizontalPodAutoscaler"] + "/mnist", PLURALS["Ingress"] + "/mnist",
    ]  # fmt: skip
    for patch in patches:
        assert patch["content_type"] == "application/apply-patch+yaml"
        assert patch["query"] == {"fieldManager": "mlmagics", "force": "true"}
        assert patch["body"]["metadata"]["namespace"] == "ml"
    image = patches[1]["body"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/team/echo:1"
    lists = [r for r in api.calls("GET") if r["query"].get("labelSelector")]
    assert {r["query"]["labelSelector"] for r in lists} == {"mlmagics.io/service=mnist,app.kubernetes.io/managed-by=mlmagics"}
    assert (service.state, service.namespace, service.context) == ("Transitioning", "ml", "stand-in")
    assert service.scoring_uri == "http://ml.example.com/api/v1/service/mnist/score"
    assert service.swagger_uri == "http://ml.example.com/api/v1/service/mnist/swagger.json"
    again = Webservice(ws, "mnist")  # from another process: the record knows the cluster
    assert isinstance(again, KubernetesWebservice) and again.target["context"] == "stand-in"


def test_a_deployment_of_that_name_from_elsewhere_is_not_taken_over(ws, tmp_path, api, deployed):
    api.scenario = "healthy"  # its Deployment says it was deployed from /home/jovyan/.mlmagics
    with pytest.raises(ConflictError, match="deployed from workspace /home/jovyan/.mlmagics"):
        deployed(ws, tmp_path, api)
    assert Webservice.list(ws) == []


def test_waiting_follows_the_rollout_like_kubectl_and_ends_healthy(ws, tmp_path, api, capsys, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "healthy"
    service.wait_for_deployment(show_output=True)
    out = capsys.readouterr().out.splitlines()
    assert out == ["Transitioning", 'deployment "mnist" successfully rolled out', "Healthy",
                   'AKS service creation operation finished, operation "Succeeded"']  # fmt: skip
    assert Webservice(ws, "mnist").state == "Healthy"


def test_a_failing_init_ends_the_wait_with_the_diagnosis_events_and_traceback(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "readiness-503"
    progress = Recorder()
    with pytest.raises(WebserviceException) as caught:
        service.wait_for_deployment(progress=progress)
    message = caught.value.message
    assert message.startswith("Service deployment polling reached non-successful terminal state, current service state: Failed")
    assert "ProbeFailure: the scoring script did not start: GET /ready answers 503" in message
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in message
    assert "RuntimeError: the model file is corrupt\n    Traceback (most recent call last)" in message
    assert Webservice(ws, "mnist").state == "Failed"
    assert progress.events[-1][0] == "done" and progress.events[-1][1][0] is False


def test_a_crash_loop_shows_the_previous_containers_log(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "crash-loop"
    with pytest.raises(WebserviceException, match="CrashLoopBackOff: container 'scoring' exited with code 1"):
        service.wait_for_deployment()
    logs = [r for r in api.calls("GET") if r["path"].endswith("/log")]
    assert logs[0]["path"] == "/api/v1/namespaces/ml/pods/mnist-7d9c5b6f4-x2x9q/log"
    assert logs[0]["query"] == {"container": "scoring", "tailLines": "20", "previous": "true"}


def test_a_failure_is_reported_within_a_poll_of_kubernetes_knowing_it(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "container-creating"
    switch = threading.Timer(1.0, lambda: setattr(api, "scenario", "image-pull-backoff"))
    switch.start()
    started = time.monotonic()
    with pytest.raises(WebserviceException, match="ImagePullBackOff: cannot pull image"):
        service.wait_for_deployment(timeout_sec=600)
    took = time.monotonic() - started
    switch.join()
    print(f"failure reported {took - 1.0:.2f} s after the API server had it")
    assert took < 3.0


def test_an_update_rolls_out_and_a_failing_one_is_rolled_back(ws, tmp_path, api, pushed_image, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "healthy"
    service.wait_for_deployment()
    v2 = pushed_image(ws, tmp_path, "v2", "registry.example.com/team/echo:2")
    service.update(image=v2)
    assert (service.image_id, service.state, service.target["image"]) == ("echo:2", "Healthy", "registry.example.com/team/echo:2")
    v3 = pushed_image(ws, tmp_path, "v3", "registry.example.com/team/echo:3")
    api.scenario = "update-new-version-crashing"
    api.requests.clear()
    with pytest.raises(WebserviceException, match="update of mnist to echo:3 failed and was rolled back; echo:2 keeps serving"):
        service.update(image=v3)
    applied = [
        p["body"]["spec"]["template"]["spec"]["containers"][0]["image"]
        for p in api.calls("PATCH")
        if p["body"]["kind"] == "Deployment"
    ]
    assert applied == ["registry.example.com/team/echo:3", "registry.example.com/team/echo:2"]
    assert Webservice(ws, "mnist").image_id == "echo:2"


def test_regenerating_a_key_updates_the_secret_and_nudges_the_pods(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "healthy"
    api.requests.clear()
    service.regen_key("Secondary")
    secret, pod = api.calls("PATCH")
    assert secret["path"] == PLURALS["Secret"] + "/mnist-keys" and secret["content_type"] == "application/apply-patch+yaml"
    keys = json.loads(base64.b64decode(secret["body"]["data"]["keys.json"]))
    assert keys == {"primary_key": service.get_keys()[0], "secondary_key": service.get_keys()[1]}
    assert pod["path"] == "/api/v1/namespaces/ml/pods/mnist-7d9c5b6f4-x2x9q"
    assert pod["content_type"] == "application/strategic-merge-patch+json"
    assert "mlmagics.io/keys-updated" in pod["body"]["metadata"]["annotations"]


def test_logs_come_from_the_pods(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api)
    api.scenario = "update-new-version-crashing"  # two pods
    logs = service.get_logs(num_lines=50)
    assert logs.count("==> pod/mnist-") == 2 and "the model file is corrupt" in logs


def test_delete_removes_every_labelled_object_and_an_update_removes_what_is_no_longer_wanted(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api, ingress_host="ml.example.com")
    api.scenario = "healthy"
    api.existing = list(service.applied)  # what the lists now report: the objects just applied
    assert isinstance(service, KubernetesWebservice), "a live deploy is a service; a dry run's result is a plan"
    api.requests.clear()
    service.update(ingress_host="")  # "" (None keeps the current value, as in v1): no Ingress any more
    deletes = [(d["path"], d["query"]) for d in api.calls("DELETE")]
    assert deletes == [(PLURALS["Ingress"] + "/mnist", {"propagationPolicy": "Background"})]
    assert service.scoring_uri == "http://mnist.ml.svc.cluster.local/api/v1/service/mnist/score"
    api.requests.clear()
    service.delete()
    assert [d["path"] for d in api.calls("DELETE")] == [
        PLURALS["Ingress"] + "/mnist", PLURALS["HorizontalPodAutoscaler"] + "/mnist", PLURALS["Service"] + "/mnist",
        PLURALS["Deployment"] + "/mnist", PLURALS["Secret"] + "/mnist-keys",
    ]  # fmt: skip
    assert Webservice.list(ws) == []


def test_a_network_policy_is_applied_dropped_on_update_and_deleted_last(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api, network_policy=["10.0.0.0/8"])
    applied = [p for p in api.calls("PATCH") if p["path"] == PLURALS["NetworkPolicy"] + "/mnist"]
    assert [p["body"]["spec"]["ingress"][0]["from"] for p in applied] == [[{"ipBlock": {"cidr": "10.0.0.0/8"}}]]
    api.scenario = "healthy"
    api.existing = list(service.applied)
    api.requests.clear()
    service.update(network_policy=False)  # None keeps it; False removes it
    assert [d["path"] for d in api.calls("DELETE")] == [PLURALS["NetworkPolicy"] + "/mnist"]
    service.update(network_policy=True)
    api.existing = list(service.applied)
    api.requests.clear()
    service.delete()
    deleted = [d["path"] for d in api.calls("DELETE")]
    assert deleted[-1] == PLURALS["NetworkPolicy"] + "/mnist", "the pods stay shielded until they are gone"


def test_collected_data_on_a_claim_stays_there_and_delete_says_so(ws, tmp_path, api, deployed):
    service = deployed(ws, tmp_path, api, collect_model_data=True, model_data_claim="model-data")
    api.requests.clear()
    with pytest.raises(UserError, match="is on the PersistentVolumeClaim model-data, which mlmagics did not create"):
        service.delete(delete_collected_data=True)
    assert api.calls("DELETE") == [] and Webservice(ws, "mnist").name == "mnist", "refused before anything was deleted"
    service.delete()
    assert service.collected_data_kept == "the PersistentVolumeClaim model-data in namespace ml (a folder per pod)"
    assert service.deleted_summary().splitlines()[-1] == (
        "The data mnist collected stays in the PersistentVolumeClaim model-data in namespace ml (a folder per pod) "
        "(kubectl, on the claim mlmagics did not create, removes it)"
    )
    lost = deployed(ws, tmp_path, api, collect_model_data=True)  # in the pods: nothing stays
    lost.delete(delete_collected_data=True)
    assert lost.collected_data_kept is None and lost.deleted_summary() == "Deleted service mnist"


def test_a_cluster_that_disappeared_can_be_forgotten(ws, tmp_path, api, monkeypatch, deployed):
    service = deployed(ws, tmp_path, api)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    service = Webservice(ws, "mnist")
    with pytest.raises(TargetUnavailable):
        service.delete()
    service.delete(forget=True)
    assert Webservice.list(ws) == []


def test_the_cluster_can_be_attached_the_v1_way(api, capsys):
    cluster = ComputeTarget.attach(None, "myaks", KubernetesCompute.attach_configuration(cluster_name="stand-in"))
    assert (cluster.name, cluster.context, cluster.namespace) == ("myaks", "stand-in", "ml")
    with pytest.raises(UserError, match="creating a Kubernetes cluster is out of scope"):
        KubernetesCompute.provisioning_configuration()
    with pytest.raises(UserError, match="resource_group/resource_id are Azure's"):
        KubernetesCompute.attach_configuration(resource_group="rg", cluster_name="aks1")


def test_services_are_found_in_the_cluster_by_their_labels_and_listing_survives_an_unreachable_cluster(
    ws, tmp_path, api, monkeypatch, deployed, api_responses
):
    api.existing = [json.loads((api_responses / "healthy" / "deployment.json").read_text())]
    found = KubernetesCompute.attach().services()
    assert [(s.name, s.namespace, s.image, s.image_id, s.ready_replicas) for s in found] == [
        ("mnist", "ml", "registry.example.com/team/echo:2", "echo:2", 1)
    ]
    listing = [r for r in api.calls("GET") if r["path"] == PLURALS["Deployment"]][-1]
    assert listing["query"] == {"labelSelector": "app.kubernetes.io/managed-by=mlmagics,mlmagics.io/service"}
    deployed(ws, tmp_path, api)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    [service] = Webservice.list(ws, refresh=True)
    assert service.state == "Transitioning" and "no Kubernetes cluster configured" in service.error


def test_a_registry_in_the_configuration_builds_and_pushes_the_image_before_anything_is_applied(
    ws, tmp_path, api, monkeypatch, echo_image, docker_engine, registry
):
    """Real Docker engine and registry (as the Docker target's tests use them); the cluster is the stand-in."""
    import requests

    _, base = docker_engine
    monkeypatch.setenv("MLMAGICS_BASE_IMAGE", base)
    monkeypatch.setenv("MLMAGICS_IMAGE_REPO", "mlmagics-k8s-test")
    image = echo_image(ws, tmp_path / "src", name="k8secho")
    progress = Recorder()
    service = Webservice.deploy_from_image(
        ws, "mnist", image, AksWebservice.deploy_configuration(registry=registry), progress=progress
    )
    try:
        location = f"{registry}/mlmagics-k8s-test/k8secho:{image.version}"
        assert service.target["image"] == location == image.image_location
        deployment = next(p["body"] for p in api.calls("PATCH") if p["body"]["kind"] == "Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == location
        tags = requests.get(f"http://{registry}/v2/mlmagics-k8s-test/k8secho/tags/list", timeout=5).json()["tags"]
        assert str(image.version) in tags
        assert not any(kind == "done" for kind, _ in progress.events[:-1]), "the push is a step of the deploy, not its end"
        assert any(f"pushed {location}" in line for line in progress.lines)
    finally:
        service.delete()
        image.delete()  # and its local Docker image


def test_the_built_image_runs_as_the_pod_spec_says(ws, tmp_path, monkeypatch, echo_image, free_port, docker_engine):
    """The Deployment's container (command, env, user, capabilities, volumes) run by Docker from the real image:
    the closest thing to a kubelet on this machine. Probes, key auth and the Ingress path must work."""
    import requests

    from mlmagics.core.targets.kubernetes import manifests as m

    client, base = docker_engine
    monkeypatch.setenv("MLMAGICS_BASE_IMAGE", base)
    monkeypatch.setenv("MLMAGICS_IMAGE_REPO", "mlmagics-k8s-test")
    image = echo_image(ws, tmp_path / "src", name="k8secho")
    tag = DockerWebservice.build_image(image)
    spec = m.ServiceSpec(name="mnist", image_location=tag, image_id=image.id, entry_script=image.execution_script,
                         model_ids=list(image.model_ids), keys=("k8s-primary", "k8s-secondary"))  # fmt: skip
    manifests = {x["kind"]: x for x in m.render(AksWebservice.deploy_configuration(), spec)}
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    keys = tmp_path / "secret-volume"
    keys.mkdir(mode=0o755)
    (keys / "keys.json").write_bytes(base64.b64decode(manifests["Secret"]["data"]["keys.json"]))
    (keys / "keys.json").chmod(0o444)
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"

    def locked_down(c: dict) -> dict:  # a container's securityContext, as Docker takes it
        assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]
        return dict(user=user, read_only=True, cap_drop=c["securityContext"]["capabilities"]["drop"],
                    security_opt=["no-new-privileges"])  # fmt: skip

    app = tmp_path / "app-empty-dir"  # an emptyDir: an empty folder everyone may write to
    app.mkdir(mode=0o777)
    app.chmod(0o777)
    (copy,) = pod["initContainers"]
    (mount,) = copy["volumeMounts"]
    client.containers.run(copy["image"], command=copy["command"], volumes={str(app): {"bind": mount["mountPath"], "mode": "rw"}},
                          remove=True, **locked_down(copy))  # fmt: skip
    app_mount = next(v for v in container["volumeMounts"] if v["name"] == "app")
    port = free_port()
    running = client.containers.run(
        container["image"],
        command=container["command"],
        environment={e["name"]: e["value"] for e in container["env"]},
        volumes={
            str(keys): {"bind": m.LAYOUT.keys_dir, "mode": "ro"},
            str(app / app_mount["subPath"]): {"bind": app_mount["mountPath"], "mode": "rw"},
        },
        tmpfs={m.LAYOUT.scratch_dir: ""},
        ports={f"{m.LAYOUT.port}/tcp": ("127.0.0.1", port)},
        detach=True,
        **locked_down(container),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base_url + container["readinessProbe"]["httpGet"]["path"], timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            running.reload()
            assert running.status == "running" and time.monotonic() < deadline, running.logs().decode()[-3000:]
            time.sleep(0.2)
        assert requests.get(base_url + container["livenessProbe"]["httpGet"]["path"], timeout=2).text == "Healthy"
        score = base_url + "/api/v1/service/mnist/score"
        assert requests.post(score, json={"a": 1}, timeout=5).status_code == 401
        answer = requests.post(score, json={"a": 1}, headers={"Authorization": "Bearer k8s-secondary"}, timeout=5)
        assert answer.status_code == 200 and answer.json() == {"version": "v1", "model": "weights of tiny", "input": {"a": 1}}
        # the working folder (the init container's copy) and /tmp take writes; the rest of the image does not
        assert running.exec_run(["sh", "-c", "touch score.out /tmp/scratch && ls azureml-models/tiny/1"]).exit_code == 0
        refused = running.exec_run(["touch", "/opt/mlmagics/models/tiny/1/x", "/written"])
        assert refused.exit_code != 0 and refused.output.decode().count("Read-only file system") == 2, refused.output
    finally:
        running.remove(force=True)
        image.delete()
