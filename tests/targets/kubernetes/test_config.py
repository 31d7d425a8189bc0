"""`AksWebservice.deploy_configuration`: v1's parameters, effective defaults and validation rules with
v1's messages (azureml-core 1.61 `AksServiceDeploymentConfiguration.validate_configuration`), plus
the settings a cluster user needs."""

from __future__ import annotations

import argparse
import inspect

import pytest

from mlmagics import arguments
from mlmagics.core import InvalidConfiguration, UserError, WebserviceException, deploy_configuration, target_class
from mlmagics.core.configs import config_from_dict
from mlmagics.core.targets.kubernetes import (
    AksServiceDeploymentConfiguration,
    AksWebservice,
    KubernetesServiceDeploymentConfiguration,
    KubernetesWebservice,
)

V1_PARAMETERS = [  # azureml-core 1.61, in order
    "autoscale_enabled", "autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
    "autoscale_target_utilization", "collect_model_data", "auth_enabled", "cpu_cores", "memory_gb", "enable_app_insights",
    "scoring_timeout_ms", "replica_max_concurrent_requests", "max_request_wait_time", "num_replicas", "primary_key",
    "secondary_key", "tags", "properties", "description", "gpu_cores", "period_seconds", "initial_delay_seconds",
    "timeout_seconds", "success_threshold", "failure_threshold", "namespace", "token_auth_enabled", "compute_target_name",
    "cpu_cores_limit", "memory_gb_limit", "blobfuse_enabled",
]  # fmt: skip


def errors_of(**settings) -> str:
    with pytest.raises(InvalidConfiguration) as caught:
        AksWebservice.deploy_configuration(**settings)
    return caught.value.message


def test_the_aks_names_are_the_kubernetes_target():
    assert AksWebservice is KubernetesWebservice and AksServiceDeploymentConfiguration is KubernetesServiceDeploymentConfiguration
    assert target_class("aks") is target_class("kubernetes") is target_class("Kubernetes") is KubernetesWebservice


def test_v1s_parameters_come_first_in_v1s_order_and_every_one_defaults_to_none():
    parameters = inspect.signature(AksWebservice.deploy_configuration).parameters
    assert list(parameters)[: len(V1_PARAMETERS)] == V1_PARAMETERS
    assert all(p.default is None for p in parameters.values())
    assert all(p.kind is p.KEYWORD_ONLY for name, p in parameters.items() if name not in V1_PARAMETERS)


def test_the_effective_defaults_are_v1s():
    config = AksWebservice.deploy_configuration()
    expected = {
        "autoscale_enabled": True, "autoscale_min_replicas": 1, "autoscale_max_replicas": 10, "autoscale_refresh_seconds": 1,
        "autoscale_target_utilization": 70, "collect_model_data": False, "auth_enabled": True, "cpu_cores": 0.1,
        "memory_gb": 0.5, "enable_app_insights": False, "scoring_timeout_ms": 60000, "replica_max_concurrent_requests": 1,
        "max_request_wait_time": 500, "gpu_cores": 0, "period_seconds": 10, "initial_delay_seconds": 310,
        "timeout_seconds": 2, "success_threshold": 1, "failure_threshold": 3, "token_auth_enabled": False,
        "blobfuse_enabled": True, "dry_run": False, "manifests_dir": "manifests", "service_type": "ClusterIP",
    }  # fmt: skip
    assert {name: config.effective(name) for name in expected} == expected
    assert AksWebservice.deploy_configuration(num_replicas=3, autoscale_enabled=False).effective("autoscale_enabled") is False
    assert AksWebservice.deploy_configuration(num_replicas=3).effective("autoscale_enabled") is False, (
        "v1: on only without num_replicas"
    )


def test_the_seeds_configuration_is_accepted():
    config = AksWebservice.deploy_configuration(
        autoscale_enabled=True, autoscale_target_utilization=30, autoscale_min_replicas=1, autoscale_max_replicas=4
    )
    assert (config.autoscale_target_utilization, config.autoscale_max_replicas) == (30, 4)


@pytest.mark.parametrize(
    "name",
    ["cpu_cores", "memory_gb", "period_seconds", "initial_delay_seconds", "timeout_seconds", "success_threshold",
     "failure_threshold", "scoring_timeout_ms", "replica_max_concurrent_requests", "max_request_wait_time", "num_replicas"],
)  # fmt: skip
@pytest.mark.parametrize("value", [0, -1])
def test_every_numeric_setting_must_be_greater_than_zero(name, value):
    settings = {name: value}
    if name == "num_replicas":
        settings["autoscale_enabled"] = False
    assert f"{name} must be greater than zero." in errors_of(**settings)


def test_all_errors_come_in_one_exception_that_v1_code_catches_as_webservice_exception():
    with pytest.raises(WebserviceException) as caught:
        AksWebservice.deploy_configuration(cpu_cores=-1, memory_gb=0, namespace="Bad_NS", autoscale_enabled=True, num_replicas=2)
    message = caught.value.message
    assert message.startswith("Invalid KubernetesServiceDeploymentConfiguration: ")
    for part in ("cpu_cores must be greater than zero.", "memory_gb must be greater than zero.",
                 "namespace must be a valid Kubernetes namespace. Regex for validation is ^[a-z0-9]([a-z0-9-]{,61}[a-z0-9])?$",
                 "autoscale enabled and num_replicas provided."):  # fmt: skip
        assert part in message
    assert isinstance(caught.value, UserError), "faces show it as a one-line usage error"


