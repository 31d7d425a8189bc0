"""Benchmark the Docker target against the seed document's published times (Azure ML v1: image ~3 min, ACI ~5 min).

Measured on the real engine, with the seed's flow — a scikit-learn model behind a v1 score.py:

- cold build: every layer above the base image built afresh (no layer cache; pip downloads the
  runtime's and the model's requirements), the base image already on the engine;
- rebuild after a script edit: the next image version with only score.py changed;
- deploy to Healthy: `deploy_from_image` + `wait_for_deployment`, with the seed's ACI example
  (1 core, 1 GB), with v1's defaults (0.1 core, 0.5 GB), and a trivial script at v1's defaults;
- update to a new image: the new container healthy and serving, the old one gone, same URI;
- image size, part by part.

The Markdown table goes to stdout and to --out (default benchmarks/results/docker.md).

    python benchmarks/docker_bench.py
    python benchmarks/docker_bench.py --repeat 5 --base-image python:3.11-slim
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchkit
from benchkit import BENCH_DIR, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

SEED_IMAGE_S = 3 * 60  # "Szacowany czas: Około 3 minuty" (image creation)
SEED_ACI_S = 5 * 60  # "Mniej więcej 5 minut" (ACI deployment)
TEST_BASE = "mlmagics/test-base:bookworm"

SKLEARN_SCRIPT = """
import json

import joblib
import numpy as np
from azureml.core.model import Model


