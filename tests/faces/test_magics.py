"""The magics in a real IPython shell, as a notebook cell calls them (errors raise, output is captured)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from mlmagics.core import Image, Model, Webservice, Workspace


@pytest.fixture
def ip(tmp_path, monkeypatch, magic_shell):
    """A singleton shell (so rich display is captured), history off, cwd and workspace in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLMAGICS_HOME", str(tmp_path / "ws"))
    with magic_shell() as shell:
        yield shell
        for service in Webservice.list(Workspace(tmp_path / "ws")):
            service.delete()


def html_of(ip, obj) -> str:
    return ip.display_formatter.format(obj)[0]["text/html"]


def test_score_script_writes_like_writefile_and_checks(ip, tmp_path):
    result = ip.run_cell_magic("score_script", "", "def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n")
    assert (tmp_path / "score.py").read_text().startswith("def init():")
    assert repr(result).splitlines()[0] == "Writing score.py"
    assert "init() and run() look right (run() takes text input)" in repr(result)
    again = ip.run_cell_magic("score_script", "score.py", "def init(): pass\n")
    assert repr(again).splitlines()[0] == "Overwriting score.py"
    assert "✗ the script has no run() function" in repr(again)
    appended = ip.run_cell_magic("score_script", "-a score.py", "def run(x): return x\n")
    assert repr(appended).startswith("Appending to score.py") and not appended.errors
    assert "<li" not in html_of(ip, appended)


def test_score_script_lists_problems_instead_of_a_traceback(ip, tmp_path):
    cell = (
        "from inference_schema.schema_decorators import input_schema\n"
        "from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType\n"
        "def init(): pass\n@input_schema('data', StandardPythonParameterType(1))\ndef run(raw_data): pass\n"
    )
    result = ip.run_cell_magic("score_script", "seed.py", cell)
    assert [p.line for p in result.errors] == [4]
    assert "names a parameter that run(raw_data) does not have" in html_of(ip, result)
    broken = ip.run_cell_magic("score_script", "broken.py", "def init(:\n")
    assert "syntax error" in repr(broken) and (tmp_path / "broken.py").exists()


def test_the_flow_with_magics(ip, tmp_path, echo_script):
    (tmp_path / "tiny.txt").write_text("weights of tiny")
    card = ip.run_line_magic("register_model", "tiny.txt --name tiny --tag stage=dev --description a tiny model")
    assert repr(card).startswith("Registered model tiny:1") and "stage=dev" in repr(card)
    ip.run_cell_magic("score_script", "", echo_script.format(version="v1", model="tiny"))
    image = ip.run_line_magic("build_image", "echo --script score.py --model tiny")
    assert repr(image).startswith("Image echo:1 [Succeeded]")
    with capture_output() as captured:
        service = ip.run_line_magic("deploy", "local echo-svc --image echo:1")
    assert "Deploying echo:1 as echo-svc (Local)" in captured.stdout, "live progress"
    text = repr(service)
    assert text.startswith("Service echo-svc [Healthy]") and "scoring URI" in text and "swagger URI" in text
    answer = ip.run_line_magic("test_service", 'echo-svc {"x": 1}')
    assert answer.status == 200 and answer.answer == {"version": "v1", "model": "weights of tiny", "input": {"x": 1}}
    ip.user_ns["payload"] = {"from": "variable"}
    assert ip.run_line_magic("test_service", "echo-svc $payload").answer["input"] == {"from": "variable"}
    (tmp_path / "body.json").write_text('{"from": "file"}')
    assert ip.run_line_magic("test_service", "echo-svc @body.json").answer["input"] == {"from": "file"}
    assert ip.run_cell_magic("test_service", "echo-svc", '{"from": "cell"}').answer["input"] == {"from": "cell"}
    services = ip.run_line_magic("services", "")
    assert "Healthy" in html_of(ip, services) and "echo-svc" in repr(services)
    logs = ip.run_line_magic("logs", "echo-svc -n 20")
    assert any("calling init()" in line for line in logs.readable())
    ip.run_cell_magic("score_script", "", echo_script.format(version="v2", model="tiny"))
    ip.run_line_magic("build_image", "echo --script score.py --model tiny:1")
    updated = ip.run_line_magic("update", "echo-svc --image echo:2")
    assert "echo:2" in repr(updated) and "[Healthy]" in repr(updated)
    assert ip.run_line_magic("test_service", 'echo-svc {"x": 2}').answer["version"] == "v2"
    with pytest.raises(UsageError, match="image echo:2 is used by service echo-svc"):
        ip.run_line_magic("delete", "image echo:2")
    assert repr(ip.run_line_magic("delete", "service echo-svc")) == "Deleted service echo-svc"
    assert repr(ip.run_line_magic("delete", "image echo:1")) == "Deleted image echo:1"
    ip.run_line_magic("delete", "image echo:2")
    assert repr(ip.run_line_magic("delete", "model tiny:1")) == "Deleted model tiny:1"
    assert Model.list(Workspace()) == [] and Image.list(Workspace()) == []


