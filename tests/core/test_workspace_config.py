"""v1's `config.json` (reference azureml-v1-later-api.md §1): Workspace.from_config, write_config, get_details,
and v1's positional Workspace(subscription_id, resource_group, workspace_name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmagics.core import UserError, Workspace

SCOPE = "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{n}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """MLMAGICS_HOME in tmp_path: the default workspace of these tests."""
    folder = tmp_path / "home"
    monkeypatch.setenv("MLMAGICS_HOME", str(folder))
    return folder


def _config(file: Path, **values) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(values))
    return file


def test_an_ancestors_dot_azureml_config_beats_the_folders_own_config_json(tmp_path, home, monkeypatch):
    project = tmp_path / "project"
    notebooks = project / "notebooks"
    _config(project / ".azureml" / "config.json", subscription_id="sub", resource_group="rg", workspace_name="team",
            path="../team-ws")  # fmt: skip
    _config(notebooks / "config.json", subscription_id="sub", resource_group="rg", workspace_name="mine", path="mine-ws")
    monkeypatch.chdir(notebooks)
    ws = Workspace.from_config()
    assert ws.name == "team"
    assert ws.path == (project / "team-ws").resolve(), "`path` is relative to the config file's folder"
    assert (ws.subscription_id, ws.resource_group, ws.location) == ("sub", "rg", "local")
    assert (project / "team-ws" / "workspace.db").exists()

    # each (folder, file) pair is looked for over all ancestors before the next pair
    _config(notebooks / ".azureml" / "project.json", subscription_id="s", resource_group="r", workspace_name="project-json")
    assert Workspace.from_config().name == "team", "../.azureml/config.json before ./.azureml/project.json"
    _config(notebooks / "aml_config" / "config.json", subscription_id="s", resource_group="r", workspace_name="aml",
            path="aml-ws")  # fmt: skip
    assert Workspace.from_config(str(notebooks)).name == "team", ".azureml before aml_config"
    (project / ".azureml" / "config.json").unlink()
    assert Workspace.from_config().name == "project-json"
    (notebooks / ".azureml" / "project.json").unlink()
    assert Workspace.from_config().name == "aml"
    (notebooks / "aml_config" / "config.json").unlink()
    assert Workspace.from_config().path == (notebooks / "mine-ws").resolve()


def test_v1s_scope_format_and_a_config_file_given_directly(tmp_path, home):
    written_by_v1 = _config(tmp_path / "downloaded.json", Id=None, Scope=SCOPE.format(s="1234-abcd", rg="ml-rg", n="ml-ws"))
    ws = Workspace.from_config(path=str(written_by_v1))
    assert (ws.subscription_id, ws.resource_group, ws.name) == ("1234-abcd", "ml-rg", "ml-ws")
    assert ws.path == home.resolve(), "no `path` key: the workspace at MLMAGICS_HOME, named by the file"
    assert repr(ws) == "Workspace.create(name='ml-ws', subscription_id='1234-abcd', resource_group='ml-rg')"


def test_a_config_without_the_three_names_says_so(tmp_path, home):
    for values in ({"subscription_id": "s", "resource_group": "r"}, {"Scope": "/subscriptions/s"}, {"workspace_name": ""}):
        found = _config(tmp_path / "cfg" / ".azureml" / "config.json", **values)
        with pytest.raises(UserError) as info:
            Workspace.from_config(str(tmp_path / "cfg"))
        assert info.value.message == (
            f"The config file found in: {found} does not seem to contain the required parameters. Please make sure "
            "it contains your subscription_id, resource_group and workspace_name."
        )
    (tmp_path / "cfg" / ".azureml" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read the workspace config"):
        Workspace.from_config(str(tmp_path / "cfg"))


def test_a_file_name_of_ones_own(tmp_path, home):
    _config(tmp_path / "p" / ".azureml" / "team.json", subscription_id="s", resource_group="r", workspace_name="team")
    _config(tmp_path / "p" / ".azureml" / "config.json", subscription_id="s", resource_group="r", workspace_name="other")
    assert Workspace.from_config(str(tmp_path / "p"), _file_name="team.json").name == "team"


def test_no_config_and_no_path_is_the_default_workspace_said_in_one_line(tmp_path, home, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    strays = [d / sub / f for d in (empty, *empty.parents) for sub in (".mlmagics", ".azureml", "aml_config", "")
              for f in ("config.json", "project.json") if (d / sub / f).is_file()]  # fmt: skip
    if strays:
        pytest.skip(f"a config file outside this test is found first: {strays[0]}")
    monkeypatch.chdir(empty)
    ws = Workspace.from_config()
    assert ws.path == home.resolve()
    assert (ws.name, ws.subscription_id, ws.resource_group, ws.location) == ("home", "local", "local", "local")
    out = capsys.readouterr().out
    assert out.splitlines() == [f"No workspace config.json in {empty} or its parents: using the workspace at {ws.path}"]


def test_a_workspace_folder_given_as_path_is_used_as_it_is(tmp_path, home, capsys):
    existing = Workspace(tmp_path / "team-ws")
    again = Workspace.from_config(str(tmp_path / "team-ws"))
    assert again == existing and again.path == (tmp_path / "team-ws").resolve()
    assert capsys.readouterr().out == ""


def test_write_config_then_from_config_finds_the_same_workspace(tmp_path, home):
    ws = Workspace("sub-1", "rg-1", "named-ws")  # v1's positional form: the workspace at MLMAGICS_HOME
    assert ws.path == home.resolve()
    assert (ws.subscription_id, ws.resource_group, ws.name) == ("sub-1", "rg-1", "named-ws")
    project = tmp_path / "project"
    written = ws.write_config(path=str(project))
    assert written == str(project / ".azureml" / "config.json")
    values = json.loads(Path(written).read_text())
    assert (values["subscription_id"], values["resource_group"], values["workspace_name"]) == ("sub-1", "rg-1", "named-ws")

    (project / "deep" / "down").mkdir(parents=True)
    found = Workspace.from_config(str(project / "deep" / "down"))
    assert found == ws
    assert (found.subscription_id, found.resource_group, found.name) == ("sub-1", "rg-1", "named-ws")

    elsewhere = Workspace(tmp_path / "elsewhere")
    other = tmp_path / "other"
    (other / "aml_config").mkdir(parents=True)
    assert elsewhere.write_config(str(other), file_name="ws.txt") == str(other / "aml_config" / "ws.json")
    assert not (other / ".azureml").exists(), "an existing aml_config/ is used, as v1"
    assert Workspace.from_config(str(other), _file_name="ws.json") == elsewhere
    assert elsewhere.write_config(str(other), file_name="ws") == str(other / "aml_config" / "ws.json")


def test_get_details_has_v1s_keys_and_names_are_never_none(tmp_path, home):
    for ws in (Workspace(tmp_path / "plain"), Workspace("s", "rg", "n"), Workspace.get("got", subscription_id="x")):
        details = ws.get_details()
        for key in ("id", "name", "location", "type", "tags", "workspaceid", "description", "friendlyName",
                    "creationTime", "containerRegistry", "keyVault", "applicationInsights", "storageAccount", "sku",
                    "hbiWorkspace"):  # fmt: skip
            assert key in details, key
        for key in ("name", "location", "subscriptionId", "resourceGroup"):
            assert isinstance(details[key], str) and details[key], key
        assert (details["name"], details["subscriptionId"], details["resourceGroup"]) == (
            ws.name, ws.subscription_id, ws.resource_group)  # fmt: skip
    assert Workspace.get("got", subscription_id="x").get_details()["subscriptionId"] == "x"
    assert Workspace(tmp_path / "plain").get_details()["name"] == "plain"


def test_v1s_positional_constructor_and_get(tmp_path, home):
    ws = Workspace("subscription", "group", "my-ws", auth=None)
    assert (ws.subscription_id, ws.resource_group, ws.name, ws.path) == ("subscription", "group", "my-ws", home.resolve())
    by_keywords = Workspace(subscription_id="subscription", resource_group="group", workspace_name="my-ws")
    assert by_keywords == ws and by_keywords.subscription_id == "subscription"
    got = Workspace.get("my-ws", subscription_id="subscription", resource_group="group")
    assert got == ws and (got.name, got.location) == ("my-ws", "local")
    folder = Workspace(str(tmp_path / "folder"))
    assert (folder.name, folder.subscription_id) == ("folder", "local")
    assert repr(folder) == f"Workspace({str((tmp_path / 'folder').resolve())!r})"


def test_a_huge_deep_or_mistyped_config_is_one_line(tmp_path, home):
    names = {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}
    file = tmp_path / "cfg" / ".azureml" / "config.json"
    file.parent.mkdir(parents=True)
    for text, said in (
        (" " * (1024 * 1024 + 1) + "{}", "larger than 1 MiB"),
        ("[" * 100_000 + "]" * 100_000, "cannot read the workspace config"),
        (json.dumps({**names, "path": 5}), "'path' must be a folder"),
        (json.dumps({**names, "path": ["a"]}), "'path' must be a folder"),
        (json.dumps({**names, "path": "a\0b"}), "'path' must be a folder"),
        (json.dumps({**names, "location": {"x": 1}}), "'location' must be a folder or region name"),
    ):
        file.write_text(text)
        with pytest.raises(UserError) as info:
            Workspace.from_config(str(tmp_path / "cfg"))
        assert said in info.value.message and "\n" not in info.value.message
