"""No face shows a service's keys unless asked for them: every output of the Python API, the CLI (text
and --json), the magics (text and HTML), the widgets and the Jupyter server's REST API is scanned for
them, and so is every file of the workspace but the keys' own. Only the explicit keys routes show them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from IPython.utils.capture import capture_output

from mlmagics.core import LocalWebservice, Recorder, Webservice, Workspace
from mlmagics.widgets import DeployForm, ServiceView

PRIMARY, SECONDARY, UPDATED = "given-primary-key-3f9a", "given-secondary-key-7c21", "updated-secondary-key-5e02"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, echo_image):
    """One keyed service, deployed and updated with keys given, and what its progress reported."""
    folder = tmp_path_factory.mktemp("secrets")
    ws = Workspace(folder / "ws")
    image = echo_image(ws, folder / "app")
    recorder = Recorder()
    config = LocalWebservice.deploy_configuration(auth_enabled=True, primary_key=PRIMARY, secondary_key=SECONDARY)
    service = Webservice.deploy_from_image(ws, "keyed", image, config, progress=recorder)
    service.wait_for_deployment(progress=recorder)
    service.update(secondary_key=UPDATED, progress=recorder)
    yield ws, [*recorder.stages, *recorder.lines, *(str(v) for k, v in recorder.events if k == "done")]
    for service in Webservice.list(ws):
        service.delete()


@pytest.fixture(scope="module")
def lab_workspace(deployed):
    """The workspace the server extension answers for."""
    return deployed[0]


def keys_in(text: str, keys: set[str]) -> list[str]:
    return [key for key in keys if key in text]


def api_outputs(ws: Workspace, progress: list[str]) -> list[str]:
    service = Webservice(ws, "keyed")
    outputs = [repr(service), repr(service.config), json.dumps(service.serialize()), service.get_logs(), *progress]
    outputs += [repr(s) + json.dumps(s.serialize()) for s in Webservice.list(ws, refresh=True)]
    outputs += [repr(i) + json.dumps(i.serialize()) for i in service.models + [service.image]]
    return outputs


def cli_outputs(ws: Workspace) -> list[str]:
    env = {**os.environ, "MLMAGICS_HOME": str(ws.path)}
    commands = [
        ["service", "list"], ["service", "show", "keyed"], ["service", "logs", "keyed"], ["service", "update", "keyed"],
        ["service", "run", "keyed", "{}"], ["model", "list"], ["model", "show", "tiny"], ["image", "list"],
        ["image", "show", "echo:1"],
    ]  # fmt: skip
    outputs = []
    for command in commands:
        for extra in ([], ["--json"]):
            done = subprocess.run([sys.executable, "-m", "mlmagics", *command, *extra], env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}: {done.stderr}"
            outputs += [done.stdout, done.stderr]
    return outputs


def magic_outputs(ws: Workspace, magic_shell) -> list[str]:
    with magic_shell(ws.path) as shell:
        outputs = []
        for magic, line in (("services", ""), ("update", "keyed"), ("logs", "keyed -n 200"), ("test_service", "keyed {}"),
                            ("test_service", "keyed {} --bench 5"), ("swagger", "keyed")):  # fmt: skip
            with capture_output() as captured:
                result = shell.run_line_magic(magic, line)
            formats = shell.display_formatter.format(result)[0]
            outputs += [captured.stdout, captured.stderr, formats.get("text/plain", ""), formats.get("text/html", "")]
        return outputs


def widget_outputs(ws: Workspace) -> tuple[list[str], set[str]]:
    """The service view (its test run too), and a form that deploys a second keyed service: its keys are scanned for as well."""
    view = ServiceView(ws, "keyed")
    view._test()
    form = DeployForm(ws)
    form.name.value, form.image.value, form.auth.value = "form-keyed", "echo:1", True
    form.deploy_button.click()
    assert form.error is None, form.error
    outputs = [view.header.value, json.dumps(view.logs.outputs), json.dumps(view.answer.outputs, default=str)]
    outputs += [json.dumps(form.result.outputs, default=str), *form.progress.lines, *form.progress.stages]
    return outputs, set(Webservice(ws, "form-keyed").get_keys())


async def rest_outputs(jp_fetch) -> list[str]:
    outputs = []
    for parts in (("deployments",), ("services",), ("services", "keyed"), ("services", "keyed", "logs"), ("models",),
                  ("images",)):  # fmt: skip
        outputs.append((await jp_fetch("mlmagics", *parts)).body.decode())
    test = await jp_fetch("mlmagics", "services", "keyed", "test", method="POST", body="{}")
    return [*outputs, test.body.decode()]


def workspace_files(ws: Workspace) -> dict[str, str]:
    """Every file of the workspace as text, but the database (read below, column by column) and the keys file."""
    skipped = {"workspace.db", "workspace.db-wal", "workspace.db-shm", "keys.json"}
    return {
        str(p): p.read_bytes().decode("utf-8", "replace")
        for p in ws.path.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name not in skipped
    }


def database_columns(ws: Workspace) -> dict[str, str]:
    """Every column of every row, but the keys column: where the keys are meant to be."""
    out = {}
    for table in ("counters", "models", "images", "services"):
        for row in ws.query(f"SELECT * FROM {table}"):
            columns = [c for c in row.keys() if (table, c) != ("services", "keys")]
            out.update({f"{table}.{column}:{row['name']}": str(row[column]) for column in columns})
    return out


async def test_no_face_shows_a_key_unless_asked(jp_fetch, deployed, magic_shell):
    ws, progress = deployed
    keys = {PRIMARY, SECONDARY, UPDATED}
    assert Webservice(ws, "keyed").get_keys() == (PRIMARY, UPDATED), "the given keys are the service's"
    widgets, form_keys = widget_outputs(ws)
    keys |= form_keys
    outputs = {
        "api": api_outputs(ws, progress),
        "cli": cli_outputs(ws),
        "magics": magic_outputs(ws, magic_shell),
        "widgets": widgets,
        "rest": await rest_outputs(jp_fetch),
    }
    for face, texts in outputs.items():
        assert any(texts), f"{face} produced output"
        leaks = [(face, i, keys_in(text, keys)) for i, text in enumerate(texts) if keys_in(text, keys)]
        assert leaks == [], f"keys shown by {face}: {leaks}"
    for where, text in {**workspace_files(ws), **database_columns(ws)}.items():
        assert keys_in(text, keys) == [], f"a key in {where}"
    # the explicit routes do show them
    assert set(json.loads((await jp_fetch("mlmagics", "services", "keyed", "keys")).body).values()) == {PRIMARY, UPDATED}
    env = {**os.environ, "MLMAGICS_HOME": str(ws.path)}
    shown = subprocess.run([sys.executable, "-m", "mlmagics", "service", "keys", "keyed", "--json"], env=env, capture_output=True)
    assert set(json.loads(shown.stdout).values()) == {PRIMARY, UPDATED}
    assert json.loads((Webservice(ws, "keyed").folder / "keys.json").read_text()) == {
        "primary_key": PRIMARY,
        "secondary_key": UPDATED,
    }
