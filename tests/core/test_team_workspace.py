"""A workspace a team shares: every combination of stores users will use (SQLite + a folder, PostgreSQL + S3,
PostgreSQL + Azure Blob), on real servers on 127.0.0.1 (.ci/services.sh). "Machines" here are Workspace objects
(or processes) with folders of their own on this machine, sharing nothing but the two stores."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from mlmagics import cli
from mlmagics.core import ContainerImage, Image, Model, Workspace
from mlmagics.core.errors import ConflictError, StorageFullError, UserError
from mlmagics.core.store import artifacts
from mlmagics.core.store.artifacts import ObjectStore
from mlmagics.core.store.metadata import DuplicateRow, SchemaTooNew, TransactionAborted, WorkspaceUnavailable
from tests import stores
from tests.conftest import _write as write_file

pytestmark = pytest.mark.stores
postgres_uri, s3_uri, azure_uri = stores.postgres_uri, stores.s3_uri, stores.azure_uri

COMBINATIONS = ["sqlite+folder", "postgresql+s3", "postgresql+azure"]


@pytest.fixture(params=COMBINATIONS)
def stores_of(request, tmp_path):
    """(metadata URI, artifacts URI) of fresh stores of one combination."""
    if request.param == "sqlite+folder":
        return f"sqlite:///{tmp_path / 'shared' / 'workspace.db'}", str(tmp_path / "shared" / "artifacts")
    (tmp_path / "shared").mkdir()
    metadata = request.getfixturevalue("postgres_uri")
    artifacts = request.getfixturevalue("s3_uri" if request.param.endswith("s3") else "azure_uri")
    return metadata, artifacts


@pytest.fixture
def machine(stores_of, tmp_path):
    """`machine(name)`: the team's workspace as opened on machine `name` (a folder of its own for its cache)."""
    (tmp_path / "shared").mkdir(exist_ok=True)
    metadata, artifacts = stores_of
    return lambda name: Workspace(metadata=metadata, artifacts=artifacts, local=tmp_path / "machines" / name)


def _objects(artifacts: str) -> list[str]:
    """Every object (or file) under the artifact store, relative to it."""
    fs, root = fsspec.core.url_to_fs(artifacts, skip_instance_cache=True)
    fs.invalidate_cache()
    return sorted(p[len(root.rstrip("/")) + 1 :] for p in fs.find(root) if "/.staging/" not in p and "/.trash/" not in p)


def _chunk(data: str | bytes) -> str:
    """The object a shared store keeps `data` in (a chunk, named by its SHA-256)."""
    return "chunks/" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _shared(stores_of: tuple[str, str]) -> bool:
    return stores_of[1].startswith(("s3://", "az://"))


def test_a_model_registered_on_one_machine_is_used_on_another(machine, stores_of, tmp_path, write):
    a, b = machine("a"), machine("b")
    source = write(tmp_path / "model" / "weights.pkl", "weights")
    registered = Model.register(a, tmp_path / "model", "team-model", tags={"stage": "dev"})
    seen = Model(b, "team-model")
    assert (seen.id, seen.tags, seen.digest) == ("team-model:1", {"stage": "dev"}, registered.digest)
    assert seen.created_by["host"] and seen.created_by["user"]
    assert (seen.path / "weights.pkl").read_bytes() == source.read_bytes()  # fetched by b, checked against its digest
    download = Path(seen.download(str(tmp_path / "restored")))
    assert (download / "weights.pkl").read_text() == "weights"
    assert b.identity == a.identity and b != Workspace(tmp_path / "elsewhere")


def test_equal_content_is_stored_once_for_the_whole_team(machine, stores_of, tmp_path, write):
    write(tmp_path / "one" / "m.bin", "same bytes")
    write(tmp_path / "two" / "m.bin", "same bytes")
    first = Model.register(machine("a"), tmp_path / "one" / "m.bin", "m")
    second = Model.register(machine("b"), tmp_path / "two" / "m.bin", "other-name")
    assert first.digest == second.digest
    if _shared(stores_of):
        assert _objects(stores_of[1]) == [_chunk("same bytes"), f"manifests/{first.digest}.json"]
    else:
        assert [p for p in _objects(stores_of[1]) if p.startswith("sha256/")] == [f"sha256/{first.digest}/m.bin"]


def test_the_last_delete_removes_the_artifact_and_not_before(machine, stores_of, tmp_path, write):
    a, b = machine("a"), machine("b")
    write(tmp_path / "m.bin", "bytes")
    first, second = Model.register(a, tmp_path / "m.bin", "m"), Model.register(a, tmp_path / "m.bin", "m")
    Model(b, id=first.id).delete()
    assert any(p.startswith(("sha256/", "chunks/")) for p in _objects(stores_of[1])), "still used by m:2"
    assert Model(b, id=second.id).path.read_text() == "bytes"
    Model(b, id=second.id).delete()
    assert not any(p.startswith(("sha256/", "chunks/", "manifests/")) for p in _objects(stores_of[1]))
    assert Model.list(a) == []


def test_an_image_created_on_one_machine_is_read_from_the_store_on_another(machine, tmp_path, write, echo_script,
                                                                          monkeypatch):  # fmt: skip
    a, b = machine("a"), machine("b")
    model = Model.register(a, write(tmp_path / "tiny.txt", "weights"), "tiny")
    write(tmp_path / "app" / "score.py", echo_script.format(version="v1", model="tiny"))
    monkeypatch.chdir(tmp_path / "app")
    image = Image.create(a, "echo", [model], ContainerImage.image_configuration(execution_script="score.py"))
    on_b = Image(b, id=image.id)
    assert (on_b.app_dir / "score.py").read_text() == (tmp_path / "app" / "score.py").read_text()
    assert on_b.created_by == image.created_by
    with pytest.raises(ConflictError, match="used by image echo:1"):
        Model(b, id=model.id).delete()
    on_b.delete()
    Model(b, id=model.id).delete()


REGISTER_MANY = """
import json, sys
from mlmagics.core import Model, Workspace
metadata, artifacts, local, source, count = sys.argv[1:6]
ws = Workspace(metadata=metadata, artifacts=artifacts, local=local)
print(json.dumps([Model.register(ws, source, "contended").version for _ in range(int(count))]))
"""


