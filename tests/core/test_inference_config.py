"""v1's InferenceConfig and Model.deploy (reference azureml-v1-later-api.md §4-§7): every check with v1's message in
v1's order, then real local services — real server processes on 127.0.0.1 — deployed, reloaded and updated."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pytest

from mlmagics.core import (
    AciWebservice,
    CondaDependencies,
    DockerWebservice,
    Environment,
    Image,
    InferenceConfig,
    LocalWebservice,
    Model,
    UserError,
    Webservice,
    WebserviceException,
)

SCORE = """
import json
import os

import joblib
import numpy as np  # the environment lists only scikit-learn, which pulls numpy in

def init():
    global model
    folder = os.environ["AZUREML_MODEL_DIR"]
    model = joblib.load(os.path.join(folder, os.listdir(folder)[0]))

def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return {{
        "answer": {answer!r},
        "prediction": model.predict(data).tolist(),
        "model": os.path.relpath(os.environ["AZUREML_MODEL_DIR"], "azureml-models"),
        "mode": os.environ.get("MODE"),
        "example": os.environ.get("EXAMPLE_ENV_VAR"),
    }}
"""

BROKEN = """
def init():
    raise RuntimeError("the edited script is broken")

def run(raw_data):
    return raw_data
"""


# -- validation: v1's checks, messages and order -------------------------------------------------------------------
@pytest.fixture
def project(tmp_path, monkeypatch, write):
    """A folder with score.py, made the current directory (entry scripts are relative to it)."""
    write(tmp_path / "score.py", "def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _message(**kwargs) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises((WebserviceException, UserError)) as info:
            InferenceConfig(**kwargs)
    return info.value.message


def test_an_entry_script_is_needed(project):
    assert _message(entry_script=None) == "Error, need to specify entry_script."
    assert _message(entry_script="") == "Error, need to specify entry_script."
    assert _message(entry_script="", environment=Environment("e"), runtime="python") == "Error, need to specify entry_script."


@pytest.mark.parametrize(
    "deprecated",
    [
        {"runtime": "python"},
        {"conda_file": "env.yml"},
        {"extra_docker_file_steps": "steps"},
        {"enable_gpu": True},
        {"cuda_version": "10.0"},
        {"base_image": "python:3.11"},
    ],  # fmt: skip
    ids=lambda d: next(iter(d)),
)
def test_an_environment_excludes_the_deprecated_parameters(project, deprecated):
    assert _message(entry_script="score.py", environment=Environment("e"), **deprecated) == (
        "Error, unable to provide runtime, conda_file, extra_docker_file_steps, enable_gpu, cuda_version, or base_image "
        "along with an environment object."
    )


def test_what_an_environment_allows(project):
    (project / "src").mkdir()
    (project / "src" / "score.py").write_text("def run(raw_data):\n    return 1\n")
    config = InferenceConfig(entry_script="score.py", source_directory="src", description="d", environment=Environment("e"),
                             base_image_registry=object())  # fmt: skip
    assert (config.description, config.environment.name) == ("d", "e")


def test_an_environment_with_both_a_dockerfile_and_a_base_image_is_refused(project):
    env = Environment("both")
    env.save_to_directory(project / "saved")
    definition = json.loads((project / "saved" / "azureml_environment.json").read_text())
    definition["docker"]["baseDockerfile"] = "FROM python:3.11-slim\n"  # the setters exclude each other; a file need not
    (project / "saved" / "azureml_environment.json").write_text(json.dumps(definition))
    both = Environment.load_from_directory(project / "saved")
    assert both.docker.base_image and both.docker.base_dockerfile
    assert _message(entry_script="score.py", environment=both) == (
        "Error, only one of base_dockerfile or base_image should be provided to the environment.docker object."
    )


def test_a_missing_source_directory_and_a_missing_script(project):
    missing = project / "nope"
    assert _message(entry_script="score.py", source_directory="nope") == f"source directory {missing} doesn't exist. "
    (project / "src").mkdir()
    assert _message(entry_script="x/../score.py", source_directory="src") == (
        f"entry_script {project / 'src' / 'score.py'} doesn't exist. entry_script should be path relative to current "
        "working directory"
    )
    assert _message(entry_script="missing.py").startswith("entry_script ")
    assert _message(entry_script="missing.py").endswith(
        "missing.py doesn't exist. entry_script should be path relative to current working directory"
    )


def test_a_script_must_be_an_importable_python_module(project, write):
    write(project / "score.txt", "x = 1\n")
    assert _message(entry_script="score.txt") == "Invalid driver type. Currently only Python drivers are supported."
    for name in ("score-v2", "1score", "class"):
        write(project / f"{name}.py", "def run(raw_data):\n    return 1\n")
        assert _message(entry_script=f"{name}.py") == (
            f'Error, invalid name "{name}" for provided entry script. The script must be importable as a valid python '
            "module, and must adhere to standard module naming. This means it must be a valid python identifier and not a "
            "part of the set of python standard keywords."
        )


def test_runtime_cuda_and_the_deprecated_files(project):
    assert (
        _message(entry_script="score.py", runtime="java")
        == "Provided runtime not supported. Possible runtimes are: spark-py|python"
    )
    assert _message(entry_script="score.py", cuda_version="11.0") == (
        "Provided cuda_version not supported. Possible cuda_versions are: 9.0|9.1|10.0"
    )
    assert _message(entry_script="score.py", runtime="java", cuda_version="11.0").startswith("Provided runtime"), "v1's order"
    assert _message(entry_script="score.py", runtime="python", conda_file="env.yml") == "Conda file env.yml doesn't exist. "
    assert _message(entry_script="score.py", extra_docker_file_steps="steps") == "extra docker file steps steps doesn't exist. "
    with pytest.warns(DeprecationWarning) as caught:
        config = InferenceConfig(entry_script="score.py", runtime="Python", cuda_version="9.1")  # lower-cased for the check
    assert config.runtime == "Python"
    assert [str(w.message).split(" parameter")[0] for w in caught] == ["runtime", "cuda_version"]
    assert str(caught[0].message) == (
        "runtime parameter has been deprecated and will be removed in a future release. Please migrate to using "
        "Environments. https://docs.microsoft.com/azure/machine-learning/how-to-use-environments"
    )


def test_a_syntax_error_is_a_user_error_with_the_parsers_text(project, write):
    write(project / "bad.py", "def run(raw_data)\n    return raw_data\n")
    with pytest.raises(UserError) as info:
        InferenceConfig(entry_script="bad.py")
    assert info.value.message == "expected ':' (bad.py, line 1). Please check it and try local deployment to verify."
    write(project / "bad.py", "x = = 1\n")
    assert (
        _message(entry_script="bad.py") == "invalid syntax (bad.py, line 1). Please check it and try local deployment to verify."
    )
    assert not isinstance(info.value, WebserviceException), "v1: the one check that raises UserErrorException"


def test_the_source_directory_is_stored_as_its_realpath(project):
    (project / "real" / "x" / "y").mkdir(parents=True)
    (project / "real" / "x" / "y" / "score.py").write_text("def run(raw_data):\n    return 1\n")
    (project / "link").symlink_to(project / "real")
    config = InferenceConfig(entry_script="x/y/score.py", source_directory="link")
    assert config.source_directory == os.path.realpath(project / "real") == str((project / "real").resolve())
    assert config.entry_script == "x/y/score.py"


# -- Model.deploy -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pickles(tmp_path_factory):
    """(X, two sklearn models pickled with joblib, their paths): they answer differently for the same X."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    folder = tmp_path_factory.mktemp("pickles")
    first, second = LogisticRegression().fit(X, y), LogisticRegression().fit(X, 1 - y)
    joblib.dump(first, folder / "first.pkl")
    joblib.dump(second, folder / "second.pkl")
    return X[:5], first, second, folder / "first.pkl", folder / "second.pkl"