def test_deploy_from_model_and_script_with_a_failing_init_is_one_clear_line(ip, tmp_path, failing_init):
    (tmp_path / "tiny.txt").write_text("w")
    ip.run_line_magic("register_model", "tiny.txt --name tiny")
    ip.run_cell_magic("score_script", "", failing_init)
    with pytest.raises(
        UsageError, match=r"(?s)current service state: Failed.*init\(\) raised RuntimeError: the model file is corrupt"
    ):
        ip.run_line_magic("deploy", "local broken-svc --model tiny --script score.py")


def test_schema_service_swagger_table_answer_and_bench(ip, tmp_path, schema_script):
    (tmp_path / "none.txt").write_text("-")
    ip.run_line_magic("register_model", "none.txt --name unused")
    ip.run_cell_magic("score_script", "", schema_script)
    ip.run_line_magic("deploy", "local schema-svc --model unused --script score.py --auth")
    swagger = ip.run_line_magic("swagger", "schema-svc")
    assert "data" in repr(swagger) and "array of array of number (double)" in repr(swagger)
    assert ip.run_line_magic("swagger", "schema-svc --raw")["swagger"] == "2.0"
    result = ip.run_line_magic("test_service", 'schema-svc {"data": [[1, 2], [3, 4]], "scale": 2}')
    assert result.answer == [{"row": 0, "total": 6.0}, {"row": 1, "total": 14.0}]
    assert "<table" in html_of(ip, result), "a list of records renders as a table"
    bad = ip.run_line_magic("test_service", 'schema-svc {"scale": 2}')
    assert bad.status == 400 and bad.error == "A value is not provided for the 'data' parameter."
    bench = ip.run_line_magic("test_service", 'schema-svc {"data": [[1, 2]]} --bench 30 --concurrency 3')
    assert len(bench.latencies_ms) == 30 and bench.errors == 0 and bench.p50 <= bench.p99
    assert "data:image/png;base64," in html_of(ip, bench), "the latency histogram is drawn"
    card = ip.run_line_magic("deploy", "local schema-svc --image schema-svc:1 --update --timeout-ms 5000")
    assert "••••" in repr(card), "keys are masked"