def init():
    global model
    model = joblib.load(Model.get_model_path("sklearn_mnist"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()  # {edit}
"""
TRIVIAL_SCRIPT = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"
SAMPLE = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]})


log = benchkit.logger("docker_bench")


def create(ws, name: str, script: str, models: list):
    from mlmagics.core import ContainerImage, Image

    Path("score.py").write_text(script)
    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
    return Image.create(ws, name, models, config)


def timed(fn) -> tuple[float, object]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def deploy_to_healthy(ws, name: str, image, **settings) -> float:
    from mlmagics.core import AciWebservice, Webservice

    def go():
        service = Webservice.deploy_from_image(ws, name, image, AciWebservice.deploy_configuration(**settings))
        service.wait_for_deployment()
        return service

    took, service = timed(go)
    service.run(SAMPLE)  # really serving
    service.delete()
    return took


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" + (f" ({min(values):.2f}–{max(values):.2f})" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="deploys and rebuilds per case (default 3)")
    parser.add_argument("--base-image", help="base image (default: $MLMAGICS_BASE_IMAGE, else the local test base if present)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "docker.md"))
    args = parser.parse_args(argv)

    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from mlmagics.core import DockerWebservice, Model, Webservice, Workspace
    from mlmagics.core.targets.docker.engine import engine

    client = engine()
    base = args.base_image or os.environ.get("MLMAGICS_BASE_IMAGE")
    if not base:
        try:
            client.images.get(TEST_BASE)
            base = TEST_BASE
        except Exception:  # noqa: BLE001 - not built here: the users' default applies
            base = None
    if base:
        os.environ["MLMAGICS_BASE_IMAGE"] = base
    os.environ["MLMAGICS_IMAGE_REPO"] = "mlmagics-bench"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="docker-bench-") as tmp:
        os.chdir(tmp)
        ws = Workspace(Path(tmp) / "ws")
        try:
            X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3, random_state=0)
            joblib.dump(LogisticRegression(max_iter=500).fit(X, y), "sklearn_mnist_model.pkl")
            model = Model.register(ws, "sklearn_mnist_model.pkl", "sklearn_mnist")

            image = create(ws, "bench-sklearn", SKLEARN_SCRIPT.format(edit="v1"), [model])
            log(f"cold build of {image.id} from {base or 'python:<3.x>-slim'} (no layer cache) ...")
            cold, _ = timed(lambda: DockerWebservice.build_image(image, no_cache=True))
            sizes = image.build_info["layers"]
            rows.append(("image build, cold (no layer cache, base image present)", f"~{SEED_IMAGE_S // 60} min", f"{cold:.1f} s"))

            rebuilds = []
            for i in range(args.repeat):
                edited = create(ws, "bench-sklearn", SKLEARN_SCRIPT.format(edit=f"edit {i}"), [model])
                took, _ = timed(edited.build)
                rebuilds.append(took)
            log(f"rebuilds after a script edit: {rebuilds}")
            rows.append(("rebuild after a script edit (target ≤ 10 s)", "~3 min (v1 rebuilt the image)", median(rebuilds)))

            cases = [
                ("deploy to Healthy, seed's ACI example (1 core, 1 GB; target ≤ 5 s)", image, {"cpu_cores": 1, "memory_gb": 1}),
                ("deploy to Healthy, v1's defaults (0.1 core, 0.5 GB)", image, {}),
            ]
            trivial = create(ws, "bench-trivial", TRIVIAL_SCRIPT, [])
            DockerWebservice.build_image(trivial)
            cases.append(("deploy to Healthy, trivial script, v1's defaults", trivial, {}))
            for label, target_image, settings in cases:
                times = [deploy_to_healthy(ws, f"bench-{i}", target_image, **settings) for i in range(args.repeat)]
                log(f"{label}: {times}")
                rows.append((label, f"~{SEED_ACI_S // 60} min", median(times)))

            from mlmagics.core import AciWebservice

            service = Webservice.deploy_from_image(ws, "bench-update", image, AciWebservice.deploy_configuration(cpu_cores=1))
            service.wait_for_deployment()
            uri, updates = service.scoring_uri, []
            for i in range(args.repeat):
                target_image = edited if i % 2 == 0 else image
                took, _ = timed(lambda target_image=target_image: service.update(image=target_image))
                assert service.scoring_uri == uri and service.run(SAMPLE)
                updates.append(took)
            service.delete()
            rows.append(("update to a new image, 1 core (same scoring URI, no request lost)", "n/a", median(updates)))

            size = image.build_info["size"]
            parts = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sizes.items() if v > 1e5)
            rows.append(("image size (scikit-learn model)", "n/a", f"{size / 1e6:.0f} MB ({parts} MB)"))
            rows.append(("image size, trivial script", "n/a", f"{trivial.build_info['size'] / 1e6:.0f} MB"))
            own = client.images.get(image.build_info["id"]).history()
            runtime_code = sum(layer["Size"] for layer in own if "/opt/mlmagics/runtime" in (layer.get("CreatedBy") or "")
                               and "pip" not in (layer.get("CreatedBy") or ""))  # fmt: skip
            rows.append(("the scoring runtime's own code layers", "n/a", f"{runtime_code / 1e3:.0f} kB"))
        finally:
            for service in Webservice.list(ws):
                service.delete()
            from mlmagics.core import Image

            for leftover in Image.list(ws):
                leftover.delete()
            os.chdir(BENCH_DIR)

    version = client.version()
    header = (
        f"# Docker target benchmark: mlmagics vs the seed's published times\n\n"
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} · Docker engine {version.get('Version')} "
        f"(API {version.get('ApiVersion')}) · {os.cpu_count()} CPUs · {platform.python_version()} · "
        f"base image `{base or 'python:<3.x>-slim'}` · medians of {args.repeat} (min–max)\n\n"
        "The seed's times are its own estimates for Azure ML v1 (*Szacowany czas*: image about 3 minutes, ACI deploy "
        "about 5 minutes). Deploy times start at `deploy_from_image` and end when `wait_for_deployment` returns Healthy "
        "(image already built). `init()` runs under the container's CPU limit, so at v1's default 0.1 core importing "
        "scikit-learn alone takes seconds: give a real model `cpu_cores=1`, as the seed's ACI example does.\n\n"
    )
    table = "| measure | seed (Azure ML v1) | mlmagics docker |\n| --- | ---: | ---: |\n"
    table += "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(header + table)
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
