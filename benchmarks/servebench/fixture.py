"""The shared scoring app and the in-process ``run()`` limit; runs inside the project venv.

``prepare`` trains a LogisticRegression on sklearn's ``load_digits``, writes the
v1 ``score.py``, the model in the v1 ``azureml-models`` layout, the request
bodies and the ``azureml.core.model`` shim that the reference server needs; it
also writes the "trivial" echo script into an app root of its own (with an
empty ``azureml-models``), which isolates each server's own overhead.
``inprocess`` imports that ``score.py``, calls ``init()`` once and ``run()`` in a
tight loop. Both print one JSON object on stdout.

Example::

    .venv/bin/python benchmarks/servebench/fixture.py prepare --root /tmp/x
    .venv/bin/python benchmarks/servebench/fixture.py inprocess --root /tmp/x --seconds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

MODEL_NAME = "sklearn_mnist"
ROW_COUNTS = (1, 100)

# The v1 script from the seed document, verbatim: it must run unchanged on both servers.
SCORE_PY = """\
import json, joblib, numpy as np
from azureml.core.model import Model
def init():
    global model
    model = joblib.load(Model.get_model_path('sklearn_mnist'))
def run(raw_data):
    data = np.array(json.loads(raw_data)['data'])
    return json.dumps(model.predict(data).tolist())
"""

# The "trivial" script: echo the request body. run() returns a str, so a v1 server
# JSON-encodes it once more (the double encoding); what is left is server overhead.
TRIVIAL_PY = """\
def init():
    pass
def run(raw_data):
    return raw_data
"""

# azureml-inference-server-http does not ship azureml.core; this is the minimum
# score.py needs: v1's get_model_path for the azureml-models/<name>/<version>/<entry> layout.
SHIM_MODEL_PY = '''\
"""Benchmark-only stand-in for azureml.core.model: just Model.get_model_path."""
import os


class Model:
    """The one static method a v1 score.py calls inside init()."""

    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        """Return azureml-models/<name>/<version or highest>/<single entry>, else ./<name>."""
        root = os.environ.get("AZUREML_MODEL_DIR") or "azureml-models"
        name_dir = os.path.join(root, model_name)
        if not os.path.isdir(name_dir):
            return model_name
        if version is None:
            version = max(int(v) for v in os.listdir(name_dir) if v.isdigit())
        version_dir = os.path.join(name_dir, str(version))
        entries = os.listdir(version_dir)
        if len(entries) != 1:
            raise RuntimeError(f"Dir {version_dir} can contain only 1 file or folder")
        return os.path.join(version_dir, entries[0])
'''


def layout(root: Path) -> dict[str, Any]:
    """Return the paths that ``prepare`` writes under ``root``."""
    app_root = root / "app"
    trivial_root = root / "trivial" / "app"
    return {
        "app_root": str(app_root),
        "score_py": str(app_root / "score.py"),
        "model_dir": str(app_root / "azureml-models"),
        "model_file": str(app_root / "azureml-models" / MODEL_NAME / "1" / f"{MODEL_NAME}_model.pkl"),
        "shim_dir": str(root / "shim"),
        "bodies": {str(n): str(root / "bodies" / f"rows-{n}.json") for n in ROW_COUNTS},
        "trivial": {
            "app_root": str(trivial_root),
            "score_py": str(trivial_root / "score.py"),
            "model_dir": str(trivial_root / "azureml-models"),
        },
    }


def write_shim(shim_dir: Path) -> None:
    """Write the ``azureml.core.model`` shim package into ``shim_dir``."""
    package = shim_dir / "azureml" / "core"
    package.mkdir(parents=True, exist_ok=True)
    (shim_dir / "azureml" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(SHIM_MODEL_PY)


def prepare(root: Path) -> dict[str, Any]:
    """Train the model and write app root, shim and request bodies under ``root``."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    paths = layout(root)
    features, labels = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter is irrelevant to serving speed
        model = LogisticRegression(max_iter=2000).fit(features, labels)
    Path(paths["model_file"]).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, paths["model_file"])
    Path(paths["score_py"]).write_text(SCORE_PY)
    write_shim(Path(paths["shim_dir"]))
    trivial = paths["trivial"]
    Path(trivial["model_dir"]).mkdir(parents=True, exist_ok=True)
    Path(trivial["score_py"]).write_text(TRIVIAL_PY)
    for rows, body_path in paths["bodies"].items():
        Path(body_path).parent.mkdir(parents=True, exist_ok=True)
        Path(body_path).write_text(json.dumps({"data": features[: int(rows)].tolist()}))
    paths["train_accuracy"] = float(model.score(features, labels))
    return paths


def import_score(paths: dict[str, Any]) -> ModuleType:
    """Import ``score.py`` the way a server does: CWD = app root, shim and app root on sys.path."""
    os.chdir(paths["app_root"])
    os.environ["AZUREML_MODEL_DIR"] = paths["model_dir"]
    sys.path[:0] = [paths["shim_dir"], paths["app_root"]]
    spec = importlib.util.spec_from_file_location("score", paths["score_py"])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_loop(run: Any, body: str, seconds: float) -> float:
    """Call ``run(body)`` repeatedly for ``seconds``; return calls per second."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for _ in range(20):  # check the clock every 20 calls, not every call
            run(body)
        calls += 20
        now = time.perf_counter()
    return calls / (now - start)


def inprocess(root: Path, seconds: float) -> dict[str, Any]:
    """Measure the in-process ``run()`` limit per payload and return the answers."""
    paths = layout(root)
    score = import_score(paths)
    score.init()
    results: dict[str, Any] = {}
    for rows, body_path in paths["bodies"].items():
        body = Path(body_path).read_text()
        answer = json.loads(score.run(body))
        run_loop(score.run, body, min(1.0, seconds / 2))  # warm-up
        results[rows] = {
            "calls_per_s": run_loop(score.run, body, seconds),
            "answer": answer,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line: ``prepare --root DIR`` or ``inprocess --root DIR --seconds S``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "inprocess"])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        result = prepare(args.root)
    else:
        result = inprocess(args.root, args.seconds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