BAD_LINES = [
    ("register_model", "", "the following arguments are required: path"),
    ("register_model", "m.pkl", "the following arguments are required: --name"),
    ("register_model", "missing.pkl --name m", "model path 'missing.pkl' does not exist"),
    ("register_model", "x --name m --tag novalue", "tag 'novalue' must look like key=value"),
    ("build_image", "img --script nope.py", "execution_script 'nope.py' does not exist"),
    ("deploy", "local", "the following arguments are required: name"),
    ("deploy", "mars svc --image a:1", "invalid choice: 'mars'"),
    ("deploy", "local svc", "give an image (NAME:VERSION), or models and a script to build one"),
    ("deploy", "local svc --image nope:1", "image nope:1 does not exist"),
    ("deploy", "local svc --image a:1 --cpu 1", "the local target has no setting cpu_cores"),
    ("deploy", "local svc --image a:1 --autoscale 4", "--autoscale takes MIN:MAX replicas"),
    ("deploy", "local svc --image 'a:1", "No closing quotation"),
    ("test_service", "", "give a service name"),
    ("test_service", "nope {}", "service 'nope' does not exist"),
    ("test_service", "svc not-json", "the body is not valid JSON"),
    ("test_service", "svc $undefined_var", "$undefined_var is not defined in the notebook"),
    ("test_service", "svc @missing.json", "missing.json: no such file"),
    ("test_service", "svc {} --bench zero", "--bench takes a positive integer"),
    ("logs", "nope", "service 'nope' does not exist"),
    ("logs", "svc -n -5", "--lines takes a positive integer"),
    ("delete", "widget x", "invalid choice: 'widget'"),
    ("delete", "model nope:1", "model nope:1 is not registered"),
    ("swagger", "nope", "service 'nope' does not exist"),
]


@pytest.mark.parametrize(("magic", "line", "message"), BAD_LINES, ids=[f"{m}:{line}" for m, line, _ in BAD_LINES])
def test_every_bad_argument_is_a_one_line_usage_error(ip, magic, line, message):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic(magic, line)
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip() or magic == "deploy"


def test_settings_are_configurable_traits(ip, tmp_path):
    from mlmagics.magics import DeployMagics

    names = set(DeployMagics.class_trait_names(config=True))
    assert {"workspace", "default_target", "progress", "show_logs", "reveal_keys", "test_timeout"} <= names
    ip.run_line_magic("config", f"DeployMagics.workspace = '{tmp_path / 'other'}'")
    (tmp_path / "m.txt").write_text("m")
    ip.run_line_magic("register_model", "m.txt --name m")
    assert [m.id for m in Model.list(Workspace(tmp_path / "other"))] == ["m:1"]
    with capture_output() as captured:
        ip.run_line_magic("config", "DeployMagics")
    assert "default_target" in captured.stdout and "Target the deploy form starts with" in captured.stdout


def test_load_extension_never_raises(tmp_path, monkeypatch):
    import mlmagics

    class Broken:
        def register_magics(self, cls):
            raise RuntimeError("shell is odd")

    with pytest.warns(UserWarning, match="mlmagics: the magics could not be loaded: shell is odd"):
        mlmagics.load_ipython_extension(Broken())


def test_test_service_sends_dataframes_and_arrays_as_json():
    import numpy as np
    import pandas as pd

    from mlmagics.magics import _to_body

    assert json.loads(_to_body(np.array([[1, 2]]))) == [[1, 2]]
    assert json.loads(_to_body(pd.DataFrame({"a": [1], "b": ["x"]}))) == [{"a": 1, "b": "x"}]
    assert _to_body("already text") == b"already text"


def test_deploy_aks_dry_run_shows_the_manifests_without_a_cluster(ip, tmp_path, echo_script):
    (tmp_path / "tiny.txt").write_text("weights of tiny")
    ip.run_line_magic("register_model", "tiny.txt --name tiny")
    ip.run_cell_magic("score_script", "", echo_script.format(version="v1", model="tiny"))
    ip.run_line_magic("build_image", "echo --script score.py --model tiny")
    plan = ip.run_line_magic("deploy", "aks planned --image echo:1 --autoscale 1:4 --target-utilization 30 --dry-run")
    assert repr(plan).startswith("Dry run for planned: nothing applied")
    assert any(kind.startswith("HorizontalPodAutoscaler/") for kind in plan.kinds)
    assert all((tmp_path / "manifests").joinpath(Path(f).name).exists() for f in plan.files)
    assert "kind: Deployment" in plan.yaml() and "DryRun" in html_of(ip, plan)
    assert Webservice.list(Workspace()) == [], "a dry run records no service"
