"""Property-based fuzzing of every notebook's scoring service through its own swagger (schemathesis).

Each scoring script the notebooks write is served by the real runtime, with key auth on and the
models its `init()` loads; schemathesis generates requests from the service's `/swagger.json`,
valid ones and ones that break the schema. Whatever arrives, the answer is a JSON error or the
script's answer, and no 5xx comes from the server itself: a 500 is allowed only when `run()`
raised (v1 marks it `x-ms-run-function-failed: True`, inference-schema's conversions included).
Over the whole module at least 1000 requests are sent; the worker that took them is the one that
started, with no restart counted.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import joblib
import nbformat
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-key"
EXAMPLES = 60  # per operation and generation mode: 10 scripts x 1-2 operations x 2 modes x 60 > 1000
SENT: Counter = Counter()


def scoring_scripts(notebook: Path) -> list[tuple[str, str]]:
    """The scoring scripts a notebook writes, as (file name, source): `%%score_script` and `%%writefile`
    cells, and `Path("x.py").write_text("...")` calls, that define `run`."""
    scripts = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        source = cell.source
        if cell.cell_type != "code" or "def run" not in source:
            continue
        first, _, body = source.partition("\n")
        if first.startswith(("%%score_script", "%%writefile")):
            scripts.append((first.split()[1], body))
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "write_text"
                and isinstance(node.func.value, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and "def run" in node.args[0].value
            ):
                scripts.append((node.func.value.args[0].value, node.args[0].value))
    return scripts


SCRIPTS = [(nb.stem, name, source) for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) for name, source in scoring_scripts(nb)]


def _model(name: str):
    """A model like the one the notebooks train under `name` (same estimator, same input width)."""
    from sklearn.datasets import load_digits, make_classification, make_regression
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if name == "digits":
        digits = load_digits()
        return LogisticRegression(max_iter=300).fit(digits.data, digits.target)
    if name == "forest":
        digits = load_digits()
        return RandomForestClassifier(n_estimators=5, random_state=0).fit(digits.data, digits.target)
    if name == "regressor":
        return LinearRegression().fit(*make_regression(n_samples=50, n_features=4, random_state=0))
    if name == "sklearn_mnist":
        X, y = make_classification(n_samples=100, n_features=10, n_informative=6, n_classes=3, random_state=0)
        return LogisticRegression(max_iter=300).fit(X, y)
    raise AssertionError(f"a notebook loads a model named {name!r}: teach this test how the notebook trains it")


@pytest.fixture(params=SCRIPTS, ids=[f"{nb}:{name}" for nb, name, _ in SCRIPTS])
def service(request, tmp_path, serve, place_model):
    notebook, name, source = request.param
    app = tmp_path / "app"
    app.mkdir()
    (app / name).write_text(source)
    model_dir = None
    for model_name in re.findall(r"get_model_path\(\s*['\"]([^'\"]+)['\"]", source):
        joblib.dump(_model(model_name), tmp_path / f"{model_name}.pkl")
        model_dir = str(place_model(app, tmp_path / f"{model_name}.pkl", model_name) / model_name / "1")
    server = serve(app, name, model_dir=model_dir, config={"auth_enabled": True, "primary_key": KEY}, ready=False)
    server.wait_ready(60)
    server.raw = "@rawhttp" in source
    return server


def _header(answer, name: str) -> str:
    """schemathesis keeps each header as a list of values."""
    values = answer.headers.get(name) or [""]
    return values[0] if isinstance(values, list) else values


def _fuzz(server, operation, mode: GenerationMode, seen: Counter, examples: int = EXAMPLES) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case) -> None:
        answer = case.call(base_url=server.url, headers=headers, timeout=30)
        seen[answer.status_code] += 1
        run_failed = _header(answer, "x-ms-run-function-failed") == "True"
        assert answer.status_code < 500 or run_failed, (
            f"{answer.status_code} from the server itself for {case.method} {case.path} "
            f"{case.body!r:.300}: {answer.text[:300]}"
        )
        if answer.status_code >= 400 and not (server.raw and case.path.endswith("/score")):  # @rawhttp: its own errors
            body = json.loads(answer.content)  # v1's and MLflow's errors say "message", the v2 protocol's "error"
            assert _header(answer, "content-type") == "application/json" and ("message" in body or "error" in body)

    try:
        one()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, "only an operation that takes no input has no invalid requests"


def test_every_notebook_service_survives_its_own_swagger_fuzzed(service):
    pids = service.worker_pids()
    swagger = requests.get(service.url + "/swagger.json", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    schema = schemathesis.openapi.from_dict(swagger)
    seen: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(service, operation, mode, seen)
    assert seen, "schemathesis generated no request"
    SENT.update(seen)
    assert service.worker_pids() == pids, "no request ended the worker"
    metrics = requests.get(service.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    assert "mlmagics_worker_restarts_total 1" not in metrics


PROTOCOL_ROUTES = ("/infer", "/invocations")  # the other protocols' routes that take input (protocols.py)


def test_every_notebook_service_survives_the_other_protocols_fuzzed(service):
    """The Open Inference Protocol's and MLflow's routes, from the OpenAPI 3 document that lists them."""
    pids = service.worker_pids()
    document = requests.get(service.url + "/swagger.json?version=3", headers={"Authorization": f"Bearer {KEY}"},
                            timeout=10).json()  # fmt: skip
    document["paths"] = {path: item for path, item in document["paths"].items() if path.endswith(PROTOCOL_ROUTES)}
    assert len(document["paths"]) == 3, document["paths"].keys()
    seen: Counter = Counter()
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(service, result.ok(), mode, seen, examples=20)
    assert seen and service.worker_pids() == pids, "no request ended the worker"
    SENT.update(seen)


def test_the_fuzzing_sent_at_least_a_thousand_requests():
    """Runs after the fuzzing above (same module, in order): the per-run volume the issue asks for."""
    if not SENT:
        pytest.fail("run this module whole: the fuzzing tests above did not run")
    assert sum(SENT.values()) >= 1000, SENT
    Path(ROOT / ".artifacts").mkdir(exist_ok=True)
    (ROOT / ".artifacts" / "fuzz-statuses.json").write_text(json.dumps(dict(sorted(SENT.items()))))
