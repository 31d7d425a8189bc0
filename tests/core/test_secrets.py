"""Keys live in one place (the keys column, and the service's keys file), and what holds keys, logs or
collected data is private to its user. (tests/server/test_secrets_faces.py scans every face's output.)"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time

import pytest
import requests

from mlmagics.core import InvalidConfiguration, LocalWebservice, Webservice, Workspace

PRIMARY, SECONDARY = "given-primary-key-3f9a", "given-secondary-key-7c21"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def stored_config(ws: Workspace, name: str) -> str:
    return ws.query("SELECT config FROM services WHERE name=:name", {"name": name})[0]["config"]


def test_a_configurations_keys_go_to_the_keys_only(ws, tmp_path, echo_image):
    config = LocalWebservice.deploy_configuration(auth_enabled=True, primary_key=PRIMARY, secondary_key=SECONDARY)
    assert PRIMARY not in repr(config) and PRIMARY not in json.dumps(config.to_dict())
    service = Webservice.deploy_from_image(ws, "keyed", echo_image(ws, tmp_path / "app"), config)
    service.wait_for_deployment()
    assert service.get_keys() == (PRIMARY, SECONDARY)
    for text in (stored_config(ws, "keyed"), json.dumps(service.serialize()), repr(service), repr(service.config)):
        assert PRIMARY not in text and SECONDARY not in text
    ok = requests.post(service.scoring_uri, data="{}", headers={"Authorization": f"Bearer {SECONDARY}"}, timeout=10)
    assert ok.status_code == 200, "the given keys are the ones the server accepts"


def test_keys_given_to_update_replace_the_keys_and_stay_out_of_the_config(ws, tmp_path, echo_image):
    config = LocalWebservice.deploy_configuration(auth_enabled=True)
    service = Webservice.deploy_from_image(ws, "rekeyed", echo_image(ws, tmp_path / "app"), config)
    service.wait_for_deployment()
    old_secondary = service.get_keys()[1]
    service.update(primary_key=PRIMARY)
    assert Webservice(ws, "rekeyed").get_keys() == (PRIMARY, old_secondary)
    assert PRIMARY not in stored_config(ws, "rekeyed")
    answer = requests.post(service.scoring_uri, data="{}", headers={"Authorization": f"Bearer {PRIMARY}"}, timeout=10)
    assert answer.status_code == 200


def test_a_bad_key_is_refused_without_repeating_it():
    with pytest.raises(InvalidConfiguration) as caught:
        LocalWebservice.deploy_configuration(primary_key="has a space in it")
    assert "primary_key must be 1 to 256 printable characters" in caught.value.message
    assert "has a space" not in caught.value.message
    with pytest.raises(InvalidConfiguration, match="secondary_key must be"):
        LocalWebservice.deploy_configuration(secondary_key="x" * 257)


def test_keys_that_older_versions_kept_in_a_config_are_scrubbed_on_open(workspace_of_0_1):
    folder, _ = workspace_of_0_1()  # written by mlmagics 0.1, then the keys put in its config as versions before it did
    with sqlite3.connect(folder / "workspace.db") as db:
        config = json.loads(db.execute("SELECT config FROM services").fetchone()[0])
        legacy = {**config, "primary_key": PRIMARY, "secondary_key": SECONDARY}
        db.execute("UPDATE services SET config=? WHERE name='old-service'", (json.dumps(legacy),))
    reopened = Workspace(folder)
    config = json.loads(stored_config(reopened, "old-service"))
    assert "primary_key" not in config and "secondary_key" not in config
    assert config["compute_type"] == "Local" and Webservice(reopened, "old-service").state == "Healthy"


def test_the_workspace_is_private_to_its_user(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert mode(ws.path) == 0o700
    db = sqlite3.connect(ws.path / "workspace.db")  # while a connection is open in WAL mode, the -wal and -shm files exist
    try:
        db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        for name in ("workspace.db", "workspace.db-wal", "workspace.db-shm"):
            assert mode(ws.path / name) == 0o600, name
    finally:
        db.close()


def test_an_existing_open_workspace_is_tightened_when_opened(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    sqlite3.connect(folder / "workspace.db").close()  # created with the umask: 0644
    os.chmod(folder, 0o755)
    os.chmod(folder / "workspace.db", 0o644)
    Workspace(folder)
    assert (mode(folder), mode(folder / "workspace.db")) == (0o700, 0o600)


def test_a_local_services_files_are_private(ws, tmp_path, monkeypatch, echo_image):
    monkeypatch.setenv("MLMAGICS_LOG_MAX_BYTES", "4096")  # rotate soon, so that a rotated file exists
    config = LocalWebservice.deploy_configuration(auth_enabled=True)
    service = Webservice.deploy_from_image(ws, "private", echo_image(ws, tmp_path / "app"), config)
    service.wait_for_deployment()
    headers = {"Authorization": f"Bearer {service.get_keys()[0]}"}
    for _ in range(40):
        requests.post(service.scoring_uri, data="{}", headers=headers, timeout=10)
    time.sleep(0.3)
    files = [service.log_path, service.folder / "server.log.1", service.state_path, service.keys_path]
    assert {str(f.name): mode(f) for f in files} == {str(f.name): 0o600 for f in files}
