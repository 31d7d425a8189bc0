"""The `mlmagics` command, run as a user runs it: a subprocess with a workspace folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlmagics.core.store.metadata import SCHEMA_HEAD


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "MLMAGICS_HOME": str(tmp_path / "ws")}

    def run(*args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [sys.executable, "-m", "mlmagics", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            input=stdin,
        )
        if ok:
            assert out.returncode == 0, f"{args}: {out.stderr}"
        return out

    yield run
    listed = run("service", "list", "--json", ok=False)
    for service in json.loads(listed.stdout or "[]"):
        run("service", "delete", service["name"], ok=False)


def test_the_whole_flow_from_the_command_line(cli, tmp_path, write, echo_script):
    write(tmp_path / "tiny.txt", "weights of tiny")
    write(tmp_path / "score.py", echo_script.format(version="v1", model="tiny"))
    assert (
        cli("model", "register", "tiny.txt", "--name", "tiny", "--tag", "stage=dev").stdout.strip() == "Registered model tiny:1"
    )
    assert "tiny:1" in cli("model", "list").stdout
    assert cli("image", "create", "echo", "--script", "score.py", "--model", "tiny").stdout.strip() == "Created image echo:1"
    deployed = cli("service", "deploy", "echo-svc", "--target", "local", "--image", "echo:1", "--auth")
    assert "Service echo-svc is Healthy" in deployed.stdout and "scoring URI: http://127.0.0.1:" in deployed.stdout
    assert "Deploying echo:1 as echo-svc" in deployed.stderr, "progress goes to stderr"
    answer = json.loads(cli("service", "run", "echo-svc", '{"a": 1}').stdout)
    assert answer == {"version": "v1", "model": "weights of tiny", "input": {"a": 1}}
    assert json.loads(cli("service", "run", "echo-svc", "-", stdin='{"b": 2}').stdout)["input"] == {"b": 2}
    write(tmp_path / "body.json", '{"c": 3}')
    assert json.loads(cli("service", "run", "echo-svc", "@body.json").stdout)["input"] == {"c": 3}
    keys = json.loads(cli("service", "keys", "echo-svc", "--json").stdout)
    assert set(keys) == {"primary", "secondary"}
    assert "calling init()" in cli("service", "logs", "echo-svc", "-n", "50").stdout
    write(tmp_path / "score.py", echo_script.format(version="v2", model="tiny"))
    cli("image", "create", "echo", "--script", "score.py", "--model", "tiny:1")
    assert "now serves echo:2" in cli("service", "update", "echo-svc", "--image", "echo:2").stdout
    listed = json.loads(cli("service", "list", "--json").stdout)
    assert [(s["name"], s["imageId"], s["state"]) for s in listed] == [("echo-svc", "echo:2", "Healthy")]
    assert "echo:1" in cli("image", "list").stdout
    refused = cli("image", "delete", "echo:2", ok=False)
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "mlmagics: error: image echo:2 is used by service echo-svc; delete or update that service first",
    )
    cli("service", "delete", "echo-svc")
    cli("image", "delete", "echo:1")
    cli("image", "delete", "echo:2")
    cli("model", "delete", "tiny:1")
    assert cli("model", "list").stdout.strip() == "(none)"


def test_deploy_from_models_and_script_and_a_failing_init(cli, tmp_path, write, failing_init):
    write(tmp_path / "tiny.txt", "w")
    write(tmp_path / "score.py", failing_init)
    cli("model", "register", "tiny.txt", "--name", "tiny")
    failed = cli("service", "deploy", "broken", "--model", "tiny", "--script", "score.py", ok=False)
    assert failed.returncode == 1
    assert "init() raised RuntimeError: the model file is corrupt" in failed.stderr
    assert "mlmagics: error: Service deployment polling reached non-successful terminal state" in failed.stderr


def test_errors_are_one_line_with_exit_codes(cli, tmp_path):
    missing = cli("service", "show", "nope", ok=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("mlmagics: error: service 'nope' does not exist")
    bad_tag = cli("model", "register", "x", "--name", "m", "--tag", "novalue", ok=False)
    assert bad_tag.stderr.strip() == "mlmagics: error: tag 'novalue' must look like key=value"
    usage = cli("service", "deploy", ok=False)
    assert usage.returncode == 2 and "usage: mlmagics service deploy" in usage.stderr
    wrong_setting = cli("service", "deploy", "svc-x", "--image", "a:1", "--cpu", "1", ok=False)
    assert "the local target has no setting cpu_cores" in wrong_setting.stderr
    negative = cli("service", "logs", "svc-x", "-n", "-5", ok=False)
    assert negative.returncode == 2 and "--lines takes a positive integer, got '-5'" in negative.stderr


def test_quickstart_runs_the_flow_and_cleans_up(cli, tmp_path):
    out = cli("quickstart", "--workdir", "qs").stdout
    assert "Service quickstart is Healthy" in out
    assert "prediction for 3 digits: [0, 1, 2]" in out
    assert "Deleted the service, the image and the model." in out
    assert cli("service", "list").stdout.strip() == "(none)"


def test_migrate_refuses_unreadable_and_oversized_files_in_one_line(tmp_path, capsys, monkeypatch):
    from mlmagics import cli as cli_module

    (tmp_path / "latin1.py").write_bytes(b"\xff\xfe import azureml.core\n")
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "list.ipynb").write_text("[]")
    (tmp_path / "big.py").write_text("import azureml.core\n" * 10)
    monkeypatch.setattr(cli_module, "MIGRATE_MAX_BYTES", 100)
    monkeypatch.chdir(tmp_path)
    for name, expected in (
        ("latin1.py", "latin1.py could not be migrated: 'utf-8' codec"),
        ("broken.ipynb", "broken.ipynb could not be migrated: Notebook does not appear to be JSON"),
        ("list.ipynb", "list.ipynb could not be migrated:"),
        ("big.py", "big.py is larger than"),
        (".", ". is not a file"),
    ):
        assert cli_module.main(["migrate", name]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"mlmagics: error: {expected}") and err.count("\n") == 1, err


def test_the_workspace_commands_show_a_team_workspace_and_sweep_it(cli, tmp_path):
    config = tmp_path / "team" / ".mlmagics" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"metadata": "sqlite:///../db/ws.db", "artifacts": "../store"}))  # relative to the file
    shown = json.loads(cli("workspace", "show", "--json", "--workspace", str(config)).stdout)
    assert shown["metadata"] == f"sqlite:///{tmp_path / 'team' / 'db' / 'ws.db'}"
    assert (shown["artifacts"], shown["schema"]) == (str(tmp_path / "team" / "store"), SCHEMA_HEAD)
    assert shown["id"].startswith("workspace:") and shown["local"] != str(tmp_path / "team")
    write = tmp_path / "m.txt"
    write.write_text("w")
    registered = cli("model", "register", str(write), "--name", "m", "--workspace", str(config)).stdout
    assert registered.strip() == "Registered model m:1"
    listed = cli("model", "list", "--workspace", str(config)).stdout.splitlines()
    assert listed[0].split() == ["ID", "SIZE", "TAGS", "CREATEDTIME", "CREATEDBY"] and "@" in listed[1]
    swept = cli("workspace", "sweep", "--workspace", str(config)).stdout.strip()
    assert swept == "Removed 0 artifact(s) no model or image uses and 0 chunk(s) no recorded artifact holds"
    bad = cli("workspace", "show", "--workspace", str(tmp_path / "nope.json"), ok=False)
    assert (bad.returncode, bad.stderr) == (1, f"mlmagics: error: the workspace config {tmp_path / 'nope.json'} does not exist\n")
    assert not (tmp_path / "nope.json").exists()
