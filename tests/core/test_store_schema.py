"""The workspace's schema over time: Alembic's scripts and the client's idea of them agree, a workspace written by
mlmagics 0.1 (before Alembic) is upgraded in place with nothing lost, and a newer one is refused."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from mlmagics.core import Image, Model, Webservice, Workspace
from mlmagics.core.store import metadata


def test_the_client_knows_every_migration_and_the_head():
    config = Config()
    config.set_main_option("script_location", str(metadata._MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_current_head() == metadata.SCHEMA_HEAD
    assert sorted(s.revision for s in scripts.walk_revisions()) == sorted(metadata.KNOWN_REVISIONS)


def test_a_workspace_of_0_1_is_upgraded_in_place_and_loses_nothing(workspace_of_0_1, capsys):
    folder, scoring_uri = workspace_of_0_1()
    with sqlite3.connect(folder / "workspace.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" not in tables, "written by the old code"
    ws = Workspace(folder)
    assert ws.db.revision() == metadata.SCHEMA_HEAD
    [model] = Model.list(ws)
    assert (model.id, model.tags, model.created_by) == ("tiny:1", {"from": "0.1"}, {})
    assert model.path.read_text() == "weights of 0.1\n"
    [image] = Image.list(ws)
    assert (image.id, image.model_ids, image.snapshot) == ("echo:1", ["tiny:1"], None)
    assert (image.app_dir / "score.py").exists()
    service = Webservice(ws, "old-service")
    assert (service.scoring_uri, service.update_deployment_state()) == (scoring_uri, "Healthy")
    assert service.run({"still": "served"})["input"] == {"still": "served"}
    assert Model.register(ws, model.path, "tiny").version == 2, "the counters carried over"
    assert Workspace(folder).db.revision() == metadata.SCHEMA_HEAD  # opening it again changes nothing


def test_a_folder_workspace_newer_than_this_client_is_refused_and_left_as_it_is(tmp_path):
    Workspace(tmp_path / "ws")
    with sqlite3.connect(tmp_path / "ws" / "workspace.db") as db:
        db.execute("UPDATE alembic_version SET version_num='0999'")
    metadata._at_head.discard(f"sqlite:///{tmp_path / 'ws' / 'workspace.db'}")
    with pytest.raises(metadata.SchemaTooNew) as refused:
        Workspace(tmp_path / "ws")
    assert f"has schema 0999, newer than this mlmagics knows (up to {metadata.SCHEMA_HEAD})" in refused.value.message
    with sqlite3.connect(tmp_path / "ws" / "workspace.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0999",)]


def test_workspaces_opened_from_threads_at_once_are_each_brought_to_the_head(tmp_path):
    """Alembic keeps its context in a module global: two threads migrating at once ran each other's migrations
    on each other's connections ('table models already exists', KeyError('script'), a SystemError of sqlite3)."""
    def open_new(revisions: dict[int, object], round: int, i: int) -> None:
        try:
            revisions[i] = metadata.Database(f"sqlite:///{tmp_path / f'ws-{round}-{i}.db'}").revision()
        except Exception as e:
            revisions[i] = repr(e)

    for round in range(3):
        revisions: dict[int, object] = {}
        threads = [threading.Thread(target=open_new, args=(revisions, round, i)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert revisions == dict.fromkeys(range(6), metadata.SCHEMA_HEAD)


def test_a_child_forked_while_another_thread_held_the_engine_lock_opens_a_workspace(tmp_path):
    """The lock was the parent's, held by a thread the child does not have: the child's first open hung."""
    with metadata._engines_lock:  # as a thread of the parent opening a workspace at the moment of the fork
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = 0 if metadata.Database(f"sqlite:///{tmp_path / 'child.db'}").revision() == metadata.SCHEMA_HEAD else 4
            finally:
                os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child hung on the parent's engine lock")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_a_newer_schema_with_an_odd_revision_is_still_one_line(tmp_path):
    Workspace(tmp_path / "ws")
    with sqlite3.connect(tmp_path / "ws" / "workspace.db") as db:
        db.execute("UPDATE alembic_version SET version_num=?", ("0999\nrun: rm -rf ~" + "x" * 1000,))
    metadata._at_head.discard(f"sqlite:///{tmp_path / 'ws' / 'workspace.db'}")
    with pytest.raises(metadata.SchemaTooNew) as refused:
        Workspace(tmp_path / "ws")
    assert "\n" not in refused.value.message and len(refused.value.message) < 400
