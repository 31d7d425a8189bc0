"""`mlmagics quickstart`: the whole workflow on a small model, on the local target, in seconds.

Trains a LogisticRegression on scikit-learn's digits, writes a v1-style score.py, then:
register the model -> create an image -> deploy it locally -> score it -> print the URIs and
the prediction -> delete what it made (unless keep=True). notebooks/01-quickstart.ipynb tells
the same story with the magics.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mlmagics.core import Model, Webservice, Workspace
from mlmagics.core.deploy import create_image, deploy

SCORE_PY = """\
import json

import joblib
import numpy as np
from azureml.core.model import Model


def init():
    global model
    model = joblib.load(Model.get_model_path("digits"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
"""


def run_quickstart(
    workdir: str | Path = "mlmagics-quickstart", workspace: str | None = None, keep: bool = False, name: str = "quickstart"
) -> dict:
    """Run the flow; returns what it printed as a dict (uris, prediction, timings)."""
    # scikit-learn and joblib are not dependencies of mlmagics (and slow to import): only when the quickstart runs
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ws = Workspace(workspace)
    timings: dict[str, float] = {}

    def step(label: str, started: float) -> None:
        timings[label] = round(time.monotonic() - started, 2)
        print(f"  {label:<10} {timings[label]:6.2f} s")

    print(f"mlmagics quickstart in {folder} (workspace {ws.path})")
    t = time.monotonic()
    digits = load_digits()
    model = LogisticRegression(max_iter=2000).fit(digits.data, digits.target)
    joblib.dump(model, folder / "digits.pkl")
    (folder / "score.py").write_text(SCORE_PY)
    step("train", t)

    t = time.monotonic()
    registered = Model.register(
        ws, folder / "digits.pkl", "digits", tags={"dataset": "sklearn digits"}, description="quickstart model"
    )
    step("register", t)
    t = time.monotonic()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        image = create_image(ws, name, [registered], "score.py")
    finally:
        os.chdir(cwd)
    step("image", t)
    try:
        old = Webservice(ws, name)
    except LookupError:
        old = None
    if old is not None:
        old.delete()
    t = time.monotonic()
    service = deploy(ws, name, target="local", image=image)
    step("deploy", t)
    t = time.monotonic()
    sample = digits.data[:3].tolist()
    prediction = service.run(json.dumps({"data": sample}))
    step("score", t)
    print(f"\nService {service.name} is {service.state}")
    print(f"  scoring URI: {service.scoring_uri}")
    print(f"  swagger URI: {service.swagger_uri}")
    print(f"  prediction for 3 digits: {prediction} (true labels: {digits.target[:3].tolist()})")
    result = {
        "scoring_uri": service.scoring_uri,
        "swagger_uri": service.swagger_uri,
        "prediction": prediction,
        "labels": digits.target[:3].tolist(),
        "timings": timings,
        "image": image.id,
        "model": registered.id,
    }
    if keep:
        print(f"\nThe service keeps running: mlmagics service delete {name}  (and image/model delete) to clean up.")
    else:
        service.delete()
        image.delete()
        registered.delete()
        print("\nDeleted the service, the image and the model.")
    return result
