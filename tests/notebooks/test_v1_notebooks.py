"""Real v1 deployment notebooks (Azure/MachineLearningNotebooks, MIT; tests/notebooks/v1/README.md) run with only
their imports rewritten (`mlmagics migrate`) and a first cell that writes the workspace config they assume.

Where a notebook goes on to create an AKS cluster — which only Azure can do — it stops there with mlmagics'
one-line answer, and the test asserts that every cell before it ran and that the answer is that line.
"""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import BayesianRidge, Ridge

from mlmagics import Webservice, Workspace

from .v1_helpers import run_v1_notebook

CLUSTER_REFUSAL = "UserError: creating a Kubernetes cluster is out of scope for mlmagics"
X, Y = load_diabetes(return_X_y=True)
RIDGE = Ridge().fit(X, Y).predict(X[0:2])


@pytest.fixture
def work(tmp_path):
    """The notebook's folder; whatever services it left (a notebook stopped by the AKS cell) are deleted after."""
    yield tmp_path / "work"
    if (tmp_path / "work" / "ws").exists():
        for service in Webservice.list(Workspace(tmp_path / "work" / "ws")):
            service.delete(delete_collected_data=True)


@pytest.fixture
def docker_images(monkeypatch, docker_engine, image_repo):
    """The kernel inherits these: the locally built base image (no Docker Hub here), and test images kept apart."""
    monkeypatch.setenv("MLMAGICS_BASE_IMAGE", docker_engine[1])
    monkeypatch.setenv("MLMAGICS_IMAGE_REPO", image_repo)
    return docker_engine[0]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace("[", " ").replace("]", " ").replace(",", " ").split() if x[0].isdigit()]


def test_register_model_deploy_local(work):
    run = run_v1_notebook("deploy-to-local/register-model-deploy-local.ipynb", work)

    assert run.text(run.find("mlmagics.VERSION")).startswith("SDK version: "), "mlmagics.VERSION stands in for azureml's"
    assert run.text(run.find("Workspace.from_config()")).split() == ["v1-notebooks", "rg-local", "local", "sub-local"]
    deployed = run.text(run.find("Model.deploy("))
    assert "Note: the local target runs the service in this Python" in deployed, "the local stand-in is said, not silent"
    assert "6789" in run.text(run.find("local_service.port"))
    first = run.text(run.find("local_service.run(sample_input)"))
    np.testing.assert_allclose(json.loads(first), RIDGE, rtol=1e-9)
    reloaded = run.text(run.find("local_service.reload()"))
    assert "Hello from the updated score.py" in reloaded, "reload() served the score.py the notebook rewrote"
    np.testing.assert_allclose(_floats(reloaded.split(":", 1)[1]), RIDGE, rtol=1e-6)
    assert run.find("local_service.update(") < run.failed_cell, "update(models=, inference_config=, deployment_config=) ran"
    # the AKS cells: only Azure creates clusters; the notebook stops there with the one-line reason
    assert run.failed_cell == run.find("AksCompute.provisioning_configuration"), run.error
    assert run.error.startswith(CLUSTER_REFUSAL)


def test_register_model_deploy_local_advanced(work):
    run = run_v1_notebook("deploy-to-local/register-model-deploy-local-advanced.ipynb", work)

    assert run.error is None, f"cell {run.failed_cell}: {run.error}"
    assert "Note: environment.docker.base_dockerfile is not built" in run.text(run.find("Model.deploy("))
    answer = run.text(run.find("print(local_service.run(sample_input))"))
    assert answer.startswith("Hello Mrudula here is your result = "), "the source directory's data file was read at init()"
    np.testing.assert_allclose(_floats(answer.split("=", 1)[1]), RIDGE, rtol=1e-6)
    reloaded = run.text(run.find("local_service.reload()"))
    assert "Hello Mrudula from Seattle here is your result" in reloaded, "reload() re-read x/y/score.py"
    assert not Webservice.list(Workspace(work / "ws")), "the notebook's own delete() cell removed the service"


@pytest.mark.slow  # builds a Docker image
def test_multi_model_register_and_deploy(work, docker_images):
    run = run_v1_notebook("deploy-multi-model/multi-model-register-and-deploy.ipynb", work)

    assert run.error is None, f"cell {run.failed_cell}: {run.error}"
    assert "Healthy" in run.text(run.find("wait_for_deployment"))
    answer = ast.literal_eval(run.text(run.find("service.run(")).strip())  # printed: a dict repr, both models' answers
    np.testing.assert_allclose(answer["prediction1"], RIDGE, rtol=1e-9)
    np.testing.assert_allclose(answer["prediction2"], BayesianRidge().fit(X, Y).predict(X[0:2]), rtol=1e-9)
    label = f"org.mlmagics.workspace={work / 'ws'}"
    assert not docker_images.containers.list(all=True, filters={"label": label}), "the notebook's delete() removed its containers"


@pytest.mark.slow  # builds a Docker image
def test_enable_app_insights_in_production_service(work, docker_images):
    # The published 2018 pickle names scikit-learn modules removed since: the first cell makes the model it assumes.
    setup = (
        "import joblib\nfrom sklearn.datasets import load_diabetes\nfrom sklearn.linear_model import Ridge\n"
        "joblib.dump(Ridge().fit(*load_diabetes(return_X_y=True)), 'sklearn_regression_model.pkl')\n"
    )
    run = run_v1_notebook(
        "enable-app-insights-in-production-service/enable-app-insights-in-production-service.ipynb", work, setup=setup
    )

    assert "enable_app_insights has no effect on the docker target" in run.text(run.find("enable_app_insights=True"))
    deployed = run.text(run.find("aci_service.wait_for_deployment"))
    assert "Healthy" in deployed
    # the notebook's 2018 pins cannot be installed beside the model's packages: the model's versions win, said once each
    assert f"scikit-learn==0.22.1 -> scikit-learn=={sklearn.__version__}: the model was pickled with" in deployed
    assert f"numpy==1.19.5 -> numpy=={np.__version__}" in deployed
    assert len(json.loads(run.text(run.find("aci_service.run(")).strip())) == 2
    assert run.failed_cell == run.find("provisioning_configuration"), run.error
    assert run.error.startswith(CLUSTER_REFUSAL)