def test_v1s_autoscale_rules():
    assert "autoscale_min_replicas cannot be greater than autoscale_max_replicas." in errors_of(
        autoscale_enabled=True, autoscale_min_replicas=5, autoscale_max_replicas=2
    )
    assert "autoscale disabled but num_replicas not provided." in errors_of(autoscale_enabled=False)
    for name in ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds", "autoscale_target_utilization"):
        assert f"{name} provided without enabling autoscaling." in errors_of(autoscale_enabled=False, num_replicas=2, **{name: 3})
        assert f"{name} must be greater than zero." in errors_of(autoscale_enabled=True, **{name: -3})


def test_like_v1_autoscale_values_need_autoscale_enabled_said_out_loud():
    # v1 checks the raw value: leaving autoscale_enabled None refuses autoscale_* values (its effective default is on)
    assert "autoscale_max_replicas provided without enabling autoscaling." in errors_of(autoscale_max_replicas=4)


def test_v1s_limit_gpu_and_token_rules():
    assert "cpu_cores_limit must be greater than or equal to cpu_cores." in errors_of(cpu_cores=2, cpu_cores_limit=1)
    assert "memory_gb_limit must be greater than or equal to memory_gb." in errors_of(memory_gb_limit=0.25)
    assert "gpu_cores must be greater than or equal to zero." in errors_of(gpu_cores=-1)
    assert "gpu_cores must be a whole number of GPUs" in errors_of(gpu_cores=0.5)
    assert "auth_enabled and token_auth_enabled cannot both be true." in errors_of(auth_enabled=True, token_auth_enabled=True)
    assert "token_auth_enabled (Azure AD tokens) has no counterpart" in errors_of(token_auth_enabled=True)
    assert AksWebservice.deploy_configuration(gpu_cores=0, cpu_cores=1, cpu_cores_limit=2, memory_gb_limit=1).gpu_cores == 0


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"cpu_cores": "1"}, "cpu_cores must be a number, got '1'"),
        ({"ingress_host": "not a host"}, "ingress_host must be a DNS name"),
        ({"ingress_tls_secret": "tls"}, "ingress_tls_secret needs ingress_host"),
        ({"service_type": "External"}, "service_type must be one of ClusterIP, NodePort, LoadBalancer"),
        ({"autoscale_metric": "memory"}, "autoscale_metric must be one of cpu, requests_in_flight"),
        ({"node_selector": {"pool": 1}}, "node_selector must be a dict of label to value"),
        ({"tolerations": [{"key": "gpu", "operatr": "Exists"}]}, "tolerations must be a list of dicts with the keys"),
        ({"image_pull_secret": ["ok", ""]}, "image_pull_secret must be a Secret name or a list of them"),
        ({"context": ""}, "context must be a non-empty string"),
        ({"network_policy": "on"}, "network_policy must be True (ingress from anyone, on the service's port only), False, or a"),
        ({"network_policy": []}, "network_policy must be True"),
        (
            {"network_policy": ["10.0.0.0/33", {"fromPods": {}}]},
            "network_policy sources must be CIDRs such as '10.0.0.0/8' or "
            "dicts with ipBlock, namespaceSelector, podSelector, got "
            "'10.0.0.0/33', {'fromPods': {}}",
        ),
        ({"model_data_claim": "Model Data"}, "model_data_claim must name a PersistentVolumeClaim"),
    ],
)
def test_the_cluster_settings_are_checked_too(settings, expected):
    assert expected in errors_of(**settings)


def test_the_network_policy_and_the_data_claim_are_accepted_as_documented():
    sources = ["10.0.0.0/8", "fd00::/8", {"namespaceSelector": {"matchLabels": {"team": "web"}}, "podSelector": {}}]
    for settings in ({"network_policy": True}, {"network_policy": sources}, {"model_data_claim": "model-data"}):
        AksWebservice.deploy_configuration(**settings)  # no InvalidConfiguration
    AksWebservice.deploy_configuration(network_policy=False, model_data_claim="")  # how update() removes them


def test_the_deploy_flags_of_the_cli_and_magics_reach_the_configuration():
    parser = argparse.ArgumentParser()
    arguments.add_deploy_options(parser)
    args = parser.parse_args(
        ["--autoscale", "1:4", "--target-utilization", "30", "--cpu", "0.5", "--memory", "1", "--namespace", "ml",
         "--context", "prod", "--dry-run", "--no-auth", "--tag", "team=vision"]
    )  # fmt: skip
    config = deploy_configuration("aks", **arguments.deploy_settings(args))
    assert isinstance(config, KubernetesServiceDeploymentConfiguration)
    assert (config.autoscale_min_replicas, config.autoscale_max_replicas, config.autoscale_target_utilization) == (1, 4, 30)
    assert (config.namespace, config.context, config.dry_run, config.auth_enabled, config.tags) == (
        "ml",
        "prod",
        True,
        False,
        {"team": "vision"},
    )
    with pytest.raises(UserError, match="the kubernetes target has no setting port"):
        deploy_configuration("kubernetes", port=8080)


def test_a_stored_configuration_comes_back_as_the_kubernetes_class_and_updates_merge():
    config = AksWebservice.deploy_configuration(
        num_replicas=2,
        autoscale_enabled=False,
        ingress_host="ml.example.com",
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    again = config_from_dict(config.to_dict())
    assert again == config and type(again) is KubernetesServiceDeploymentConfiguration
    assert again.merged(num_replicas=3).num_replicas == 3
    assert (
        "autoscale enabled and num_replicas provided."
        in pytest.raises(InvalidConfiguration, again.merged, autoscale_enabled=True).value.message
    )
    assert AksWebservice.deploy_configuration(compute_target_name="prod").effective("context") == "prod"
