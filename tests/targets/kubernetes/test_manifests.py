"""The manifests of the Kubernetes target: valid against the official Kubernetes schemas (kubernetes-validate,
strict, the oldest and newest bundled versions) for a matrix of configurations, saying what the
configuration says — and the container they describe really serves: the scoring runtime, started with
the Deployment's own command and environment, answers its probes, checks keys, and picks up a new key
from the Secret volume the way the kubelet writes it."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlmagics.core import Image, Workspace
from mlmagics.core.targets.kubernetes import AksWebservice
from mlmagics.core.targets.kubernetes import manifests as m
from mlmagics.core.targets.kubernetes.rollout import explain_log
from mlmagics.serving.settings import resolve

ROOT = Path(__file__).resolve().parents[3]
KEYS = ("primary-key-1", "secondary-key-1")

MATRIX = {
    "defaults": {},
    "seed autoscale 1..4 at 30%": dict(autoscale_enabled=True, autoscale_target_utilization=30, autoscale_min_replicas=1,
                                       autoscale_max_replicas=4),
    "three fixed replicas, no auth": dict(autoscale_enabled=False, num_replicas=3, auth_enabled=False),
    "ingress with tls": dict(ingress_host="ml.example.com", ingress_tls_secret="ml-example-tls", ingress_class="nginx",
                             namespace="ml"),
    "gpu node pool": dict(gpu_cores=1, cpu_cores=2, memory_gb=8, cpu_cores_limit=4, memory_gb_limit=12,
                          node_selector={"agentpool": "gpu"}, image_pull_secret=["acr-pull", "mirror-pull"],
                          tolerations=[{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
    "in-flight autoscaling": dict(autoscale_enabled=True, autoscale_min_replicas=2, autoscale_max_replicas=20,
                                  autoscale_metric="requests_in_flight", replica_max_concurrent_requests=2),
    "v1 probe and service settings": dict(period_seconds=5, initial_delay_seconds=30, timeout_seconds=3, success_threshold=2,
                                          failure_threshold=5, scoring_timeout_ms=120000, max_request_wait_time=2000,
                                          collect_model_data=True, cors_origins=["https://app.example.com"], workers=3,
                                          service_type="LoadBalancer", tags={"team": "vision"}, description="digits"),
    "network policy for anyone": dict(network_policy=True),
    "network policy from sources, data on a claim": dict(collect_model_data=True, model_data_claim="model-data",
                                                         network_policy=["10.0.0.0/8", {"namespaceSelector": {}}]),
}  # fmt: skip


def spec(**overrides) -> m.ServiceSpec:
    values = dict(name="mnist", image_location="registry.example.com/team/echo:2", image_id="echo:2", entry_script="score.py",
                  model_ids=["tiny:1"], namespace="ml", keys=KEYS, workspace="/home/jovyan/.mlmagics")  # fmt: skip
    return m.ServiceSpec(**{**values, **overrides})


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {x["kind"]: x for x in manifests}


def container(manifests: list[dict]) -> dict:
    return by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_manifest_validates_against_the_official_schemas(case, validate_manifest):
    manifests = m.render(AksWebservice.deploy_configuration(**MATRIX[case]), spec())
    for manifest in manifests:
        validate_manifest(manifest)
    deployment = by_kind(manifests)["Deployment"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for manifest in manifests:  # every object is found by delete()'s selector, and nothing more is needed
        assert manifest["metadata"]["labels"][m.SERVICE_LABEL] == "mnist"
        assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlmagics"
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_which_objects_a_configuration_makes():
    kinds = {case: [x["kind"] for x in m.render(AksWebservice.deploy_configuration(**MATRIX[case]), spec())] for case in MATRIX}
    assert kinds["defaults"] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert kinds["three fixed replicas, no auth"] == ["Deployment", "Service", "PodDisruptionBudget"]
    assert kinds["in-flight autoscaling"] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    assert kinds["ingress with tls"][-1] == "Ingress"
    assert kinds["network policy for anyone"] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"]


def test_the_pods_root_filesystem_is_read_only_and_what_may_be_written_is_bounded():
    pod = by_kind(m.render(AksWebservice.deploy_configuration(), spec()))["Deployment"]["spec"]["template"]["spec"]
    (copy,), (server,) = pod["initContainers"], pod["containers"]
    for c in (copy, server):
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "readOnlyRootFilesystem": True}, c["name"]  # fmt: skip
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"} and pod["securityContext"]["runAsNonRoot"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": m.SCRATCH_SIZE_LIMIT}
    assert volumes["app"]["emptyDir"] == {"sizeLimit": m.APP_SIZE_LIMIT}
    mounts = {v["mountPath"]: v for v in server["volumeMounts"]}
    assert mounts["/tmp"]["name"] == "scratch"
    assert mounts["/var/azureml-app"] == {"name": "app", "mountPath": "/var/azureml-app", "subPath": "app"}, "the working folder"
    # the init container copies the image's app folder there first, with the server's image and no more resources
    assert copy["image"] == server["image"] and copy["resources"] == server["resources"]
    assert copy["command"][:2] == ["python", "-c"] and copy["command"][3:] == ["/var/azureml-app", "/mlmagics/app-copy/app"]
    assert copy["volumeMounts"] == [{"name": "app", "mountPath": "/mlmagics/app-copy"}]
    assert "&id" not in m.to_yaml(m.render(AksWebservice.deploy_configuration(), spec())), "no YAML anchors or aliases"


def test_the_network_policy_lets_traffic_in_only_on_the_service_port():
    manifests = m.render(AksWebservice.deploy_configuration(network_policy=True), spec())
    policy, pods = by_kind(manifests)["NetworkPolicy"], by_kind(manifests)["Deployment"]["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods["metadata"]["labels"].items(), "it applies to the pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open: a script may call out"
    assert policy["spec"]["ingress"][0] == {"ports": [{"protocol": "TCP", "port": "http"}]}, "from anyone, on that port only"
    health = {"ports": [{"protocol": "TCP", "port": "health"}], "from": [{"namespaceSelector": {}}]}
    assert policy["spec"]["ingress"][1] == health, "probes and Prometheus: pods of the cluster only"
    assert [p["name"] for p in container(manifests)["ports"]] == ["http", "health"], "the ports the policy names"
    sources = ["10.0.0.0/8", {"namespaceSelector": {"matchLabels": {"team": "web"}}}]
    limited = by_kind(m.render(AksWebservice.deploy_configuration(network_policy=sources), spec()))["NetworkPolicy"]
    assert limited["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}, sources[1]]
    assert "NetworkPolicy" not in by_kind(m.render(AksWebservice.deploy_configuration(), spec())), "mlmagics-only: off by default"


def test_collected_data_goes_with_the_pod_unless_a_claim_keeps_it_in_a_folder_per_pod():
    def data_dir(c: dict) -> str:  # as the runtime reads it in the pod
        return resolve({}, environ={e["name"]: e["value"] for e in c["env"] if "value" in e}).data_collection_dir

    lost = container(m.render(AksWebservice.deploy_configuration(collect_model_data=True), spec()))
    assert data_dir(lost) == "/tmp/model-data", "in the pod's /tmp emptyDir"
    manifests = m.render(AksWebservice.deploy_configuration(collect_model_data=True, model_data_claim="model-data"), spec())
    kept = container(manifests)
    assert data_dir(kept) == m.LAYOUT.data_dir
    mount = next(v for v in kept["volumeMounts"] if v["name"] == "model-data")
    assert mount == {"name": "model-data", "mountPath": m.LAYOUT.data_dir, "subPathExpr": "$(POD_NAME)"}
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in kept["env"]
    volumes = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-data", "persistentVolumeClaim": {"claimName": "model-data"}} in volumes


def test_the_deployment_runs_the_server_non_root_with_v1s_resources_and_probes():
    config = AksWebservice.deploy_configuration(**MATRIX["v1 probe and service settings"])
    manifests = m.render(config, spec())
    pod = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    c = container(manifests)
    assert c["command"] == ["python", "-m", "mlmagics.serving"] and c["ports"][0]["containerPort"] == 5001
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    assert c["livenessProbe"] == {"httpGet": {"path": "/", "port": "health"}, "initialDelaySeconds": 30, "periodSeconds": 5,
                                  "timeoutSeconds": 3, "successThreshold": 1, "failureThreshold": 5}  # fmt: skip
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["readinessProbe"]["successThreshold"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001, (
        "the Docker image's own user"
    )
    assert c["securityContext"]["allowPrivilegeEscalation"] is False and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 135, "scoring_timeout_ms (120 s) + drain time"
    deployment = by_kind(manifests)["Deployment"]
    assert json.loads(deployment["metadata"]["annotations"]["mlmagics.io/tags"]) == {"team": "vision"}
    assert deployment["metadata"]["annotations"]["mlmagics.io/image-id"] == "echo:2"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert by_kind(manifests)["Service"]["spec"]["type"] == "LoadBalancer"


def test_the_environment_gives_the_runtime_exactly_the_configured_settings():
    config = AksWebservice.deploy_configuration(**MATRIX["v1 probe and service settings"])
    env = {e["name"]: e["value"] for e in container(m.render(config, spec()))["env"]}
    settings = resolve({}, environ=env)  # how the runtime reads them in the pod
    assert settings.auth_enabled and settings.keys_file == "/var/mlmagics/keys/keys.json"
    assert (settings.scoring_timeout_ms, settings.max_request_wait_time, settings.workers) == (120000, 2000, 3)
    assert settings.collect_model_data and settings.data_collection_dir == "/tmp/model-data"
    assert settings.cors_origins == ("https://app.example.com",)
    assert settings.max_body_bytes == 100 * 1024 * 1024
    assert (settings.host, settings.port, settings.service_name) == ("0.0.0.0", 5001, "mnist")
    assert settings.entry_script == "/var/azureml-app/score.py" and settings.app_root == "/var/azureml-app"
    assert settings.model_dir == "/var/azureml-app/azureml-models/tiny/1"
    assert settings.service_path_prefix == "/api/v1/service/mnist" and settings.service_version == "2"
    many = {e["name"]: e["value"] for e in container(m.render(config, spec(model_ids=["a:1", "b:3"])))["env"]}
    assert many["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models"


def test_autoscaling_maps_v1s_utilization_to_cpu_or_to_the_in_flight_gauge():
    hpa = by_kind(m.render(AksWebservice.deploy_configuration(**MATRIX["seed autoscale 1..4 at 30%"]), spec()))[
        "HorizontalPodAutoscaler"
    ]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 30}}}
    ]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60, "v1 scaled down after about a minute"
    manifests = m.render(AksWebservice.deploy_configuration(**MATRIX["in-flight autoscaling"]), spec())
    metric = by_kind(manifests)["HorizontalPodAutoscaler"]["spec"]["metrics"][0]
    assert metric["pods"] == {
        "metric": {"name": "mlmagics_requests_in_flight"},
        "target": {"type": "AverageValue", "averageValue": "1400m"},
    }
    assert "replicas" not in by_kind(manifests)["Deployment"]["spec"], "the HPA owns the replica count"
    annotations = by_kind(manifests)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "5000", "prometheus.io/path": "/metrics"}, (
        "scraped on the health port, where /metrics needs no key"
    )
    fixed = by_kind(m.render(AksWebservice.deploy_configuration(**MATRIX["three fixed replicas, no auth"]), spec()))
    assert fixed["Deployment"]["spec"]["replicas"] == 3 and fixed["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_keys_come_from_a_secret_mounted_as_a_folder_so_updates_reach_running_pods():
    manifests = m.render(AksWebservice.deploy_configuration(), spec())
    secret = by_kind(manifests)["Secret"]
    assert json.loads(base64.b64decode(secret["data"]["keys.json"])) == {"primary_key": KEYS[0], "secondary_key": KEYS[1]}
    mount = next(v for v in container(manifests)["volumeMounts"] if v["name"] == "keys")
    assert mount == {"name": "keys", "mountPath": "/var/mlmagics/keys", "readOnly": True}, (
        "no subPath: subPath mounts never update"
    )
    other_keys = m.render(AksWebservice.deploy_configuration(), spec(keys=("new", "keys")))
    template = by_kind(manifests)["Deployment"]["spec"]["template"]
    assert by_kind(other_keys)["Deployment"]["spec"]["template"] == template, "a new key does not restart the pods"
    other_image = m.render(
        AksWebservice.deploy_configuration(), spec(image_location="registry.example.com/team/echo:3", image_id="echo:3")
    )
    new_hash = by_kind(other_image)["Deployment"]["spec"]["template"]["metadata"]["labels"][m.TEMPLATE_HASH_LABEL]
    assert new_hash != template["metadata"]["labels"][m.TEMPLATE_HASH_LABEL], "a new version is told apart from the old one"


def test_the_ingress_serves_v1s_uri_shape_with_tls():
    config = AksWebservice.deploy_configuration(**MATRIX["ingress with tls"])
    ingress = by_kind(m.render(config, spec()))["Ingress"]
    assert ingress["spec"]["tls"] == [{"hosts": ["ml.example.com"], "secretName": "ml-example-tls"}]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/api/v1/service/mnist"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "100m"
    assert m.scoring_uri(config, "mnist", "ml") == "https://ml.example.com/api/v1/service/mnist/score"
    assert (
        m.scoring_uri(AksWebservice.deploy_configuration(), "mnist", "ml")
        == "http://mnist.ml.svc.cluster.local/api/v1/service/mnist/score"
    )


@pytest.mark.parametrize("cores, text", [(0.1, "100m"), (1, "1"), (1.5, "1500m"), (0.25, "250m")])
def test_cpu_quantities(cores, text):
    assert m.cpu_quantity(cores) == text


@pytest.mark.parametrize("gb, text", [(0.5, "512Mi"), (1, "1Gi"), (2.5, "2560Mi"), (0.1, "102Mi")])
def test_memory_quantities(gb, text):
    assert m.memory_quantity(gb) == text


def test_written_yaml_keeps_the_keys_apart_and_private(tmp_path):
    import yaml

    manifests = m.render(AksWebservice.deploy_configuration(), spec())
    main, secret = m.write(manifests, tmp_path, "mnist")
    assert [d["kind"] for d in yaml.safe_load_all(main.read_text()) if d] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert [d["kind"] for d in yaml.safe_load_all(secret.read_text()) if d] == ["Secret"]
    assert secret.stat().st_mode & 0o777 == 0o600
    assert KEYS[0] not in main.read_text()
    assert "<redacted>" in m.to_yaml(manifests, redact_secrets=True)
    without_auth = m.render(AksWebservice.deploy_configuration(auth_enabled=False), spec())
    assert m.write(without_auth, tmp_path, "mnist") == [main] and not secret.exists(), "no stale keys file left"


def _kubelet_writes_secret(folder: Path, files: dict[str, bytes], generation: int) -> None:
    """How the kubelet updates a Secret volume: a new timestamped folder, then an atomic swap of `..data`."""
    data = folder / f"..2026_03_02_09_{generation:02d}"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_bytes(content)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


class Pod:
    """The Deployment's container run here as a process: its command and env, the image's files laid out as the
    Docker target lays them out, paths moved into tmp_path through the layout. Stopped like the kubelet stops it."""

    def __init__(self, tmp_path: Path, image: Image, ports: tuple[int, int]) -> None:
        import shutil

        app = tmp_path / "var" / "azureml-app"
        shutil.copytree(image.app_dir, app)
        for model in image.models:
            folder = app / "azureml-models" / model.name / str(model.version)
            folder.mkdir(parents=True)
            shutil.copy(model.path, folder / model.path.name)
        self.keys_dir, self.log_path = tmp_path / "keys", tmp_path / "pod.log"
        layout = m.ContainerLayout(app_root=str(app), port=ports[0], health_port=ports[1], python=sys.executable,
                                   keys_dir=str(self.keys_dir), scratch_dir=str(tmp_path / "scratch"))  # fmt: skip
        self.manifests = m.render(AksWebservice.deploy_configuration(),
                                  spec(image_id=image.id, model_ids=list(image.model_ids), layout=layout))  # fmt: skip
        self.container = container(self.manifests)
        _kubelet_writes_secret(
            self.keys_dir, {"keys.json": base64.b64decode(by_kind(self.manifests)["Secret"]["data"]["keys.json"])}, 1
        )
        (tmp_path / "scratch").mkdir()
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **{e["name"]: e["value"] for e in self.container["env"]}}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.container["command"], env=env, cwd=tmp_path / "scratch", stdout=self._log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        self.url = f"http://127.0.0.1:{layout.port}"
        self.ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}

    def probe(self, kind: str) -> requests.Response:
        """What the kubelet's readiness or liveness probe gets (waits while nothing answers yet), on the port it names."""
        deadline = time.monotonic() + 30
        get = self.container[kind]["httpGet"]
        while True:
            try:
                return requests.get(f"http://127.0.0.1:{self.ports[get['port']]}{get['path']}", timeout=2)
            except requests.RequestException:
                assert self.process.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
                time.sleep(0.05)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)  # what the kubelet sends after preStop
        grace = by_kind(self.manifests)["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        code = self.process.wait(grace)
        self._log.close()
        return code


@pytest.fixture
def start_pod(tmp_path, echo_image, free_port):
    """`start_pod(script=None)`: a Pod of an echo image (or of `script`) in tmp_path; the test stops it."""

    def start(script: str | None = None) -> Pod:
        image = echo_image(Workspace(tmp_path / "ws"), tmp_path / "src", script=script)
        return Pod(tmp_path, image, (free_port(), free_port()))

    return start


def test_the_runtime_started_as_the_deployment_says_serves_probes_keys_and_key_rotation(tmp_path, monkeypatch, start_pod):
    monkeypatch.chdir(tmp_path)
    pod = start_pod()
    try:
        assert pod.probe("readinessProbe").status_code == 200
        assert pod.probe("livenessProbe").text == "Healthy"
        annotations = by_kind(pod.manifests)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        scrape = f"http://127.0.0.1:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
        assert int(annotations["prometheus.io/port"]) == pod.ports["health"] and requests.get(scrape, timeout=5).ok, (
            "Prometheus scrapes the health port without a key"
        )
        assert requests.get(pod.url + "/api/v1/service/mnist/metrics", timeout=5).status_code == 401, "the scoring port asks"
        score = pod.url + "/api/v1/service/mnist/score"  # the Ingress path reaches the runtime unchanged
        assert requests.post(score, json={"x": 1}, timeout=5).status_code == 401
        answer = requests.post(score, json={"x": 1}, headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=5)
        assert answer.status_code == 200 and answer.json()["input"] == {"x": 1}
        # with key auth on, /metrics wants a key too (the runtime's rule): a scraper must send one
        metrics = requests.get(pod.url + "/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=5)
        assert "mlmagics_requests_in_flight" in metrics.text
        new = json.dumps({"primary_key": "rotated-primary", "secondary_key": KEYS[1]}).encode()
        _kubelet_writes_secret(pod.keys_dir, {"keys.json": new}, 2)  # regen_key(), as the pod sees it
        deadline = time.monotonic() + 5
        while requests.post(score, json={}, headers={"Authorization": "Bearer rotated-primary"}, timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the new key was not picked up without a restart"
            time.sleep(0.2)
        assert requests.post(score, json={}, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=5).status_code == 401
    finally:
        code = pod.stop()
    assert code == 0


def test_a_failing_init_makes_the_readiness_probe_get_503_which_the_rollout_diagnosis_reads(
    tmp_path, monkeypatch, start_pod, failing_init
):
    monkeypatch.chdir(tmp_path)
    pod = start_pod(script=failing_init)
    try:
        ready = pod.probe("readinessProbe")
        # the kubelet's event then reads "Readiness probe failed: HTTP probe failed with statuscode: 503"
        assert ready.status_code == 503 and ready.json()["status"] == "Failed"
        # the reason is in the pod's log, which the diagnosis reads (and for a person with the key, in /ready)
        detailed = requests.get(pod.url + "/ready", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=5)
        assert "the model file is corrupt" in detailed.json()["message"]
        assert pod.probe("livenessProbe").status_code == 200, "alive: the pod is not restarted in a loop, it says why"
    finally:
        pod.stop()
    assert "RuntimeError: the model file is corrupt" in explain_log(pod.log_path.read_text())


def test_the_pods_expect_the_layout_the_docker_target_builds(tmp_path, monkeypatch, echo_image):
    from mlmagics.core.targets import container as layout
    from mlmagics.core.targets.docker import build

    monkeypatch.chdir(tmp_path)
    image = echo_image(Workspace(tmp_path / "ws"), tmp_path / "src")
    assert (m.LAYOUT.app_root, m.LAYOUT.port, m.LAYOUT.user) == (layout.APP, layout.PORT, layout.UID)
    assert m.LAYOUT.model_dir(image.model_ids) == build.model_dir(image)
    env = {
        e["name"]: e["value"]
        for e in container(m.render(AksWebservice.deploy_configuration(), spec(entry_script=image.execution_script)))["env"]
    }
    assert env["AZUREML_ENTRY_SCRIPT"] == image.execution_script and env["MLMAGICS_SERVE_INIT_FAILURE"] == "true"
    monkeypatch.delenv("MLMAGICS_IMAGE_REPO", raising=False)
    assert m.planned_location("127.0.0.1:5000", "echo", 1) == "127.0.0.1:5000/" + build.tag_for(image)
    assert m.planned_location(None, "echo", 1) == "registry.invalid/mlmagics/echo:1"