@pytest.fixture
def deployable(ws, tmp_path, monkeypatch, write, pickles):
    """(two registered models, an environment listing only scikit-learn with a variable, score.py in the CWD)."""
    X, first, second, first_path, second_path = pickles
    monkeypatch.chdir(tmp_path)
    models = Model.register(ws, str(first_path), "first"), Model.register(ws, str(second_path), "second")
    env = Environment("sklearn-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["azureml-defaults", "scikit-learn"])
    env.environment_variables["MODE"] = "fast"
    write(tmp_path / "score.py", SCORE.format(answer="v1"))
    return models, env


def _body(pickles) -> str:
    return json.dumps({"data": pickles[0].tolist()})


def test_model_deploy_checks_the_service_name_even_for_local(ws, deployable):
    (model, _), env = deployable
    config = InferenceConfig(entry_script="score.py", environment=env)
    for name in ("Test", "ab", "-lead", "trail-", "under_score", "x" * 33):
        with pytest.raises(WebserviceException) as info:
            Model.deploy(ws, name, [model], config, LocalWebservice.deploy_configuration())
        assert info.value.message == (
            "Error, provided service name is invalid. It must only consist of lowercase letters, numbers, or dashes, "
            "start with a letter, end with a letter or number, and be between 3 and 32 characters long."
        )
    assert Webservice.list(ws) == [] and Image.list(ws) == []


def test_model_deploy_without_an_inference_config_is_refused(ws, deployable):
    (model, other), _ = deployable
    for models in ([], [model, other]):
        with pytest.raises(UserError) as info:
            Model.deploy(ws, "no-code", models, None, LocalWebservice.deploy_configuration())
        assert info.value.message == "You must provide an InferenceConfig when deploying zero or multiple models."
    with pytest.raises(UserError) as info:
        Model.deploy(ws, "no-code", [model], deployment_config=LocalWebservice.deploy_configuration())
    assert info.value.message.startswith("You must provide an InferenceConfig when deploying first:1")
    assert "InferenceConfig(entry_script='score.py'" in info.value.message
    assert Webservice.list(ws) == []


def test_a_local_deploy_reload_update_and_replace(ws, tmp_path, deployable, pickles, write, capsys):
    (model, other), env = deployable
    X, first, second = pickles[:3]
    config = InferenceConfig(entry_script="score.py", environment=env)
    service = Model.deploy(ws, "svc", [model], config, LocalWebservice.deploy_configuration(), show_output=True)
    assert isinstance(service, LocalWebservice)
    assert (
        "Request submitted, please run wait_for_deployment(show_output=True) to get deployment status." in capsys.readouterr().out
    )
    service.wait_for_deployment()
    assert service.state == "Healthy"
    assert isinstance(service.port, int) and service.scoring_uri == f"http://127.0.0.1:{service.port}/score"
    answer = service.run(_body(pickles))
    assert answer == {"answer": "v1", "prediction": first.predict(X).tolist(), "model": "first/1", "mode": "fast",
                      "example": "EXAMPLE_VALUE"}  # fmt: skip
    assert service.image.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE", "MODE": "fast"}
    written = Path(service.target["release"]) / "service.json"  # the variables (possibly credentials) on disk
    assert json.loads(written.read_text())["environment_variables"]["MODE"] == "fast"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600, "readable by the service's user only, as its keys"
    uri = service.scoring_uri

    # reload(): score.py read again from where it was given; nothing else changes
    write(tmp_path / "score.py", SCORE.format(answer="v2"))
    service.reload()
    assert service.run(_body(pickles))["answer"] == "v2"
    assert service.scoring_uri == uri

    # a rewritten script whose init() raises: the previous version keeps serving
    write(tmp_path / "score.py", BROKEN)
    serving = Webservice(ws, "svc").image_id
    with pytest.raises(WebserviceException, match=r"(?s)keeps serving.*the edited script is broken"):
        service.reload()
    again = Webservice(ws, "svc")
    assert (again.image_id, again.state) == (serving, "Healthy")
    assert again.run(_body(pickles))["answer"] == "v2"

    # update(models=...): the same script (as last given) with another model
    write(tmp_path / "score.py", SCORE.format(answer="v3"))
    again.update(models=[other])
    answer = again.run(_body(pickles))
    assert (answer["answer"], answer["model"], answer["prediction"]) == ("v3", "second/1", second.predict(X).tolist())
    assert [m.id for m in again.image.models] == ["second:1"]

    # update(inference_config=...): another environment's variables
    env2 = env.clone("sklearn-env-2")
    env2.environment_variables["MODE"] = "slow"
    again.update(inference_config=InferenceConfig(entry_script="score.py", environment=env2))
    answer = again.run(_body(pickles))
    assert (answer["mode"], answer["model"]) == ("slow", "second/1"), "models=None keeps the service's models"

    # a second Model.deploy of the same name replaces a local service (v1: overwrite plays no part)
    write(tmp_path / "score.py", SCORE.format(answer="v4"))
    replaced = Model.deploy(ws, "svc", [model], config, LocalWebservice.deploy_configuration())
    replaced.wait_for_deployment()
    answer = replaced.run(_body(pickles))
    assert (answer["answer"], answer["model"], answer["mode"]) == ("v4", "first/1", "fast")
    assert [s.name for s in Webservice.list(ws)] == ["svc"] and replaced.scoring_uri == uri

    # on another target the same name needs overwrite=True; refused before anything is built
    images = len(Image.list(ws))
    for other_config in (DockerWebservice.deploy_configuration(), AciWebservice.deploy_configuration()):
        with pytest.raises(WebserviceException, match="service svc already exists in the workspace .*pass overwrite=True"):
            Model.deploy(ws, "svc", [model], config, other_config)
    assert len(Image.list(ws)) == images
    assert Webservice(ws, "svc").run(_body(pickles))["answer"] == "v4"


def test_a_source_directory_ships_whole_under_its_name(ws, tmp_path, monkeypatch, deployable, write):
    (model, _), env = deployable
    source = tmp_path / "source_directory"
    write(source / "extradata.json", '{"people": [{"name": "Sarah"}]}')
    write(
        source / "x" / "y" / "score.py",
        """
        import json
        import os

        def init():
            global extra
            # v1's layout: the working directory holds the source directory under its own name
            with open("./source_directory/extradata.json") as f:
                extra = json.load(f)

        def run(raw_data):
            return {"extra": extra, "source": os.environ.get("AZUREML_SOURCE_DIRECTORY"), "mode": os.environ.get("MODE")}
        """,
    )
    monkeypatch.chdir(source / "x")  # the source directory is what paths are relative to, not the CWD
    config = InferenceConfig(entry_script="x/y/score.py", source_directory=str(source), environment=env)
    service = Model.deploy(ws, "with-source", [model], config, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    assert service.run("{}") == {"extra": {"people": [{"name": "Sarah"}]}, "source": "source_directory", "mode": "fast"}
    assert service.image.execution_script == "source_directory/x/y/score.py"

    write(source / "extradata.json", '{"people": []}')
    service.reload()  # reload() reads the other files of the source directory again too
    assert service.run("{}")["extra"] == {"people": []}


@pytest.mark.filterwarnings("ignore:requirements changed:UserWarning")
def test_a_pin_excluding_the_installed_version_is_replaced_with_one_warning(ws, deployable):
    import sklearn

    (model, _), _ = deployable
    installed = sklearn.__version__
    assert installed != "0.22.1"
    env = Environment("old-notebook-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["azureml-defaults", "scikit-learn==0.22.1"])
    package = Model.package(ws, [model], InferenceConfig(entry_script="score.py", environment=env))
    image = package.image
    assert f"requirements changed: scikit-learn==0.22.1 -> scikit-learn=={installed}: the model was pickled with " \
           f"scikit-learn {installed}" in image.warnings  # fmt: skip
    assert len([w for w in image.warnings if w.startswith("requirements changed")]) == 1
    assert f"scikit-learn=={installed}" in image.environment.requirements
    assert "scikit-learn==0.22.1" not in image.environment.requirements
    assert list(env.python.conda_dependencies.pip_packages) == ["azureml-defaults", "scikit-learn==0.22.1"], "env unchanged"
    assert package.state == "NotStarted" and package.generate_dockerfile is False

    compatible = Environment("compatible")
    compatible.python.conda_dependencies = CondaDependencies.create(pip_packages=["scikit-learn>=1.0"])
    image = Model.package(ws, [model], InferenceConfig(entry_script="score.py", environment=compatible)).image
    assert not [w for w in image.warnings if w.startswith("requirements changed")]


def test_the_name_is_checked_first_and_the_workspace_has_v1s_datastores(ws):
    from mlmagics import Model, WebserviceException

    with pytest.raises(WebserviceException, match="Error, provided service name is invalid"):
        Model.deploy(ws, "Test", [], None)  # v1: the name before the missing InferenceConfig
    assert ws.get_default_datastore().name == "workspaceblobstore"
    assert sorted(ws.datastores) == ["workspaceblobstore", "workspacefilestore"]