def test_concurrent_registrations_from_many_processes_lose_and_repeat_no_version(stores_of, tmp_path, write):
    metadata, artifacts = stores_of
    processes, each = 6, 8
    sources = [write(tmp_path / f"src-{i}" / "m.txt", f"content {i % 2}") for i in range(processes)]  # shared content too
    Workspace(metadata=metadata, artifacts=artifacts, local=tmp_path / "machines" / "setup")  # the schema, once
    running = [
        subprocess.Popen([sys.executable, "-c", REGISTER_MANY, metadata, artifacts, str(tmp_path / "machines" / f"p{i}"),
                          str(sources[i]), str(each)], stdout=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(processes)
    ]
    seen = []
    for process in running:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0
        seen += json.loads(out)
    assert sorted(seen) == list(range(1, processes * each + 1)), "a version lost or given twice"
    ws = Workspace(metadata=metadata, artifacts=artifacts, local=tmp_path / "machines" / "check")
    assert sorted(m.version for m in Model.list(ws, name="contended")) == sorted(seen)
    for model in Model.list(ws, name="contended"):
        assert model.path.read_text().startswith("content ")


KILLED_IN_COMMIT = """
import os, sys
from mlmagics.core import Model, Workspace
from mlmagics.core.store import metadata as store
store.Transaction.next_version = lambda *a: os._exit(9)  # killed holding the lock, the artifact uploaded, no row yet
metadata, artifacts, local, source = sys.argv[1:5]
Model.register(Workspace(metadata=metadata, artifacts=artifacts, local=local), source, "half")
"""


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_registration_killed_before_its_commit_leaves_no_model_and_its_objects_are_swept(stores_of, tmp_path, write):
    metadata, artifacts = stores_of
    source = write(tmp_path / "m.bin", "uploaded, never recorded")
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_COMMIT, metadata, artifacts, str(tmp_path / "k"), str(source)])
    assert killed.returncode == 9
    ws = Workspace(metadata=metadata, artifacts=artifacts, local=tmp_path / "after")
    assert Model.list(ws) == []
    [chunk, manifest] = _objects(artifacts)
    assert chunk == _chunk("uploaded, never recorded") and manifest.startswith("manifests/")
    assert ws.sweep_artifacts(older_than_s=3600) == [], "too recent: may be a registration in flight"
    assert _objects(artifacts) == [chunk, manifest]
    assert ws.sweep_artifacts(older_than_s=0) == [manifest.removeprefix("manifests/").removesuffix(".json")]
    assert _objects(artifacts) == []
    assert Model.register(ws, source, "half").path.read_text() == "uploaded, never recorded"


