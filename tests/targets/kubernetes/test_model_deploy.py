"""Model.deploy to the Kubernetes target (v1's AksWebservice), as a dry run: no cluster exists here."""

from __future__ import annotations

import yaml

from mlmagics import AksWebservice, DeploymentPlan, Environment, InferenceConfig, Model, Webservice

SCORE = "def init():\n    pass\n\ndef run(data):\n    return data\n"


def test_model_deploy_plans_the_manifests_with_the_environment_s_variables(ws, tmp_path, monkeypatch, validate_manifest):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(SCORE)
    (tmp_path / "model.txt").write_text("tiny")
    model = Model.register(ws, "model.txt", "tiny")
    env = Environment("k8s-env")
    env.environment_variables["MODE"] = "fast"
    config = InferenceConfig(entry_script="score.py", source_directory="src", environment=env)
    aks = AksWebservice.deploy_configuration(dry_run=True, namespace="ml", registry="127.0.0.1:5000", auth_enabled=False)

    plan = Model.deploy(ws, "aks-svc", [model], config, aks)

    assert isinstance(plan, DeploymentPlan) and Webservice.list(ws) == [], "a dry run deploys and records nothing"
    docs = [d for path in plan.manifest_files for d in yaml.safe_load_all(open(path)) if d]
    for doc in docs:
        validate_manifest(doc)
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert yaml.safe_load(env_vars["MLMAGICS_ENVIRONMENT_VARIABLES"]) == {
        "EXAMPLE_ENV_VAR": "EXAMPLE_VALUE", "MODE": "fast", "AZUREML_SOURCE_DIRECTORY": "src"}  # fmt: skip
    assert env_vars["AZUREML_ENTRY_SCRIPT"] == "src/score.py", "the source directory is in the app root under its name"


def test_a_plans_update_is_the_plan_of_the_update_with_the_same_keys(ws, tmp_path, monkeypatch, echo_image):
    monkeypatch.chdir(tmp_path)
    image = echo_image(ws, tmp_path / "app")
    config = AksWebservice.deploy_configuration(
        dry_run=True, registry="127.0.0.1:5000", primary_key="p-key", secondary_key="s-key"
    )
    plan = Webservice.deploy_from_image(ws, "planned", image, config)
    assert isinstance(plan, DeploymentPlan)

    assert plan.update(ingress_host="planned.example.com", dry_run=True) is plan
    assert "Ingress/planned" in plan.serialize()["objects"] and plan.get_keys() == ("p-key", "s-key")
    assert Webservice.list(ws) == [], "an update of a plan is a plan: nothing recorded"


def test_a_plan_s_repr_never_shows_the_keys_of_its_secret(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "model.txt").write_text("tiny")
    config = InferenceConfig(entry_script="score.py", environment=Environment("keys-env"))
    aks = AksWebservice.deploy_configuration(dry_run=True, namespace="ml", registry="127.0.0.1:5000")  # key auth on

    plan = Model.deploy(ws, "aks-keys", [Model.register(ws, "model.txt", "tiny")], config, aks)

    shown = repr(plan) + str(plan.serialize()) + plan.yaml()
    secret_data = [v for d in plan.manifests if d["kind"] == "Secret" for v in (d.get("data") or {}).values()]
    assert secret_data, "the keys are in the plan's Secret (base64)"
    assert not any(key in shown for key in plan.get_keys()), "a notebook cell ending with the plan shows no key"
    assert not any(value in shown for value in secret_data), "nor the Secret's encoded data"
