"""The seed's AKS flow on a live cluster when one is configured, else in dry-run mode.

Live: set MLMAGICS_TEST_KUBE_CONTEXT to a kubeconfig context, MLMAGICS_TEST_REGISTRY to a registry the
cluster pulls from (pushed to with the local Docker engine), and optionally MLMAGICS_TEST_KUBE_NAMESPACE
(default: the context's) and MLMAGICS_TEST_INGRESS_HOST (else the Service is a LoadBalancer, which
k3s/k3d, AKS, EKS and GKE provide). The flow: push, deploy, wait, score, rotate a key, read logs,
update, a failing update rolled back, a failing init() diagnosed, delete.

Without a context (no API server can be installed on these machines) the same calls run with
dry_run=True and the manifests they write are checked against the official schemas — the
manifests are what a cluster would have received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from mlmagics import display as show
from mlmagics.core import DockerWebservice, Image, Webservice, WebserviceException, Workspace
from mlmagics.core.targets.kubernetes import AksWebservice
from mlmagics.core.targets.kubernetes.cluster import KubernetesCompute

CONTEXT = os.environ.get("MLMAGICS_TEST_KUBE_CONTEXT")
REGISTRY = os.environ.get("MLMAGICS_TEST_REGISTRY")
NAMESPACE = os.environ.get("MLMAGICS_TEST_KUBE_NAMESPACE")
INGRESS_HOST = os.environ.get("MLMAGICS_TEST_INGRESS_HOST")
SEED_AUTOSCALE = dict(autoscale_enabled=True, autoscale_target_utilization=30, autoscale_min_replicas=1, autoscale_max_replicas=4)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workspace = Workspace(tmp_path / "ws")
    yield workspace
    for service in Webservice.list(workspace):  # never leave objects in a cluster
        service.delete(forget=True)


def documents(path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.skipif(bool(CONTEXT), reason="a cluster is configured: test_the_seed_flow_on_a_live_cluster runs instead")
def test_the_seed_flow_in_dry_run_mode_writes_valid_manifests_and_records_nothing(ws, tmp_path, echo_image, validate_manifest):
    image = echo_image(ws, tmp_path / "src")
    config = AksWebservice.deploy_configuration(**SEED_AUTOSCALE, dry_run=True, namespace="ml", registry="127.0.0.1:5000")
    service = Webservice.deploy_from_image(workspace=ws, name="aks-mnist", image=image, deployment_config=config)
    service.wait_for_deployment(show_output=True)
    assert service.state == "DryRun" and Webservice.list(ws) == [], "a dry run deploys and records nothing"
    main, secret = service.manifest_files
    docs = documents(main) + documents(secret)
    for doc in docs:
        validate_manifest(doc)
    kinds = {d["kind"]: d for d in docs}
    assert sorted(kinds) == ["Deployment", "HorizontalPodAutoscaler", "Secret", "Service"]
    assert kinds["Deployment"]["metadata"]["namespace"] == "ml"
    assert kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == "127.0.0.1:5000/mlmagics/echo:1"
    assert (kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"], service.serialize()["plannedScoringUri"]) == (
        4,
        "http://aks-mnist.ml.svc.cluster.local/api/v1/service/aks-mnist/score",
    )
    shown = show.ManifestPlan.of(service)._repr_html_()  # what a notebook shows of the plan
    assert "<redacted>" in service.yaml() and not any(key in shown + service.yaml() for key in service.get_keys())
    v2 = echo_image(ws, tmp_path / "src2", version="v2")
    service.update(image=Image(ws, id=v2.id), dry_run=True)  # what an update would apply
    assert documents(main)[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "127.0.0.1:5000/mlmagics/echo:2"
    service.update(network_policy=["10.0.0.0/8"], dry_run=True)  # mlmagics only: the plan shows the NetworkPolicy too
    plan = documents(main)
    assert [d["kind"] for d in plan] == ["Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"]
    for doc in plan:
        validate_manifest(doc)


@pytest.mark.skipif(bool(CONTEXT), reason="a cluster is configured")
def test_the_cli_dry_run_writes_the_manifests_a_gitops_repository_takes(tmp_path, echo_image, validate_manifest):
    env = {**os.environ, "MLMAGICS_HOME": str(tmp_path / "ws")}
    ws = Workspace(tmp_path / "ws")
    echo_image(ws, tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlmagics", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    out = cli("service", "deploy", "aks-mnist", "--target", "aks", "--image", "echo:1", "--dry-run", "--autoscale", "2:6",
              "--namespace", "ml", "--no-auth")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Service aks-mnist is DryRun" in out.stdout
    docs = documents(tmp_path / "manifests" / "aks-mnist.yaml")
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    for doc in docs:
        validate_manifest(doc)
    assert not (tmp_path / "manifests" / "aks-mnist-keys.secret.yaml").exists(), "no keys without auth"
    assert json.loads(cli("service", "list", "--json").stdout) == []


@pytest.mark.skipif(not CONTEXT, reason="set MLMAGICS_TEST_KUBE_CONTEXT (and MLMAGICS_TEST_REGISTRY) to run against a cluster")
def test_the_seed_flow_on_a_live_cluster(ws, tmp_path, echo_image, failing_init):
    if not REGISTRY:
        pytest.fail("MLMAGICS_TEST_KUBE_CONTEXT is set: also set MLMAGICS_TEST_REGISTRY, a registry the cluster pulls from")
    cluster = KubernetesCompute.attach(context=CONTEXT, namespace=NAMESPACE)
    cluster.wait_for_completion(show_output=True)
    reach = {"ingress_host": INGRESS_HOST} if INGRESS_HOST else {"service_type": "LoadBalancer"}
    image = echo_image(ws, tmp_path / "src")
    DockerWebservice.push_image(image, REGISTRY, show_output=True)
    config = AksWebservice.deploy_configuration(**SEED_AUTOSCALE, **reach)
    service = Webservice.deploy_from_image(ws, "mlmagics-live", image, config, deployment_target=cluster)
    started = time.monotonic()
    service.wait_for_deployment(show_output=True)
    print(f"rolled out in {time.monotonic() - started:.1f} s")
    assert service.state == "Healthy"
    assert service.run(json.dumps({"a": 1}))["input"] == {"a": 1}

    service.regen_key("Primary")  # the pods read the new key from the Secret volume, no restart
    deadline = time.monotonic() + 120
    while True:
        try:
            service.run(json.dumps({"b": 2}))
            break
        except WebserviceException:
            assert time.monotonic() < deadline, "the new key did not reach the pods"
            time.sleep(2)
    print(f"new key in use after {time.monotonic() + 120 - deadline:.1f} s")
    assert "calling init()" in service.get_logs()
    assert any(s.name == "mlmagics-live" for s in cluster.services())

    v2 = echo_image(ws, tmp_path / "src2", version="v2")
    DockerWebservice.push_image(v2, REGISTRY)
    service.update(image=v2)
    assert service.run(json.dumps({}))["version"] == "v2"
    broken = echo_image(ws, tmp_path / "src3", script=failing_init)
    DockerWebservice.push_image(broken, REGISTRY)
    started = time.monotonic()
    with pytest.raises(WebserviceException, match="ProbeFailure") as caught:
        service.update(image=broken)
    print(f"failing update diagnosed in {time.monotonic() - started:.1f} s")
    assert "the model file is corrupt" in caught.value.message and "rolled back" in caught.value.message
    assert service.run(json.dumps({}))["version"] == "v2", "the previous version keeps serving"
    service.delete()
    assert all(s.name != "mlmagics-live" for s in cluster.services())