KILLED_WHILE_REMOVING = """
import os, sys
from mlmagics.core import Model, Workspace
from mlmagics.core.store.artifacts import ObjectStore

def killed_half_way(self, tx, digest):
    self.fs.rm_file(self._manifest(digest))
    os._exit(9)  # the manifest removed, the parts still there, the removal's transaction never committed

ObjectStore._remove = killed_half_way
metadata, artifacts, local = sys.argv[1:4]
Model(Workspace(metadata=metadata, artifacts=artifacts, local=local), "m").delete()
"""


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_delete_killed_while_removing_makes_a_registration_that_found_the_objects_upload_again(
    machine, stores_of, tmp_path, monkeypatch
):
    """A registration found the objects of its content in the store, before the lock; then a delete of their last
    user removed some and was killed, its transaction rolled back. Under the lock, the registration sees the
    removal the delete had recorded (committed with the delete) and uploads the objects again."""
    metadata, artifacts_uri = stores_of
    write_file(tmp_path / "model" / "a.txt", "a")
    write_file(tmp_path / "model" / "b.txt", "b")  # two files: the store is looked at before uploading
    Model.register(machine("a"), tmp_path / "model", "m")
    complete, killed = ObjectStore._complete, []

    def found_then_a_delete_is_killed(self, digest, expected=None, parts=True):
        found = complete(self, digest, expected, parts)
        if not killed:
            deleting = [sys.executable, "-c", KILLED_WHILE_REMOVING, metadata, artifacts_uri, str(tmp_path / "machines" / "d")]
            killed.append((found is not None, subprocess.run(deleting, timeout=120).returncode))
        return found

    monkeypatch.setattr(ObjectStore, "_complete", found_then_a_delete_is_killed)
    Model.register(machine("b"), tmp_path / "model", "n")
    assert killed == [(True, 9)]
    fetched = Model(machine("c"), "n").path
    assert sorted((p.name, p.read_text()) for p in fetched.iterdir()) == [("a.txt", "a"), ("b.txt", "b")]
    assert Model.list(machine("c"), name="m") == []


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_under_the_write_lock_a_registration_reads_only_the_database(machine, tmp_path, monkeypatch, free_port):
    """Registrations held the team's write lock across S3 round trips (a check of the parts), so they serialized
    at ~20/s however many processes registered. The store is looked at, and written, before the lock is taken."""
    a = machine("a")
    unreachable = fsspec.filesystem("s3", endpoint_url=f"http://127.0.0.1:{free_port()}", skip_instance_cache=True,
                                    config_kwargs={"retries": {"max_attempts": 1}})  # fmt: skip
    transaction = a.transaction

    @contextlib.contextmanager
    def with_the_store_unreachable():
        reachable, a.artifacts._fs = a.artifacts._fs, unreachable
        try:
            with transaction() as tx:
                yield tx
        finally:
            a.artifacts._fs = reachable

    monkeypatch.setattr(a, "transaction", with_the_store_unreachable)
    write_file(tmp_path / "folder" / "x.txt", "x")
    write_file(tmp_path / "folder" / "y.txt", "y")
    registered = [
        Model.register(a, write_file(tmp_path / "new.bin", "new content"), "new"),  # one file: uploaded at once
        Model.register(a, tmp_path / "folder", "folder"),  # several: looked for, then uploaded
        Model.register(a, tmp_path / "folder", "folder"),  # found there: not uploaded again
        Model.register(a, tmp_path / "new.bin", "new"),
    ]
    assert [m.id for m in registered] == ["new:1", "folder:1", "folder:2", "new:2"]
    assert Model(machine("b"), "new").path.read_text() == "new content"
    assert (Model(machine("b"), "folder").path / "y.txt").read_text() == "y"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_workspaces_of_one_process_share_a_storage_client_until_the_credentials_change(machine, monkeypatch):
    """Every Workspace built a client of its own: ~0.3 s at its first call, in each notebook cell that opens one."""
    a, b = machine("a"), machine("b")
    assert a.artifacts.fs is b.artifacts.fs
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY" if a.artifacts.protocol == "s3" else "AZURE_STORAGE_KEY", "another")
    assert machine("c").artifacts.fs is not a.artifacts.fs, "a client with the credentials of before"
    from mlmagics.core.store import artifacts

    held = len(artifacts._filesystems)
    for token in range(5):  # rotated credentials replace the process's client: the map does not grow with them
        monkeypatch.setenv("AWS_SESSION_TOKEN", f"token-{token}")
        assert machine("d").artifacts.fs is not a.artifacts.fs
    assert len(artifacts._filesystems) == held


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_an_artifact_changed_in_the_store_is_refused_at_download(machine, stores_of, tmp_path, write):
    model = Model.register(machine("a"), write(tmp_path / "m.bin", "the real weights"), "m")
    fs, root = fsspec.core.url_to_fs(stores_of[1], skip_instance_cache=True)
    fs.pipe_file(f"{root}/{_chunk('the real weights')}", b"the evil weights")  # same size, other bytes
    with pytest.raises(UserError, match="does not match its digest") as refused:
        _ = Model(machine("b"), "m").path
    assert not list((tmp_path / "machines" / "b" / "artifacts" / "sha256").iterdir()), "nothing unverified is kept"
    assert f"remove manifests/{model.digest}.json" in refused.value.message  # what it says to do, done:
    fs.rm_file(f"{root}/manifests/{model.digest}.json")
    Model.register(machine("c"), tmp_path / "m.bin", "m")
    assert Model(machine("b"), "m", version=1).path.read_text() == "the real weights"


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_a_large_model_streams_in_parts_with_bounded_memory(stores_of, tmp_path):
    metadata, artifacts = stores_of
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    measure = textwrap.dedent("""
        import resource, sys
        from mlmagics.core import Model, Workspace
        metadata, artifacts, local, source = sys.argv[1:5]
        ws = Workspace(metadata=metadata, artifacts=artifacts, local=local)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        Model.register(ws, source, "big")
        Model(Workspace(metadata=metadata, artifacts=artifacts, local=local + "-b"), "big").path  # the download too
        print(before // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", measure, metadata, artifacts, str(tmp_path / "m"), str(big)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    progress = [line for line in done.stdout.splitlines() if "%" in line]
    assert any("uploading big.bin" in line and "100 %" in line for line in progress), done.stdout
    assert any(line.startswith("downloading sha256/") and "100 %" in line for line in progress), done.stdout
    before, peak = map(int, done.stdout.splitlines()[-1].split())
    assert peak - before < 64, f"a 256 MiB model took {peak - before} MiB more memory to register and fetch"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_files_of_every_size_around_a_part_come_back_whole_on_another_machine(machine, tmp_path):
    """S3 uploads send parts at once, each read from the file as it is sent: the last part is shorter."""
    part = artifacts.CHUNK_BYTES
    sizes = {"empty": 0, "byte": 1, "part": part, "part-and-3": part + 3, "three-parts-but-1": 3 * part - 1}
    for name, size in sizes.items():
        (tmp_path / "model").mkdir(exist_ok=True)
        (tmp_path / "model" / name).write_bytes(os.urandom(size))
    Model.register(machine("a"), tmp_path / "model", "sizes")
    fetched = Model(machine("b"), "sizes").path
    for name in sizes:
        assert (fetched / name).read_bytes() == (tmp_path / "model" / name).read_bytes(), name


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_chunk_two_models_hold_stays_until_neither_does(machine, stores_of, tmp_path, write):
    """Equal bytes in two different artifacts are one object: removing one artifact leaves what the other holds."""
    a, b = machine("a"), machine("b")
    write(tmp_path / "alone" / "w.bin", "shared weights")
    write(tmp_path / "pair" / "w.bin", "shared weights")
    write(tmp_path / "pair" / "extra.txt", "extra")
    alone = Model.register(a, tmp_path / "alone" / "w.bin", "alone")
    pair = Model.register(a, tmp_path / "pair", "pair")
    assert [p for p in _objects(stores_of[1]) if p.startswith("chunks/")] == sorted([_chunk("shared weights"), _chunk("extra")])
    Model(b, id=alone.id).delete()
    assert _chunk("shared weights") in _objects(stores_of[1]), "removed though pair:1 holds it"
    assert (Model(machine("c"), "pair").path / "w.bin").read_text() == "shared weights"
    Model(b, id=pair.id).delete()
    assert _objects(stores_of[1]) == []


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_an_artifact_stored_before_chunks_is_read_reused_and_removed(machine, stores_of, tmp_path, write):
    """A store written before schema 0004 keeps each file as one object, `sha256/<digest>/<path>`, and records no
    chunks: it is downloaded from there, a registration of the same content sends nothing, and a delete removes it."""
    a = machine("a")
    source = write(tmp_path / "m.bin", "weights of before")
    model = Model.register(a, source, "old")
    fs, root = fsspec.core.url_to_fs(stores_of[1], skip_instance_cache=True)
    root = root.rstrip("/")
    fs.rm(f"{root}/chunks", recursive=True)
    fs.pipe_file(f"{root}/sha256/{model.digest}/m.bin", b"weights of before")
    manifest = {"digest": model.digest, "files": {"m.bin": 17}, "dirs": [], "bytes": 17}
    fs.pipe_file(f"{root}/manifests/{model.digest}.json", json.dumps(manifest).encode())
    with a.transaction() as tx:
        tx.execute("DELETE FROM artifact_chunks")
    assert Model(machine("b"), "old").path.read_text() == "weights of before"
    again = Model.register(machine("c"), source, "old")
    assert not any(p.startswith("chunks/") for p in _objects(stores_of[1])), "sent again"
    Model(a, id=model.id).delete()
    assert Model(machine("d"), id=again.id).path.read_text() == "weights of before"
    Model(a, id=again.id).delete()
    assert _objects(stores_of[1]) == []


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_chunks_go_up_while_the_copy_is_hashed_and_a_model_registered_again_sends_none(machine, tmp_path, monkeypatch):
    """The upload does not wait for the digest of new content: a chunk is sent as soon as the copy has hashed it.
    Content whose first chunk the workspace holds waits for its digest, and is not sent when it is stored."""
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 64 << 10)
    source = tmp_path / "m.bin"
    source.write_bytes(os.urandom(3 << 20))
    events: list[str] = []
    put, copy_in = ObjectStore._put, artifacts.FolderStore.copy_in
    monkeypatch.setattr(ObjectStore, "_put", lambda self, *args: (events.append("sent"), put(self, *args))[1])
    monkeypatch.setattr(artifacts.FolderStore, "copy_in",
                        lambda self, *args: (copy_in(self, *args), events.append("hashed"))[0])  # fmt: skip
    Model.register(machine("a"), source, "m")
    assert events.count("sent") == 48 and events.index("sent") < events.index("hashed"), events
    events.clear()
    assert Model.register(machine("b"), source, "m").version == 2
    assert events == ["hashed"], "the stored content was sent again"
    assert Model(machine("c"), "m").path.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_bytes_repeated_within_a_file_are_one_chunk_and_come_back_whole(machine, stores_of, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 64 << 10)
    block = os.urandom(64 << 10)
    source = tmp_path / "m.bin"
    source.write_bytes(block * 3 + b"the end")
    model = Model.register(machine("a"), source, "m")
    assert _objects(stores_of[1]) == sorted([_chunk(block), _chunk(b"the end"), f"manifests/{model.digest}.json"])
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 8 << 20)  # a reader follows the manifest, not its own setting
    assert Model(machine("b"), "m").path.read_bytes() == source.read_bytes()


KILLED_WHILE_SENDING = """
import os, sys
from mlmagics.core import Model, Workspace
from mlmagics.core.store import artifacts
artifacts.CHUNK_BYTES = 64 << 10
put, sent = artifacts.ObjectStore._put, []

def killed_after_two(self, *args):
    put(self, *args)
    sent.append(1)
    if len(sent) == 2:
        os._exit(9)  # two chunks sent, the copy still hashing, no manifest

artifacts.ObjectStore._put = killed_after_two
artifacts.UPLOAD_CHUNKS_AT_ONCE = 1
metadata, artifacts_uri, local, source = sys.argv[1:5]
Model.register(Workspace(metadata=metadata, artifacts=artifacts_uri, local=local), source, "half")
"""


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_registration_killed_while_sending_leaves_no_model_and_its_chunks_are_swept(stores_of, tmp_path):
    metadata, artifacts_uri = stores_of
    source = tmp_path / "m.bin"
    source.write_bytes(os.urandom(4 << 20))
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_SENDING, metadata, artifacts_uri, str(tmp_path / "k"),
                             str(source)])  # fmt: skip
    assert killed.returncode == 9
    ws = Workspace(metadata=metadata, artifacts=artifacts_uri, local=tmp_path / "after")
    assert Model.list(ws) == []
    left = _objects(artifacts_uri)
    assert len(left) == 2 and all(p.startswith("chunks/") for p in left), left
    kept = ws.sweep_artifacts(older_than_s=3600)
    assert (kept, kept.chunks, _objects(artifacts_uri)) == ([], [], left), "too recent: may be in flight"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"metadata": metadata, "artifacts": artifacts_uri}))
    swept = subprocess.run([sys.executable, "-m", "mlmagics", "workspace", "sweep", "--older-than", "0", "--json",
                            "--workspace", str(config)], capture_output=True, text=True)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout) == {"removed": [], "chunks": sorted(p.removeprefix("chunks/") for p in left)}
    assert _objects(artifacts_uri) == []
    assert Model.register(ws, source, "half").path.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_delete_removing_a_chunk_a_registration_in_flight_sent_makes_it_send_it_again(machine, stores_of, tmp_path,
                                                                                       monkeypatch):  # fmt: skip
    """b registers a folder holding the bytes of one:1; between b's upload and b's lock, one:1 is deleted, and with
    it the chunk no committed row holds. Under the lock b sees the removal and sends its chunks again."""
    source = write_file(tmp_path / "one" / "w.bin", "shared weights")
    write_file(tmp_path / "two" / "w.bin", "shared weights")
    write_file(tmp_path / "two" / "x.txt", "x")
    one = Model.register(machine("a"), source, "one")
    upload, deleted = ObjectStore._upload, []

    def upload_then_delete_one(self, *args):
        upload(self, *args)
        if not deleted:
            deleted.append(Model(machine("c"), id=one.id).delete())
            assert _chunk("shared weights") not in _objects(stores_of[1])

    monkeypatch.setattr(ObjectStore, "_upload", upload_then_delete_one)
    Model.register(machine("b"), tmp_path / "two", "two")
    assert deleted and _chunk("shared weights") in _objects(stores_of[1])
    assert (Model(machine("d"), "two").path / "w.bin").read_text() == "shared weights"


# -- configuration: URIs, config files, secrets -----------------------------------------------------------------
def test_a_config_file_names_the_stores_and_from_config_finds_it(stores_of, tmp_path, monkeypatch):
    metadata, artifacts = stores_of
    first = Workspace(metadata=metadata, artifacts=artifacts, local=tmp_path / "local")
    written = Path(first.write_config(tmp_path / "project"))
    assert written == tmp_path / "project" / ".mlmagics" / "config.json"
    assert json.loads(written.read_text()) == {"metadata": metadata, "artifacts": artifacts}
    (tmp_path / "project" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "project" / "notebooks")
    assert Workspace.from_config().identity == first.identity
    monkeypatch.setenv("MLMAGICS_WORKSPACE", str(written))
    assert Workspace().identity == first.identity  # what the CLI, the magics and the panel open by default
    assert Workspace(str(written)).identity == first.identity


def test_a_password_is_masked_everywhere_and_never_written(postgres_uri, s3_uri, tmp_path, capsys):
    secret = f":{os.environ['PGPASSWORD']}@"  # the password as a URI holds it (bucket names here hold the word itself)
    with_password = postgres_uri.replace("mlmagics@", f"mlmagics{secret}")
    ws = Workspace(metadata=with_password, artifacts=s3_uri, local=tmp_path / "local")
    Model.register(ws, tmp_path.joinpath("m.txt").write_text("w") and tmp_path / "m.txt", "m")
    shown = [repr(ws), ws.display, str(ws.get_details()), repr(Model(ws, "m")), json.dumps(Model(ws, "m").serialize())]
    assert all(secret not in text for text in shown)
    assert "mlmagics:***@" in repr(ws)
    written = Path(ws.write_config(tmp_path / "project")).read_text()
    assert secret not in written and json.loads(written)["metadata"] == postgres_uri
    (tmp_path / "bad" / ".mlmagics").mkdir(parents=True)
    (tmp_path / "bad" / ".mlmagics" / "config.json").write_text(json.dumps({"metadata": with_password, "artifacts": s3_uri}))
    with pytest.raises(UserError) as refused:
        Workspace.from_config(tmp_path / "bad")
    assert "holds a secret" in refused.value.message and secret not in refused.value.message
    assert secret not in capsys.readouterr().out


# -- what goes wrong: one line each, nothing half-written ---------------------------------------------------------
def test_an_unreachable_database_is_one_line(tmp_path, free_port):
    with pytest.raises(WorkspaceUnavailable) as caught:
        Workspace(metadata=f"postgresql://me:hunter2@127.0.0.1:{free_port()}/ws", artifacts=str(tmp_path / "a"))
    assert "cannot open the workspace database postgresql://me:***@127.0.0.1" in caught.value.message
    assert "hunter2" not in caught.value.message and "\n" not in caught.value.message


def test_wrong_database_credentials_are_one_line(postgres_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(WorkspaceUnavailable, match="password authentication failed") as caught:
        Workspace(metadata=postgres_uri, artifacts=str(tmp_path / "a"))
    assert "not-the-password" not in caught.value.message and "\n" not in caught.value.message


def test_a_schema_newer_than_this_client_is_refused(postgres_uri, tmp_path):
    from sqlalchemy import create_engine, text

    Workspace(metadata=postgres_uri, artifacts=str(tmp_path / "a"))
    url = postgres_uri.replace("postgresql://", "postgresql+psycopg://")
    with create_engine(url).begin() as db:  # what a newer mlmagics leaves behind
        db.execute(text("UPDATE alembic_version SET version_num='9999'"))
    from mlmagics.core.store import metadata

    metadata._at_head.discard(postgres_uri)
    with pytest.raises(SchemaTooNew, match="has schema 9999, newer than this mlmagics knows .* upgrade mlmagics"):
        Workspace(metadata=postgres_uri, artifacts=str(tmp_path / "a"))


def test_an_unreachable_or_missing_bucket_is_one_line_and_registers_nothing(postgres_uri, s3_uri, tmp_path, monkeypatch,
                                                                           free_port):  # fmt: skip
    source = tmp_path / "m.txt"
    source.write_text("weights")
    missing = s3_uri.split("//")[0] + "//no-such-bucket-here/ws"
    ws = Workspace(metadata=postgres_uri, artifacts=missing, local=tmp_path / "l1")
    with pytest.raises(WorkspaceUnavailable, match=r"cannot (read|upload to) the artifact store s3://no-such-bucket-here/ws"):
        Model.register(ws, source, "m")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    ws = Workspace(metadata=postgres_uri, artifacts=s3_uri, local=tmp_path / "l2")
    with pytest.raises(WorkspaceUnavailable, match=f"artifact store {s3_uri}") as caught:
        Model.register(ws, source, "m")
    assert "\n" not in caught.value.message
    assert Model.list(ws) == []


def test_a_store_without_write_permission_is_one_line(postgres_uri, azure_uri, tmp_path, monkeypatch):
    """Azurite checks a SAS token's permissions as Azure does: read and list, no write."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azure_uri.split("//")[1].split("/")[0]
    sas = generate_container_sas(
        "devstoreaccount1", container, account_key=stores.AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True), expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
    )  # fmt: skip
    read_only = f"BlobEndpoint={stores.AZURITE_BLOB_ENDPOINT};SharedAccessSignature={sas}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", read_only)
    source = tmp_path / "m.txt"
    source.write_text("weights")
    ws = Workspace(metadata=postgres_uri, artifacts=azure_uri, local=tmp_path / "l")
    with pytest.raises(WorkspaceUnavailable, match=f"cannot upload to the artifact store {azure_uri}") as caught:
        Model.register(ws, source, "m")
    assert "\n" not in caught.value.message and sas not in caught.value.message
    assert Model.list(ws) == []


