"""registry_bench.py's MLflow worker: MLflow's model registry used as a user would, on PostgreSQL and S3.

Runs in ``benchmarks/.venvs/mlflow`` (full ``mlflow``, ``psycopg[binary]``, ``boto3``); see
``common.py`` for the operations and their output.

- Tracking and registry URI: ``postgresql+psycopg://<user>@<host>:<port>/<fresh db>`` (the password from
  ``PGPASSWORD``; ``+psycopg`` because the venv has psycopg 3, not psycopg2). MLflow creates its tables
  in ``prepare``.
- Artifacts: the experiment ``registry-bench`` with ``artifact_location="s3://<fresh bucket>/registry-bench"``,
  the S3 endpoint from ``MLFLOW_S3_ENDPOINT_URL``.
- Registering a model: ``with mlflow.start_run(): mlflow.log_artifact(file, artifact_path="model")``, then
  ``MlflowClient().create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run_id)``.
  (MLflow 3's ``mlflow.register_model("runs:/<id>/model")`` wants a *logged model* — ``mlflow.<flavor>.log_model``
  — and refuses a run's plain artifact.) The registered model names are created once in ``prepare``.
- Populating 10,000 versions: ``create_model_version`` alone, every version pointing at one run's artifact.
- Listing: ``mlflow.search_model_versions(filter_string="name='<name>'")`` (pages through all).
- The latest version: ``MlflowClient().search_model_versions("name='<name>'", order_by=["version_number DESC"],
  max_results=1)``; also timed: ``get_latest_versions(name)`` (deprecated since MLflow 2.9, still what
  ``models:/<name>/latest`` resolves through).
- Downloading: ``mlflow.artifacts.download_artifacts(artifact_uri=<the version's source>, dst_path=...)``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

PACKAGES = ("mlflow", "sqlalchemy", "alembic", "psycopg", "boto3")
EXPERIMENT = "registry-bench"


def tracking_uri(config: dict[str, Any]) -> str:
    pg = config["pg"]
    return f"postgresql+psycopg://{pg['user']}@{pg['host']}:{pg['port']}/{config['database']}"


class MlflowSide:
    label = "mlflow"

    def open(self, config: dict[str, Any]) -> None:
        import mlflow
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Created version 'n'" line per registration
        warnings.filterwarnings("ignore", category=FutureWarning)
        self.mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri(config))
        mlflow.set_registry_uri(tracking_uri(config))
        self.client = MlflowClient()
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=f"s3://{config['bucket']}/{EXPERIMENT}")
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        self.populate_source: tuple[str, str] | None = None

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """A fresh database (MLflow creates its tables) and bucket; the experiment and every registered model name."""
        common.create_database(config)
        common.create_bucket(config)
        self.open(config)
        for name in config["names"]:
            self.client.create_registered_model(name)
        common.log(self.label, f"tracking/registry {tracking_uri(config)}, artifacts s3://{config['bucket']}/{EXPERIMENT}")
        return {"tracking_uri": tracking_uri(config), "artifact_location": f"s3://{config['bucket']}/{EXPERIMENT}"}

    def describe(self) -> dict[str, Any]:
        versions = {package: importlib.metadata.version(package) for package in PACKAGES}
        return {"python": sys.version.split()[0], "packages": versions}

    def register(self, path: Path, name: str) -> tuple[int, dict[str, float]]:
        import time

        started = time.perf_counter()
        with self.mlflow.start_run() as run:
            self.mlflow.log_artifact(str(path), artifact_path="model")
        logged = time.perf_counter()
        version = self.client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        done = time.perf_counter()
        return int(version.version), {"run + log_artifact": logged - started, "create_model_version": done - logged}

    def populate_one(self, path: Path, name: str) -> int:
        if self.populate_source is None:
            with self.mlflow.start_run() as run:
                self.mlflow.log_artifact(str(path), artifact_path="model")
            self.populate_source = (f"{run.info.artifact_uri}/model", run.info.run_id)
        source, run_id = self.populate_source
        return int(self.client.create_model_version(name, source=source, run_id=run_id).version)

    def list_versions(self, name: str) -> list[int]:
        return [int(mv.version) for mv in self.mlflow.search_model_versions(filter_string=f"name='{name}'")]

    def _latest(self, name: str) -> Any:
        found = self.client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=1)
        return found[0]

    def latest(self, name: str) -> int:
        return int(self._latest(name).version)

    def extra_latest(self, name: str) -> tuple[str, Callable[[], int]] | None:
        def by_stages() -> int:
            return max(int(mv.version) for mv in self.client.get_latest_versions(name))

        return "get_latest_versions (deprecated)", by_stages

    def forget_local_copies(self) -> bool:
        return False  # MLflow keeps none: every download reads the artifact store

    def download_elsewhere(self, name: str, target: Path, folder: Path) -> tuple[str, float] | None:
        return None

    def download_latest(self, name: str, target: Path) -> Path:
        source = self._latest(name).source
        return Path(self.mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target)))


if __name__ == "__main__":
    sys.exit(common.main(MlflowSide()))
