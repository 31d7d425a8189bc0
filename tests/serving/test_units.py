"""The runtime's pieces on their own: model paths, settings, outputs, compatibility shims, swagger."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlmagics.serving import outputs
from mlmagics.serving.compat.azureml.contrib.services.aml_response import AMLResponse
from mlmagics.serving.compat.azureml.core.model import Model, ModelNotFoundException
from mlmagics.serving.inputs import query_params
from mlmagics.serving.settings import SettingsError, resolve


# -- Model.get_model_path ---------------------------------------------------------------------------
def _model(root, name, version, filename="model.pkl"):
    folder = root / name / str(version)
    folder.mkdir(parents=True)
    (folder / filename).write_text("m")
    return folder / filename


def test_get_model_path_picks_the_highest_version_under_azureml_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    _model(tmp_path / "azureml-models", "m", 2)
    _model(tmp_path / "azureml-models", "m", 10)
    assert Model.get_model_path("m") == "azureml-models/m/10/model.pkl"
    assert Model.get_model_path("m", version=2) == "azureml-models/m/2/model.pkl"


def test_get_model_path_reads_azureml_model_dir_in_both_layouts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    many = tmp_path / "many"
    path = _model(many, "a", 1)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(many))
    assert Model.get_model_path("a") == str(path)
    single = _model(tmp_path / "single", "b", 3)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(single.parent))  # one model: the dir *is* <name>/<version>
    assert Model.get_model_path("b") == str(single)


def test_get_model_path_falls_back_to_a_file_named_like_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    (tmp_path / "plain_model").write_text("m")
    assert Model.get_model_path("plain_model") == "plain_model"


def test_get_model_path_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "md"))
    with pytest.raises(ModelNotFoundException, match=r"Model 'nope' not found; looked in .*md/nope.*azureml-models/nope"):
        Model.get_model_path("nope")


def test_get_model_path_refuses_a_version_folder_with_several_entries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    _model(tmp_path / "azureml-models", "m", 1)
    (tmp_path / "azureml-models" / "m" / "1" / "other.pkl").write_text("x")
    with pytest.raises(ModelNotFoundException, match="can contain only 1 file or folder"):
        Model.get_model_path("m")


# -- settings -----------------------------------------------------------------------------------------
def test_settings_precedence_is_cli_over_environment_over_config_file(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"port": 7000, "workers": 3, "SCORING_TIMEOUT_MS": 1234, "unknown_key": 1}))
    s = resolve({"port": 7001}, environ={"WORKER_COUNT": "2"}, config_file=str(config))
    assert (s.port, s.workers, s.scoring_timeout_ms) == (7001, 2, 1234)
    assert s.extra == {"unknown_key": 1}


def test_settings_reject_bad_values_with_a_clear_message(tmp_path):
    with pytest.raises(SettingsError, match="setting 'workers' has the invalid value 'many'"):
        resolve(environ={"WORKER_COUNT": "many"})
    with pytest.raises(SettingsError, match="'scoring_timeout_ms' must be greater than zero"):
        resolve({"scoring_timeout_ms": 0}, environ={})
    for bad in ("nan", "inf"):
        with pytest.raises(SettingsError, match=f"'max_batch_latency_ms' must be a finite number, got '{bad}'"):
            resolve(environ={"MLMAGICS_MAX_BATCH_LATENCY_MS": bad})
    with pytest.raises(SettingsError, match="auth_enabled is true but no key is set"):
        resolve({"auth_enabled": True}, environ={})
    with pytest.raises(SettingsError, match="a log file needs log_max_bytes >= 4096 and log_backups >= 1, got 100 and 5"):
        resolve({"log_file": "server.log"}, environ={"MLMAGICS_LOG_MAX_BYTES": "100"})
    with pytest.raises(SettingsError, match=r"cannot write the log file /no/such/folder/server.log: its folder does not"):
        resolve({"log_file": "/no/such/folder/server.log"}, environ={})
    with pytest.raises(SettingsError, match="is not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        resolve(config_file=str(tmp_path / "bad.json"), environ={})


def test_environment_variables_are_a_bounded_object_of_strings_and_errors_never_quote_values(tmp_path):
    def variables(value):
        return resolve(environ={"MLMAGICS_ENVIRONMENT_VARIABLES": value}).environment_variables

    assert variables('{"MODE": "fast", "N": 3}') == {"MODE": "fast", "N": "3"}
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"environment_variables": {"MODE": "slow"}}))
    assert resolve(config_file=str(config), environ={}).environment_variables == {"MODE": "slow"}
    secret = "s3cr3t-value"
    bad = {
        "[1]": "not list",
        "{": "not valid JSON",
        "[" * 100_000: "not valid JSON",  # too deep for the parser: a message, not a RecursionError
        json.dumps({"A=B": secret}): "'A=B' is not a variable name",
        json.dumps({"": secret}): "'' is not a variable name",
        json.dumps({"A": None}): "the value of 'A' is NoneType",
        json.dumps({"A": [secret]}): "the value of 'A' is list",
        json.dumps({"A": secret + "\0"}): "the value of 'A' holds a NUL",
        json.dumps({"A": secret + "\ud800"}): "a character the OS cannot take",
        json.dumps({"A": "x" * 200_000}): "is over 131072 bytes",
        json.dumps({f"V{i}": secret for i in range(1001)}): "at most 1000 of them; got 1001",
        json.dumps({f"V{i}": "x" * 100_000 for i in range(11)}): "at most 1048576 bytes in all",
    }
    for value, message in bad.items():
        with pytest.raises(SettingsError, match="setting 'environment_variables' must be a JSON object") as caught:
            variables(value)
        assert message in str(caught.value) and secret not in str(caught.value), str(caught.value)[:300]
        assert "\n" not in str(caught.value)
    settings = resolve(
        {"primary_key": "k-one", "secondary_key": "k-two"}, environ={"MLMAGICS_ENVIRONMENT_VARIABLES": f'{{"A": "{secret}"}}'}
    )
    assert settings.keys == ("k-one", "k-two") and settings.environment_variables == {"A": secret}
    assert not {"k-one", "k-two", secret} & set(repr(settings).replace("'", " ").split()), "secrets stay out of repr"


def test_the_scripts_environment_variables_are_set_in_the_worker_before_init(tmp_path, serve, app_with):
    script = (
        "import os\nMODE = None\ndef init():\n    global MODE\n    MODE = os.environ.get('MODE')\ndef run(x):\n    return MODE\n"
    )
    server = serve(app_with(tmp_path, script), env={"MLMAGICS_ENVIRONMENT_VARIABLES": '{"MODE": "fast"}'})
    assert server.post(json_body={}).json() == "fast"


def test_cli_reports_a_port_in_use_in_one_line(tmp_path, app_with, free_port):
    import socket

    app = app_with(tmp_path, "def init(): pass\ndef run(x): return x\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "mlmagics", "serve", "score.py", "--port", str(port)],
            cwd=app,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"mlmagics serve: error: port {port} is already in use on 127.0.0.1; choose another with --port or stop what uses it"
    )

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "mlmagics", "serve", "score.py", "--port", str(free_port()), "--health-port", str(taken)],
            cwd=app,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"mlmagics serve: error: port {taken} is already in use on 127.0.0.1; choose another with --health-port "
        "or stop what uses it"
    )


def test_the_health_port_follows_v1s_rules():
    assert resolve({"port": 6001}, environ={}).separate_health_port is None
    assert resolve({"port": 6001}, environ={"HEALTH_PORT": "6001"}).separate_health_port is None  # v1's default: same port
    assert resolve({"port": 6001}, environ={"SEPERATE_HEALTH_ENDPOINT": "true"}).separate_health_port == 5000
    separate = {"SEPERATE_HEALTH_ENDPOINT": "true", "HEALTH_PORT": "6002"}
    assert resolve({"port": 6001}, environ=separate).separate_health_port == 6002
    assert resolve({"port": 6001, "health_port": 6003}, environ={}).separate_health_port == 6003
    with pytest.raises(SettingsError, match="the separate health port must differ from the scoring port 5000"):
        resolve({"port": 5000}, environ={"SEPERATE_HEALTH_ENDPOINT": "true"})


def test_a_keys_file_that_is_not_an_object_of_string_keys_keeps_the_keys_in_use(tmp_path):
    from mlmagics.serving.auth import KeyAuth

    keys = tmp_path / "keys.json"
    for bad in ('{"primary_key": 5}', '["k"]', "[" * 100_000):
        keys.write_text(bad)
        auth = KeyAuth(True, ("given",), str(keys))
        assert auth.allows(b"Bearer given") and not auth.allows(b"Bearer 5"), bad[:30]
    keys.write_text('{"primary_key": "new"}')
    assert KeyAuth(True, ("given",), str(keys)).allows(b"Bearer new")


# -- outputs ------------------------------------------------------------------------------------------
def test_outputs_encode_like_v1():
    assert outputs.answer([82.5, 82.5])[2] == b"[82.5, 82.5]"
    assert outputs.answer(json.dumps([1, 2]))[2] == b'"[1, 2]"'
    assert outputs.answer("zażółć")[2] == json.dumps("zażółć").encode()
    assert outputs.answer(None)[2] == b"{}"
    with pytest.raises(outputs.OutputError, match="return AMLResponse"):
        outputs.answer(b"bytes")
    np = pytest.importorskip("numpy")
    with pytest.raises(outputs.OutputError, match=r"numpy.ndarray .* return array.tolist\(\)"):
        outputs.answer(np.array([1]))


def test_aml_response_passes_through_with_v1_headers():
    status, headers, body = outputs.answer(AMLResponse(b"\x00\x01", 201, {"X-Things": "a, b", "Content-Type": "image/png"}))
    assert (status, body) == (201, b"\x00\x01")
    assert headers.count((b"x-things", b"a")) == 1 and (b"x-things", b"b") in headers
    assert (b"content-type", b"image/png") in headers
    assert (b"x-ms-run-function-failed", b"False") in headers
    status, headers, body = outputs.answer(AMLResponse({"k": 1}, 503, json_str=True))
    assert (status, body, (b"x-ms-run-function-failed", b"True") in headers) == (503, b'{"k": 1}', True)
    assert outputs.answer(AMLResponse(None, 200))[2] == b"{}"


def test_query_parameters_parse_as_json_where_they_can():
    assert query_params(b"a=1&b=[1,2]&c=a&d=null&e=x&e=y") == {"a": 1, "b": [1, 2], "c": "a", "d": None, "e": ["x", "y"]}


# -- compatibility shims --------------------------------------------------------------------------------
def _in_fresh_python(code: str, tmp_path, extra_path: str = "") -> str:
    env_path = f"{extra_path}:" if extra_path else ""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": env_path + ":".join(sys.path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_shims_never_shadow_an_installed_azureml(tmp_path):
    real = tmp_path / "site" / "azureml" / "core"
    real.mkdir(parents=True)
    (real.parent / "__init__.py").write_text("")
    (real / "__init__.py").write_text("")
    (real / "model.py").write_text("class Model:\n    ORIGIN = 'installed'\n")
    code = (
        "from mlmagics.serving import compat; compat.install()\n"
        "from azureml.core.model import Model; print(getattr(Model, 'ORIGIN', 'shim'))\n"
        "from azureml.contrib.services.aml_response import AMLResponse; print(AMLResponse.__module__)"
    )
    lines = _in_fresh_python(code, tmp_path, str(tmp_path / "site")).splitlines()
    assert lines == ["installed", "azureml.contrib.services.aml_response"], "the real package wins; the gap is filled"


def test_sklearn_externals_joblib_alias_covers_submodules_that_old_pickles_name(tmp_path):
    code = (
        "from mlmagics.serving import compat; compat.install()\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "import joblib, joblib.numpy_pickle\n"
        "from sklearn.externals import joblib as j\n"
        "import sklearn.externals.joblib.numpy_pickle as np_pickle\n"
        "print(j is joblib, np_pickle is joblib.numpy_pickle, joblib.__spec__.name)"
    )
    assert _in_fresh_python(code, tmp_path) == "True True joblib"


def test_rawhttp_is_a_module_wide_flag_as_in_v1(tmp_path):
    code = (
        "from mlmagics.serving import compat; compat.install()\n"
        "from azureml.contrib.services.aml_request import rawhttp, AMLRequest\n"
        "print(compat.raw_http_requested())\n"
        "f = rawhttp(lambda r: r)\n"
        "print(compat.raw_http_requested(), f(1))"
    )
    assert _in_fresh_python(code, tmp_path).splitlines() == ["False", "True 1"]


# -- swagger over HTTP ---------------------------------------------------------------------------------
SCHEMA = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType

def init(): pass

@input_schema('data', NumpyParameterType(np.array([[10, 9, 8, 7, 6, 5, 4, 3, 2, 1]])))
@output_schema(NumpyParameterType(np.array([3726.995])))
def run(data):
    return data.sum(axis=1).tolist()
"""