# -- secrets: nothing that reaches a user shows one ---------------------------------------------------------------
def test_a_password_with_url_characters_is_masked_refused_in_a_config_and_never_shown(tmp_path, free_port, capsys):
    """SQLAlchemy reads a password up to the next '@', so it may hold '/', '?' or '#'; urllib's reading (the
    mask's, before) ended the user info at the first '/' and showed the rest."""
    password = "pa/ss?wo#rd"
    uri = f"postgresql://me:{password}@127.0.0.1:{free_port()}/ws"
    with pytest.raises(WorkspaceUnavailable) as caught:
        Workspace(metadata=uri, artifacts=str(tmp_path / "a"))
    assert "postgresql://me:***@127.0.0.1" in caught.value.message
    assert "pa/ss" not in caught.value.message and "wo#rd" not in caught.value.message
    config = tmp_path / "project" / ".mlmagics" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"metadata": uri, "artifacts": str(tmp_path / "a")}))
    assert cli.main(["workspace", "show", "--json", "--workspace", str(config)]) == 1
    shown = capsys.readouterr()
    assert "holds a secret" in shown.err and "pa/ss" not in shown.out + shown.err
    with pytest.raises(UserError, match="holds an '@': write it as %40") as refused:
        Workspace(metadata=f"postgresql://me:p@HIDDEN@127.0.0.1:{free_port()}/ws", artifacts=str(tmp_path / "a"))
    assert "HIDDEN" not in refused.value.message


