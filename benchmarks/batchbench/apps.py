"""The scripts every server serves, the mlmagics runtimes compared, and the BentoML service.

The model is ``servebench/fixture.py``'s (a LogisticRegression on load_digits, trained in the
project venv); this module adds, beside the fixture's app root:

- ``batch-app/score.py``: the same model behind an inference-schema decorated ``run(data)`` whose
  ``data`` is a numpy array of rows, so mlmagics can batch it unchanged; the reference server
  runs the very same file;
- ``bentoml/service.py``: the same model behind ``@bentoml.api(batchable=True, batch_dim=0,
  max_batch_size=64, max_latency_ms=$BENCH_MAX_LATENCY_MS)`` in a ``@bentoml.service(workers=2)``;
- the request bodies: 1 row, 64 rows (the in-process loop's batched call), 100 rows, and one
  body per single digit for the concurrency check;
- two snapshots of the ``mlmagics`` package: the working tree as it is at the start of the run,
  and the revision before batching (``git archive``), so edits made meanwhile do not leak in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

MODEL_NAME = "sklearn_mnist"
BODY_ROWS = (1, 64, 100)
SINGLE_BODIES = 16  # bodies of one digit each (digits 0..15), sent concurrently to check batched answers

# inference-schema decorated: mlmagics concatenates the rows of concurrent requests into one `data`.
SCORE_PY = """\
import joblib
import numpy as np
from azureml.core.model import Model
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model
    model = joblib.load(Model.get_model_path("sklearn_mnist"))


@input_schema("data", NumpyParameterType(np.zeros((1, 64))))
@output_schema(NumpyParameterType(np.array([0])))
def run(data):
    return model.predict(data).tolist()
"""

# BentoML's adaptive batching on the same model; max_latency_ms comes from the environment so one
# file serves both settings. workers=2 is BentoML's per-service worker processes (each batches alone).
BENTOML_SERVICE_PY = """\
import os

import bentoml
import joblib
import numpy as np

MAX_LATENCY_MS = int(os.environ["BENCH_MAX_LATENCY_MS"])


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "2")), traffic={"timeout": 60})
class Digits:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=64, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)
"""


def write_apps(fixture_app: dict[str, Any], root: Path) -> dict[str, Any]:
    """Write the schema app root (sharing the fixture's model), the BentoML service and the bodies."""
    app_root = root / "batch-app"
    model_dir = app_root / "azureml-models"
    shutil.copytree(fixture_app["model_dir"], model_dir)
    (app_root / "score.py").write_text(SCORE_PY)
    bento_dir = root / "bentoml"
    bento_dir.mkdir()
    (bento_dir / "service.py").write_text(BENTOML_SERVICE_PY)
    model_file = next(model_dir.glob(f"{MODEL_NAME}/1/*"))

    rows = json.loads(Path(fixture_app["bodies"]["100"]).read_text())["data"]
    bodies_dir = root / "batch-bodies"
    bodies_dir.mkdir()
    bodies = {}
    for count in BODY_ROWS:
        bodies[count] = bodies_dir / f"rows-{count}.json"
        bodies[count].write_text(json.dumps({"data": rows[:count]}))
    singles = []
    for index in range(SINGLE_BODIES):
        path = bodies_dir / f"digit-{index}.json"
        path.write_text(json.dumps({"data": [rows[index]]}))
        singles.append(path)
    return {
        "app_root": str(app_root),
        "score_py": str(app_root / "score.py"),
        "model_dir": str(model_dir),
        "model_file": str(model_file),
        "shim_dir": fixture_app["shim_dir"],
        "bentoml_dir": str(bento_dir),
        "bodies": {str(k): str(v) for k, v in bodies.items()},
        "singles": [str(p) for p in singles],
    }


def git(repo: Path, *args: str) -> str:
    """``git args`` in ``repo``; stdout stripped (raises on failure)."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def before_batching(repo: Path) -> tuple[str, str]:
    """The revision just before batching and how it was found: HEAD while batching.py is uncommitted,
    else the parent of the commit that added ``mlmagics/serving/batching.py``."""
    added = git(repo, "log", "-1", "--format=%H", "--diff-filter=A", "--", "mlmagics/serving/batching.py")
    if not added:
        return git(repo, "rev-parse", "HEAD"), "HEAD (batching.py is not committed yet)"
    return git(repo, "rev-parse", f"{added}^"), f"the parent of {added[:7]}, which added mlmagics/serving/batching.py"


def describe_worktree(repo: Path) -> str:
    """HEAD and the uncommitted changes under mlmagics/serving, in one line."""
    head = git(repo, "rev-parse", "--short", "HEAD")
    changed = [line[3:] for line in git(repo, "status", "--porcelain", "--", "mlmagics/serving").splitlines()]
    if not changed:
        return f"HEAD {head}, no uncommitted changes under mlmagics/serving"
    names = ", ".join(Path(name).name for name in changed)
    return f"HEAD {head} + uncommitted changes to mlmagics/serving ({names})"


def snapshot_worktree(repo: Path, dest: Path) -> Path:
    """Copy the checkout's ``mlmagics`` package (as it is now) to ``dest/mlmagics``; return ``dest``."""
    shutil.copytree(repo / "mlmagics", dest / "mlmagics", ignore=shutil.ignore_patterns("__pycache__", "labextension"))
    return dest