def test_swagger_2_and_openapi_3_as_the_reference_emits_them(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, SCHEMA), env={"SERVICE_NAME": "my-svc"})
    v2 = server.get("/swagger.json").json()
    assert v2["swagger"] == "2.0" and v2["info"]["title"] == "my-svc"
    assert set(v2["paths"]) == {"/", "/score", "/swagger.json"} and list(v2["paths"]["/score"]) == ["post"]
    assert v2["definitions"]["ServiceInput"] == {
        "type": "object",
        "properties": {
            "data": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                "format": "numpy.ndarray",
            }
        },
        "example": {"data": [[10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]},
    }
    assert v2["definitions"]["ServiceOutput"] == {
        "type": "array",
        "items": {"type": "number", "format": "double"},
        "example": [3726.995],
        "format": "numpy.ndarray",
    }
    assert v2["securityDefinitions"]["Bearer"]["in"] == "header"
    v3 = server.get("/swagger.json?version=3").json()
    assert v3["openapi"] == "3.0.3" and v3["components"]["schemas"]["ServiceInput"] == v2["definitions"]["ServiceInput"]
    assert server.get("/swagger.json?version=3.1").json()["openapi"] == "3.1.0"
    bad = server.get("/swagger.json?version=4")
    assert bad.status_code == 404
    assert bad.json() == {"message": "Swagger version [4] is not valid. Supported versions: [2, 3, 3.1]."}


def test_a_swagger_file_in_the_app_root_is_served_verbatim(tmp_path, serve, app_with):
    app = app_with(tmp_path, "def init(): pass\ndef run(x): return x\n")
    (app / "swagger.json").write_text('{"swagger": "2.0", "info": {"title": "hand-written"}}')
    server = serve(app)
    assert server.get("/swagger.json").json() == {"swagger": "2.0", "info": {"title": "hand-written"}}
    undecorated = server.get("/swagger.json?version=3").json()["components"]["schemas"]["ServiceInput"]
    assert undecorated == {"type": "object", "example": {}}