def test_write_config_leaves_out_the_password_and_keeps_the_other_settings(postgres_uri, tmp_path):
    """sslmode=require dropped with the password would have the team connect without requiring TLS."""
    with_password = postgres_uri.replace("mlmagics@", "mlmagics:mlmagics-test@") + "?sslmode=prefer&application_name=ci"
    ws = Workspace(metadata=with_password, artifacts=str(tmp_path / "a"), local=tmp_path / "l")
    written = json.loads(Path(ws.write_config(tmp_path / "project")).read_text())
    assert written["metadata"] == postgres_uri + "?sslmode=prefer&application_name=ci"
    assert Workspace.from_config(tmp_path / "project").identity == ws.identity


def test_a_sas_token_in_an_azure_error_is_scrubbed(postgres_uri, azure_uri, tmp_path, monkeypatch):
    """aiohttp names the URL it could not use, and adlfs puts the SAS token in that URL: the error showed it."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azure_uri.split("//")[1].split("/")[0]
    sas = generate_container_sas(
        "devstoreaccount1", container, account_key=stores.AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True, write=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
    )  # fmt: skip
    signature = dict(pair.split("=", 1) for pair in sas.split("&"))["sig"]
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", f"BlobEndpoint=http://127.0.0.1:99999/devstoreaccount1;SharedAccessSignature={sas}")
    ws = Workspace(metadata=postgres_uri, artifacts=azure_uri, local=tmp_path / "l")
    with pytest.raises(WorkspaceUnavailable) as caught:
        Model.register(ws, write_file(tmp_path / "m.txt", "weights"), "m")
    assert f"cannot read the artifact store {azure_uri}" in caught.value.message
    assert signature not in caught.value.message and signature.replace("%2B", "+") not in caught.value.message
    assert "sig=***" in caught.value.message


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_a_value_the_database_refuses_is_one_line_that_never_shows_the_statements_values(machine):
    """PostgreSQL takes no NUL in a text; SQLAlchemy's error quoted every parameter (a service's keys, say)."""
    ws = machine("a")
    with pytest.raises(UserError, match="refused a value: PostgreSQL text fields cannot contain NUL") as caught:
        Model(ws, "m\0x")
    assert "\n" not in caught.value.message
    secret = "TOPSECRET-service-key"
    for statement, values in (
        ("INSERT INTO workspace (key, value) VALUES (:key, :value)", {"key": "a\0b", "value": secret}),
        ("INSERT INTO no_such_table VALUES (:value)", {"value": secret}),  # a bug: SQLAlchemy's own error, values hidden
    ):
        with pytest.raises(Exception) as failed:
            with ws.transaction() as tx:
                tx.execute(statement, values)
        texts = [str(failed.value), str(failed.value.__cause__), str(failed.value.__context__)]
        assert all(secret not in text for text in texts), texts


def test_a_failed_statement_rolls_back_its_transaction_on_every_database(machine):
    """On PostgreSQL a transaction is over after a failed statement (every later one failed with a raw
    InFailedSqlTransaction), on SQLite it went on and committed what came before: both now roll back, and say so."""
    ws = machine("a")
    with pytest.raises(TransactionAborted, match="rolled back"):
        with ws.transaction() as tx:
            tx.execute("INSERT INTO workspace (key, value) VALUES ('note', 'kept?')")
            with pytest.raises(DuplicateRow):
                tx.execute("INSERT INTO workspace (key, value) VALUES ('id', 'another id')")
            with pytest.raises(TransactionAborted, match="start a new one"):
                tx.execute("UPDATE workspace SET value='changed' WHERE key='note'")
    with pytest.raises(TransactionAborted):
        with ws.transaction() as tx:
            with contextlib.suppress(DuplicateRow):
                tx.execute("INSERT INTO workspace (key, value) VALUES ('id', 'another id')")
    assert ws.db.value("note") is None


def test_a_malformed_or_overlong_uri_or_folder_is_one_line(tmp_path):
    for metadata, artifact_store, said in (
        ("postgresql://me:hunter22@[::1/ws", str(tmp_path / "a"), "is not a database URI"),
        ("me:hunter22@db.example/ws", str(tmp_path / "a"), "must be a database URI"),  # the scheme forgotten
        (f"sqlite:///{tmp_path / 'ws.db'}", "s3://", "names no bucket or container"),
        (f"sqlite:///{tmp_path / 'ws.db'}", "s3:///prefix", "names no bucket or container"),
        (f"sqlite:///{tmp_path / 'ws.db'}", str(tmp_path / ("y" * 300)), "as a workspace folder: File name too long"),
        (f"sqlite:///{tmp_path / 'ws.db'}", "x" * 4097, "at most 4096 characters"),
    ):
        with pytest.raises(UserError) as caught:
            Workspace(metadata=metadata, artifacts=artifact_store, local=tmp_path / "l")
        assert said in caught.value.message and "\n" not in caught.value.message and "hunter22" not in caught.value.message
    with pytest.raises(UserError, match="as a workspace folder: File name too long"):
        Workspace(tmp_path / ("x" * 300))


def test_a_config_file_with_a_name_that_is_not_a_string_is_refused(tmp_path):
    config = tmp_path / ".mlmagics" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"metadata": f"sqlite:///{tmp_path / 'ws.db'}", "artifacts": "a", "workspace_name": {"x": 1}}))
    with pytest.raises(UserError, match="'workspace_name' must be a name"):
        Workspace.from_config(tmp_path)


# -- across processes and threads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stores_of", ["postgresql+azure"], indirect=True)
def test_equal_content_registered_at_once_on_azure_blob_is_stored(machine, tmp_path, monkeypatch):
    """Two registrations of equal content upload the same blob at once; Azure drops the uncommitted blocks of
    the one that commits second (InvalidBlockList), which failed it. Here the other commits in between."""
    from azure.storage.blob import BlobBlock
    from azure.storage.blob.aio import BlobClient

    data = b"equal content, registered twice at once"
    commit, raced = BlobClient.commit_block_list, []

    async def another_commits_first(self, block_list, **kwargs):
        if not raced and "/chunks/" in self.blob_name:
            raced.append(self.blob_name)
            other = uuid.uuid4().hex
            await self.stage_block(block_id=other, data=data, length=len(data))
            await commit(self, [BlobBlock(other)], **kwargs)
        return await commit(self, block_list, **kwargs)

    monkeypatch.setattr(BlobClient, "commit_block_list", another_commits_first)
    model = Model.register(machine("a"), write_file(tmp_path / "m.bin", data.decode()), "m")
    assert raced and Model(machine("b"), "m").path.read_bytes() == data and model.version == 1


@pytest.mark.parametrize("stores_of", COMBINATIONS, indirect=True)
def test_a_delete_and_a_register_of_the_same_content_interleaved(machine, stores_of, tmp_path, monkeypatch):
    """b registers the content a is deleting, between a's commit and a's removal of the objects: the objects stay
    (the removal sees b's row under the lock), and so does a's cached copy (a local service may link to it)."""
    a, b = machine("a"), machine("b")
    source = write_file(tmp_path / "m.bin", "contended content")
    first = Model.register(a, source, "m")
    store_class = type(a.artifacts)
    unstore = store_class.unstore_if_unused

    def with_a_register_in_between(self, tx, digest):
        after_commit = unstore(self, tx, digest)

        def then():
            Model.register(b, source, "again")
            if after_commit is not None:
                after_commit()

        return then

    with monkeypatch.context() as patched:
        patched.setattr(store_class, "unstore_if_unused", with_a_register_in_between)
        Model(a, id=first.id).delete()
    assert Model(machine("c"), "again").path.read_text() == "contended content"
    if isinstance(a.artifacts, ObjectStore):
        assert a.artifacts.cache.has(first.digest), "a's copy was evicted though the content is used again"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_sweep_during_a_registration_in_flight_does_not_lose_it(machine, stores_of, tmp_path, monkeypatch):
    """A sweep (older_than_s=0) removes the objects a registration uploaded before it took the lock: under the
    lock, the registration sees them gone and uploads them again before its row is committed."""
    swept: list[list[str]] = []
    upload = ObjectStore._upload

    def upload_then_sweep(self, *args):
        upload(self, *args)
        if not swept:
            swept.append(machine("c").sweep_artifacts(older_than_s=0))

    monkeypatch.setattr(ObjectStore, "_upload", upload_then_sweep)
    model = Model.register(machine("a"), write_file(tmp_path / "m.bin", "in flight"), "m")
    assert swept == [[model.digest]], "the sweep removed the objects of the registration in flight"
    assert Model(machine("d"), "m").path.read_text() == "in flight"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_workspace_opened_before_a_fork_works_in_the_child(machine, tmp_path):
    """s3fs and adlfs refuse to run on their parent's event loop ('This class is not fork-safe')."""
    a = machine("a")
    Model.register(machine("b"), write_file(tmp_path / "m.bin", "from b"), "m")  # not in a's cache: a fetches it
    parents = a.artifacts.fs
    pid = os.fork()
    if pid == 0:  # the child: report by exit code only
        code = 3
        try:
            fetched = Model(a, "m").path.read_text() == "from b"
            own = a.artifacts.fs is not parents and machine("c").artifacts.fs is a.artifacts.fs  # shared in the child too
            code = 0 if fetched and own and Model.register(a, write_file(tmp_path / "n.bin", "from a"), "n").version == 1 else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Model(a, "n").path.read_text() == "from a"


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_two_threads_fetching_one_model_into_one_cache_both_get_it(machine, tmp_path, monkeypatch):
    """Both download, both place: the second rename met the first's folder (ENOTEMPTY) and failed its fetch."""
    Model.register(machine("a"), write_file(tmp_path / "m.bin", "fetched twice"), "m")
    b = machine("b")
    both_checked = threading.Barrier(2, timeout=60)
    rename = os.rename

    def in_step(source, target):
        if Path(target).parent.name == "sha256" and ".staging" in str(source):
            both_checked.wait()  # both saw no copy in the cache; now both move theirs in
        rename(source, target)

    monkeypatch.setattr(artifacts.os, "rename", in_step)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(_read_or_error(b))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["fetched twice", "fetched twice"]


def _read_or_error(ws: Workspace) -> str:
    try:
        return Model(ws, "m").path.read_text()
    except Exception as e:
        return repr(e)


def test_a_registration_in_flight_on_another_host_is_not_swept_from_a_shared_folder(tmp_path, monkeypatch):
    """Staging entries were named by pid alone: a host sharing the artifact folder found that pid dead (it is
    another host's) and removed the copy of a registration in flight."""
    shared = dict(metadata=f"sqlite:///{tmp_path / 'db' / 'ws.db'}", artifacts=str(tmp_path / "shared"))
    here = Workspace(**shared, local=tmp_path / "host-b")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process of this host has: as another host's registration looks from here
    with monkeypatch.context() as host_a:
        host_a.setattr(artifacts.socket, "gethostname", lambda: "host-a")
        host_a.setattr(artifacts.os, "getpid", lambda: gone.pid)
        staging = here.artifacts.staged(write_file(tmp_path / "m.bin", "in flight on host-a"))
        entry, _, _ = staging.__enter__()
    try:
        Workspace(**shared, local=tmp_path / "host-c")  # opening a workspace sweeps what dead processes left
        assert (entry / "content" / "m.bin").read_text() == "in flight on host-a"
        old = time.time() - artifacts.FOREIGN_ENTRY_S - 60
        for path in (entry, *entry.iterdir()):
            os.utime(path, (old, old), follow_symlinks=False)
        Workspace(**shared, local=tmp_path / "host-d")
        assert not entry.exists(), "left by host-a a day ago: swept"
    finally:
        staging.__exit__(None, None, None)


# -- what a shared store or database holds is untrusted input --------------------------------------------------------
def _hostile_manifest(stores_of, digest: str, manifest: object, objects: dict[str, bytes] | None = None):
    fs, root = fsspec.core.url_to_fs(stores_of[1], skip_instance_cache=True)
    root = root.rstrip("/")
    if isinstance(manifest, dict):  # what mlmagics writes, with the hostile parts
        manifest = {"digest": digest, "bytes": sum(manifest.get("files", {}).values()), **manifest}
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    fs.pipe_file(f"{root}/manifests/{digest}.json", raw)
    for relative, data in (objects or {}).items():
        fs.pipe_file(f"{root}/sha256/{digest}/{relative}", data)


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
def test_a_manifest_naming_paths_outside_the_artifact_writes_nothing_outside(machine, stores_of, tmp_path):
    """The download joined the manifest's paths to its staging folder: '../' or an absolute path wrote anywhere,
    and the digest (of what is inside the folder) still matched."""
    model = Model.register(machine("a"), write_file(tmp_path / "m.bin", "the weights"), "m")
    escapes = {"../../../../../escaped/x.txt": b"evil", str(tmp_path / "absolute" / "x.txt"): b"evil"}
    for path, data in escapes.items():
        _hostile_manifest(stores_of, model.digest, {"files": {"m.bin": 11, path: len(data)}}, {path: data})
        with pytest.raises(UserError, match="is malformed"):
            _ = Model(machine("b"), "m").path
    assert not (tmp_path / "machines" / "escaped").exists() and not (tmp_path / "absolute").exists()


@pytest.mark.parametrize("stores_of", ["postgresql+s3"], indirect=True)
@pytest.mark.parametrize("hostile", ["not JSON", "too large", "too many files", "a part larger than said", "__pycache__",
                                     "a file as a folder", "more than the disk", "too deep", "a chunk that is no digest",
                                     "chunks short of a file", "a chunk of two sizes"])  # fmt: skip
def test_a_hostile_manifest_is_refused_in_one_line_before_it_costs_memory_or_disk(machine, stores_of, tmp_path, monkeypatch,
                                                                                 hostile):  # fmt: skip
    write_file(tmp_path / "model" / "pkg" / "score.py", "print('the real one')")
    model = Model.register(machine("a"), tmp_path / "model" / "pkg", "m")
    real = {"pkg/score.py": 21}
    manifest: object = {"files": real}
    objects: dict[str, bytes] = {}
    said = "is malformed"
    if hostile == "not JSON":
        manifest = b"\x00 not json"
    elif hostile == "too large":
        monkeypatch.setattr(artifacts, "MAX_MANIFEST_BYTES", 1024)
        manifest = {"files": real, "padding": "x" * 4096}
    elif hostile == "too many files":
        monkeypatch.setattr(artifacts, "MAX_COPIED_ENTRIES", 10)
        manifest = {"files": {**real, **{f"pkg/f{i}": 0 for i in range(20)}}}
    elif hostile == "a part larger than said":
        chunks = {"pkg/score.py": [_chunk("print('the real one')").removeprefix("chunks/")]}
        manifest = {"files": {"pkg/score.py": 3}, "chunk_bytes": 1 << 20, "chunks": chunks}
        said = "larger than its manifest says"
    elif hostile == "a chunk that is no digest":
        manifest = {"files": real, "chunk_bytes": 1 << 20, "chunks": {"pkg/score.py": ["../../elsewhere"]}}
    elif hostile == "chunks short of a file":
        manifest = {"files": {"pkg/score.py": 3 << 20}, "chunk_bytes": 1 << 20, "chunks": {"pkg/score.py": ["0" * 64]}}
    elif hostile == "a chunk of two sizes":
        chunks = {"pkg/a": ["0" * 64], "pkg/b": ["0" * 64]}
        manifest = {"files": {"pkg/a": 1, "pkg/b": 2}, "chunk_bytes": 1 << 20, "chunks": chunks}
    elif hostile == "__pycache__":  # not covered by the digest, and Python runs an unchecked-hash .pyc without its source
        manifest = {"files": {**real, "pkg/__pycache__/score.cpython-311.pyc": 4}}
        objects = {"pkg/__pycache__/score.cpython-311.pyc": b"evil"}
    elif hostile == "a file as a folder":
        manifest = {"files": {**real, "pkg/score.py/x": 1}}
    elif hostile == "more than the disk":
        manifest, said = {"files": {"pkg/score.py": 1 << 60}}, "MiB are free"
    elif hostile == "too deep":  # fetching and checking recurse over folders: at ~1000 levels a RecursionError
        deep = "pkg/" + "d/" * 200 + "x"
        manifest, objects = {"files": {**real, deep: 1}}, {deep: b"x"}
    _hostile_manifest(stores_of, model.digest, manifest, objects)
    with pytest.raises(UserError, match=said) as caught:
        _ = Model(machine("b"), "m").path
    assert "\n" not in caught.value.message
    if hostile == "more than the disk":
        assert isinstance(caught.value, StorageFullError)
    assert not list((tmp_path / "machines" / "b" / "artifacts" / "sha256").iterdir()), "nothing unverified is kept"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_malformed_manifest_is_written_again_by_the_next_registration_of_its_content(machine, stores_of, tmp_path):
    source = write_file(tmp_path / "m.bin", "the weights")
    model = Model.register(machine("a"), source, "m")
    _hostile_manifest(stores_of, model.digest, b"{ truncated")
    assert Model.register(machine("b"), source, "m").version == 2
    assert Model(machine("c"), "m", version=1).path.read_text() == "the weights"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_a_model_folder_with_an_empty_folder_is_used_on_another_machine(machine, tmp_path):
    """The digest covers folders, empty ones too; the manifest listed only files, so the empty folder did not come
    back and every other machine refused the model ('does not match its digest')."""
    write_file(tmp_path / "model" / "weights.bin", "w")
    (tmp_path / "model" / "checkpoints" / "empty").mkdir(parents=True)
    (tmp_path / "hollow" / "only-folders").mkdir(parents=True)
    Model.register(machine("a"), tmp_path / "model", "m")
    Model.register(machine("a"), tmp_path / "hollow", "hollow")
    fetched = Model(machine("b"), "m").path
    assert (fetched / "checkpoints" / "empty").is_dir() and (fetched / "weights.bin").read_text() == "w"
    assert [p.name for p in Model(machine("b"), "hollow").path.iterdir()] == ["only-folders"]


def test_an_artifact_path_or_digest_from_the_database_is_checked_before_it_names_a_file(machine, stores_of, tmp_path):
    """A row's artifact path named any file of the machine reading it; a row's digest, a folder to delete."""
    a = machine("a")
    model = Model.register(a, write_file(tmp_path / "m.bin", "w"), "m")
    victims = [tmp_path / "shared" / "victim", tmp_path / "machines" / "a" / "victim"]
    for victim in victims:
        write_file(victim / "keep.txt", "keep")
    with a.transaction() as tx:
        tx.execute("UPDATE models SET artifact=:artifact", {"artifact": f"sha256/{model.digest}/../../../../victim/keep.txt"})
    with pytest.raises(UserError, match="is not an artifact path"):
        _ = Model(machine("b"), "m").path
    with a.transaction() as tx:
        tx.execute("UPDATE models SET digest='../../victim'")
    with pytest.raises(UserError, match="is not an artifact digest"):
        Model(a, "m").delete()
    assert all((victim / "keep.txt").read_text() == "keep" for victim in victims)
    assert [m.id for m in Model.list(a)] == ["m:1"], "the refused delete is rolled back"
