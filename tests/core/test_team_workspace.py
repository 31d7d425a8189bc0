"""A workspace a team shares: every combination of stores users will use (SQLite + a folder, PostgreSQL + S3,
PostgreSQL + Azure Blob), on real servers on 127.0.0.1 (.ci/services.sh). "Machines" here are Workspace objects
(or processes) with folders of their own on this machine, sharing nothing but the two stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import pytest

from mlmagics.core import ContainerImage, Image, Model, Workspace
from mlmagics.core.errors import ConflictError, UserError
from mlmagics.core.store.metadata import SchemaTooNew, WorkspaceUnavailable
from tests import stores

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
    stored = [p for p in _objects(stores_of[1]) if p.startswith("sha256/")]
    assert stored == [f"sha256/{first.digest}/m.bin"]


def test_the_last_delete_removes_the_artifact_and_not_before(machine, stores_of, tmp_path, write):
    a, b = machine("a"), machine("b")
    write(tmp_path / "m.bin", "bytes")
    first, second = Model.register(a, tmp_path / "m.bin", "m"), Model.register(a, tmp_path / "m.bin", "m")
    Model(b, id=first.id).delete()
    assert any(p.startswith("sha256/") for p in _objects(stores_of[1])), "still used by m:2"
    assert Model(b, id=second.id).path.read_text() == "bytes"
    Model(b, id=second.id).delete()
    assert not any(p.startswith(("sha256/", "manifests/")) for p in _objects(stores_of[1]))
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
    orphans = [p for p in _objects(artifacts) if p.startswith("sha256/")]
    assert len(orphans) == 1
    assert ws.sweep_artifacts(older_than_s=3600) == [], "too recent: may be a registration in flight"
    assert ws.sweep_artifacts(older_than_s=0) == [orphans[0].split("/")[1]]
    assert _objects(artifacts) == []
    assert Model.register(ws, source, "half").path.read_text() == "uploaded, never recorded"


@pytest.mark.parametrize("stores_of", ["postgresql+s3", "postgresql+azure"], indirect=True)
def test_an_artifact_changed_in_the_store_is_refused_at_download(machine, stores_of, tmp_path, write):
    model = Model.register(machine("a"), write(tmp_path / "m.bin", "the real weights"), "m")
    fs, root = fsspec.core.url_to_fs(stores_of[1], skip_instance_cache=True)
    fs.pipe_file(f"{root}/sha256/{model.digest}/m.bin", b"the evil weights")  # same size, other bytes
    with pytest.raises(UserError, match="does not match its digest"):
        _ = Model(machine("b"), "m").path
    assert not list((tmp_path / "machines" / "b" / "artifacts" / "sha256").iterdir()), "nothing unverified is kept"


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
