"""notebooks/07-kubernetes-target.ipynb runs top to bottom with papermill, as a user runs it.

With MLMAGICS_TEST_KUBE_CONTEXT (and MLMAGICS_TEST_REGISTRY) it runs the live flow on that cluster;
otherwise in dry-run mode, and the manifests it wrote are checked against the official schemas.
The executed notebook is kept in .artifacts/notebooks/ for inspection.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml

pytestmark = pytest.mark.kubernetes  # the Kubernetes target's notebook
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "07-kubernetes-target.ipynb"


def test_the_notebook_is_committed_clean_with_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert "parameters" in tags and tags[-1] == "summary"


def test_07_kubernetes_target(tmp_path, validate_manifest, run_notebook):
    context = os.environ.get("MLMAGICS_TEST_KUBE_CONTEXT", "")
    parameters = {"workspace": str(tmp_path / "ws"), "context": context}
    if context:
        parameters.update(registry=os.environ.get("MLMAGICS_TEST_REGISTRY", ""),
                          namespace=os.environ.get("MLMAGICS_TEST_KUBE_NAMESPACE", "default"))  # fmt: skip
    summary, executed = run_notebook(NOTEBOOK, tmp_path, timeout=600, **parameters)
    assert summary["seed_example_replicas"] == 286
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for c in executed.cells
               for o in c.get("outputs", [])), "the replica plot is drawn"  # fmt: skip
    if context:
        assert summary["dry_run"] is False and isinstance(summary["answer"], list)
        return
    assert summary["dry_run"] is True and summary["answer"] is None
    assert summary["kinds"] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert summary["image_in_deployment"] == "registry.invalid/mlmagics/digits-img:2", "the planned update"
    files = [Path(p) for p in summary["manifest_files"]]
    assert files == [tmp_path / "manifests" / "digits-aks.yaml", tmp_path / "manifests" / "digits-aks-keys.secret.yaml"]
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "HorizontalPodAutoscaler", "Secret", "Service"]
    for doc in docs:
        validate_manifest(doc)
        assert doc["metadata"]["namespace"] == "mlmagics-demo"
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    from mlmagics.core import Webservice, Workspace

    assert Webservice.list(Workspace(tmp_path / "ws")) == [], "a dry run records no service"
