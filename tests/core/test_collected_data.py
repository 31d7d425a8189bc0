"""Collected model data belongs to the workspace: it outlives delete() unless asked for, it takes at most
its cap of disk (oldest files go first, counted in /metrics), and it is private to its user."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmagics.core import LocalWebservice, Recorder, Webservice, Workspace
from mlmagics.serving import datacollection


def collected(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_the_collector_stays_within_its_cap_removing_the_oldest_first(tmp_path, serve, app_with, collecting_script):
    app = app_with(tmp_path, collecting_script)
    cap, file_bytes = 6000, 700
    server = serve(
        app,
        config={"collect_model_data": True},
        workers=2,
        env={"MLMAGICS_DATA_COLLECTION_FILE_BYTES": str(file_bytes), "MLMAGICS_DATA_COLLECTION_MAX_BYTES": str(cap)},
    )
    ids = [f"r{i:03d}" for i in range(150)]  # ~300 bytes a record, two records a request: several caps' worth
    for request_id in ids:
        assert server.post(json_body={"data": [[1, 2]]}, headers={"x-request-id": request_id}).status_code == 200
    root = app / "model-data"
    files = collected(root)
    total = sum(f.stat().st_size for f in files)
    open_files = 2 * 2  # a file per worker and designation is still being written
    assert total <= cap + open_files * (file_bytes + 400), f"{total} bytes kept for a cap of {cap}"
    lines = [line for f in files for line in f.read_text().splitlines(keepends=True)]
    kept = {json.loads(line)["correlation_id"] for line in lines}
    assert ids[-1] in kept and ids[0] not in kept, "the newest records stay, the oldest went"
    sizes = {json.loads(line)["designation"]: len(line) for line in lines}  # each kind of record has one size here
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    assert {stat.S_IMODE(d.stat().st_mode) for d in root.rglob("*") if d.is_dir()} == {0o700}
    time.sleep(1.2)  # each worker publishes its counters once a second
    text = server.get("/metrics").text
    files_removed = metric(text, "mlmagics_collected_files_removed_total")
    bytes_removed = metric(text, "mlmagics_collected_bytes_removed_total")
    assert files_removed >= 1 and bytes_removed >= files_removed * 200
    assert total + bytes_removed == 150 * (sizes["inputs"] + sizes["predictions"]), "each removal counted once"


def test_the_collection_dir_is_summed_on_rotation_and_new_files_only(tmp_path, monkeypatch):
    """Summing the tree is the expensive part: once per rotated file, never per record."""
    monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", "true")
    monkeypatch.setenv("MLMAGICS_DATA_COLLECTION_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLMAGICS_DATA_COLLECTION_FILE_BYTES", "2000")
    collector = datacollection.ModelDataCollector("m", designation="inputs")
    calls, walk = [], datacollection._collected_files
    monkeypatch.setattr(datacollection, "_collected_files", lambda root: calls.append(root) or walk(root))  # counts, then walks
    for i in range(200):
        collector.collect({"i": i, "pad": "x" * 50})
    rotated = len([f for f in collected(tmp_path / "data") if re.search(r"\.\d+\.jsonl$", f.name)])
    assert rotated >= 5 and len(calls) == rotated + 1, "one walk per rotated file, and one for the first record"


def test_a_full_disk_drops_records_not_requests(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", "true")
    monkeypatch.setenv("MLMAGICS_DATA_COLLECTION_DIR", "/proc/mlmagics-cannot-write-here")
    collector = datacollection.ModelDataCollector("m")
    assert collector.collect([1, 2], user_correlation_id="c1") == "c1"


# -- the local target ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def collecting_service(echo_image, collecting_script):
    """`collecting_service(ws, folder, name)`: a local service of the collecting script that has answered three requests."""

    def deploy(ws: Workspace, folder: Path, name: str) -> Webservice:
        image = echo_image(ws, folder, name="collecting", script=collecting_script)
        config = LocalWebservice.deploy_configuration(collect_model_data=True)
        service = Webservice.deploy_from_image(ws, name, image, config)
        service.wait_for_deployment()
        for i in range(3):
            service.run({"data": [[i, i + 1]]})
        return service

    return deploy


def test_delete_keeps_what_a_service_collected_and_says_where(ws, tmp_path, collecting_service):
    service = collecting_service(ws, tmp_path / "app", "keeper")
    where = ws.path / "collected" / "keeper"
    assert len(collected(where)) == 2 and not (service.folder / "model-data").exists()
    recorder = Recorder()
    service.delete(progress=recorder)
    assert not service.folder.exists() and service.collected_data_kept == str(where)
    assert recorder.lines == [f"The data keeper collected stays in {where} (delete(delete_collected_data=True) removes it)"]
    records = [json.loads(line) for f in collected(where) for line in f.read_text().splitlines()]
    assert sorted(r["data"][0][0] for r in records if r["designation"] == "inputs") == [0, 1, 2]
    again = collecting_service(ws, tmp_path / "app2", "keeper")  # the same name adds to it
    assert len([line for f in collected(where) for line in f.read_text().splitlines()]) == 12
    again.delete(delete_collected_data=True)
    assert not where.exists() and again.collected_data_kept is None
    assert again.deleted_summary() == "Deleted service keeper and the data it collected"


def test_a_service_that_collected_nothing_says_nothing_about_it(ws, tmp_path, echo_image):
    image = echo_image(ws, tmp_path / "app")
    service = Webservice.deploy_from_image(ws, "plain", image, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    service.delete()
    assert service.collected_data_kept is None and service.deleted_summary() == "Deleted service plain"


def test_data_an_earlier_version_collected_in_the_services_folder_is_moved_out_before_delete(ws, tmp_path, collecting_service):
    service = collecting_service(ws, tmp_path / "app", "legacy")
    old = service.folder / "model-data" / "best_model" / "inputs" / "2020" / "01" / "01"
    old.mkdir(parents=True)
    (old / "data-1.jsonl").write_text('{"old": true}\n')
    service.delete()
    moved = ws.path / "collected" / "legacy" / "best_model" / "inputs" / "2020" / "01" / "01" / "data-1.jsonl"
    assert moved.read_text() == '{"old": true}\n'


def test_the_cli_and_the_magic_say_where_the_data_stays_and_remove_it_on_request(ws, tmp_path, collecting_service, magic_shell):
    env = {**os.environ, "MLMAGICS_HOME": str(ws.path)}
    collecting_service(ws, tmp_path / "app", "cli-kept")

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mlmagics", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = ws.path / "collected" / "cli-kept"
    assert cli("service", "delete", "cli-kept").splitlines() == [
        "Deleted service cli-kept",
        f"The data cli-kept collected stays in {where} (--delete-collected-data removes it)",
    ]
    collecting_service(ws, tmp_path / "app2", "cli-kept")
    answer = json.loads(cli("service", "delete", "cli-kept", "--delete-collected-data", "--json"))
    assert answer == {"deleted": "cli-kept", "collectedDataKept": None} and not where.exists()

    from IPython.core.error import UsageError

    with magic_shell(ws.path, progress=None) as shell:
        collecting_service(ws, tmp_path / "app3", "magic-kept")
        message = repr(shell.run_line_magic("delete", "service magic-kept"))
        assert message.endswith(f"stays in {ws.path / 'collected' / 'magic-kept'} (--delete-collected-data removes it)")
        with pytest.raises(UsageError, match="--delete-collected-data is for a service"):
            shell.run_line_magic("delete", "image collecting:1 --delete-collected-data")
