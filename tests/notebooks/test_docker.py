"""notebooks/06-docker-target.ipynb runs top to bottom with papermill on the real engine, as a user runs it.

Test values are injected into its `parameters` cell: the locally built base image (Docker Hub is
unreachable here) and the registry on 127.0.0.1:5000. The executed notebook is kept in
.artifacts/notebooks/ for inspection when something fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06-docker-target.ipynb"


@pytest.mark.slow  # about a minute: builds, pushes and updates a real image
def test_06_docker_target(tmp_path, monkeypatch, run_notebook, docker_engine, registry, image_repo):
    client, base = docker_engine
    monkeypatch.setenv("MLMAGICS_IMAGE_REPO", image_repo)  # the kernel inherits it: test images stay apart from a user's
    parameters = {
        "workspace": str(tmp_path / "ws"),
        "service_name": "nb-docker",
        "base_image": base,
        "cpu_cores": 1.0,
        "memory_gb": 0.5,
        "registry": registry,
        "workdir": str(tmp_path / "work"),
    }
    summary, _ = run_notebook(NOTEBOOK, tmp_path, timeout=600, **parameters)

    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3, random_state=0)
    expected = LogisticRegression(max_iter=500).fit(X, y).predict(summary["test_sample"]).tolist()
    assert summary["first_answer"] == expected, "the service answered with the model's predictions"
    assert [row["digit"] for row in summary["second_answer"]] == expected, "the update is live"
    assert (summary["without_key"], summary["with_key"], summary["old_secondary_status"]) == (401, 200, 401)
    assert summary["same_uri"] is True
    assert summary["image_size"] > 50e6 and summary["layers"]["requirements"] > 0, "image size reported, part by part"
    assert summary["location"] == f"{image_repo}/mnist-docker:1"
    assert summary["pushed"] == f"{registry}/{image_repo}/mnist-docker:2"
    assert summary["limits"] == [1_000_000_000, int(0.5 * 1024**3)]
    assert summary["left"] == [0, 0, 0], "the notebook cleaned up"
    assert (tmp_path / "work" / "score.py").exists()
    # this run's workspace only: an interrupted earlier run on the same engine may have left its own behind
    mine = [f"org.mlmagics.workspace={tmp_path / 'ws'}", "org.mlmagics.service=nb-docker"]
    assert not client.containers.list(all=True, filters={"label": mine})
    print(
        f"notebook 06: build {summary['build_seconds']:.1f} s, rebuild {summary['rebuild_seconds']:.1f} s, "
        f"deploy {summary['deploy_seconds']:.1f} s, update {summary['update_seconds']:.1f} s, "
        f"{summary['image_size'] / 1e6:.0f} MB"
    )
