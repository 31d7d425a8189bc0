"""What the core must never lose or leak: artifacts under crashes, concurrency and a full disk;
model folders that link out, loop or block; names that are not names."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import mlmagics.core.images
import mlmagics.core.models
import mlmagics.core.store.artifacts
import mlmagics.core.store.metadata
import mlmagics.core.versioned
import mlmagics.core.workspace
from mlmagics.core import ContainerImage, Image, LocalWebservice, Model, UserError, Webservice, Workspace
from mlmagics.core.errors import StorageFullError
from mlmagics.core.store.artifacts import remove_tree
from mlmagics.serving.compat.azureml.core.model import InvalidModelName
from mlmagics.serving.compat.azureml.core.model import Model as ScoringModel

CORE_MODULES = (mlmagics.core.workspace, mlmagics.core.models, mlmagics.core.images, mlmagics.core.versioned,
                mlmagics.core.store.artifacts, mlmagics.core.store.metadata)  # fmt: skip
CORE_FILES = {m.__file__ for m in CORE_MODULES}


@pytest.fixture(scope="session")
def model_folder(write):
    """`model_folder(folder)`: a model folder of two files and a link between them."""

    def make(folder: Path) -> Path:
        write(folder / "weights.bin", "w" * 3000)
        write(folder / "sub" / "vocab.txt", "v")
        (folder / "latest.bin").symlink_to("weights.bin")  # a link inside the folder: followed
        return folder

    return make


# -- names and paths -----------------------------------------------------------------------------------------
def test_names_are_checked_as_whole_strings(ws, tmp_path, write):
    file = write(tmp_path / "m.pkl", "x")
    with pytest.raises(UserError, match="model name 'm\\\\n' is not valid"):
        Model.register(ws, file, "m\n")
    with pytest.raises(UserError, match="image name 'img\\\\n' is not valid"):
        Image.create(ws, "img\n", [], None)
    from mlmagics.core.services import validate_service_name

    with pytest.raises(UserError, match="service name 'svc-a\\\\n' is not valid"):
        validate_service_name("svc-a\n")
    assert Model.list(ws) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../etc/passwd", "..", ""])
def test_get_model_path_refuses_names_that_leave_the_model_folder(tmp_path, monkeypatch, name, write):
    models = tmp_path / "app" / "azureml-models"
    write(models / "m" / "1" / "m.pkl", "x")
    monkeypatch.chdir(tmp_path / "app")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(models))
    with pytest.raises(InvalidModelName, match="cannot be absolute or leave the model folder"):
        ScoringModel.get_model_path(name)
    with pytest.raises(UserError, match="is not valid"):
        Model.get_model_path(name, _workspace=Workspace(tmp_path / "ws"))
    assert ScoringModel.get_model_path("m") == str(models / "m" / "1" / "m.pkl"), "a plain name still works"


# -- model folders -----------------------------------------------------------------------------------------
def test_links_inside_a_model_folder_are_followed(ws, tmp_path, model_folder):
    model = Model.register(ws, model_folder(tmp_path / "bundle"), "bundle")
    copied = model.path / "latest.bin"
    assert not copied.is_symlink() and copied.read_text() == "w" * 3000


def test_a_link_out_of_a_model_folder_is_refused(ws, tmp_path, write, model_folder):
    folder = model_folder(tmp_path / "bundle")
    secret = write(tmp_path / "secret.txt", "not part of the model")
    (folder / "sub" / "leak.txt").symlink_to(secret)
    with pytest.raises(UserError, match=r"leak.txt links to .*secret.txt, outside .*bundle; copy the file in"):
        Model.register(ws, folder, "bundle")
    (folder / "sub" / "leak.txt").unlink()
    (folder / "up").symlink_to("..")  # a folder link out of it
    with pytest.raises(UserError, match=r"bundle/up links to .*, outside"):
        Model.register(ws, folder, "bundle")
    assert Model.list(ws) == [] and not any(_tree_files(ws.path / "artifacts"))


def test_link_loops_fifos_and_sockets_are_refused_at_once(ws, tmp_path, model_folder):
    folder = model_folder(tmp_path / "bundle")
    (folder / "sub" / "again").symlink_to("..")  # inside the folder, but a loop
    with pytest.raises(UserError, match=r"again is a link loop"):
        Model.register(ws, folder, "bundle")
    (folder / "sub" / "again").unlink()
    (folder / "a").symlink_to("b")
    (folder / "b").symlink_to("a")
    with pytest.raises(UserError, match=r"bundle/a is a link loop"):
        Model.register(ws, folder, "bundle")
    for link in ("a", "b"):
        (folder / link).unlink()
    os.mkfifo(folder / "stream.bin")  # nobody writes it: reading it would block forever
    with pytest.raises(UserError, match=r"stream.bin is a FIFO; only regular files and folders"):
        Model.register(ws, folder, "bundle")
    with pytest.raises(UserError, match=r"stream.bin is a FIFO"):
        Model.register(ws, folder / "stream.bin", "stream")
    (folder / "stream.bin").unlink()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(folder / "server.sock"))
        with pytest.raises(UserError, match=r"server.sock is a socket"):
            Model.register(ws, folder, "bundle")
    assert Model.list(ws) == [] and not any((ws.path / "artifacts" / ".staging").iterdir())


def test_a_model_folder_nested_too_deep_is_one_line_and_stores_nothing(ws, tmp_path):
    deep = tmp_path / "bundle"  # copying, hashing and chmod-ing recurse: at ~1000 levels a RecursionError's traceback
    deep.mkdir()
    for _ in range(200):  # past the bound, yet shallow enough for pytest to clean up
        deep = deep / "d"
        deep.mkdir()
    (deep / "weights.bin").write_bytes(b"w")
    with pytest.raises(UserError, match=r"folders nested more than 128 deep; flatten the model folder"):
        Model.register(ws, tmp_path / "bundle", "deep")
    assert Model.list(ws) == [] and not any((ws.path / "artifacts" / ".staging").iterdir())


def test_a_device_is_refused(ws, tmp_path, model_folder):
    folder = model_folder(tmp_path / "bundle")
    (folder / "zeros").symlink_to("/dev/zero")  # outside, and endless
    with pytest.raises(UserError, match=r"zeros links to /dev/zero, outside"):
        Model.register(ws, folder, "bundle")
    with pytest.raises(UserError, match=r"/dev/zero is a character device"):
        Model.register(ws, "/dev/zero", "zeros")


def test_an_image_snapshot_follows_the_same_rules(ws, tmp_path, monkeypatch, write, echo_script):
    app = tmp_path / "app"
    write(app / "score.py", echo_script.format(version="v1", model="tiny"))
    write(app / "lib" / "helpers.py", "X = 1\n")
    (app / "lib" / "same.py").symlink_to("helpers.py")
    secret = write(tmp_path / "secret.txt", "not part of the image")
    monkeypatch.chdir(app)
    model = Model.register(ws, write(tmp_path / "tiny.txt", "weights"), "tiny")
    config = ContainerImage.image_configuration(execution_script="score.py", dependencies=["lib"])
    image = Image.create(ws, "echo", [model], config)
    assert (image.app_dir / "lib" / "same.py").read_text() == "X = 1\n"
    (app / "lib" / "leak.txt").symlink_to(secret)
    with pytest.raises(UserError, match=r"leak.txt links to .*secret.txt, outside"):
        Image.create(ws, "echo", [model], config)
    (app / "lib" / "leak.txt").unlink()
    os.mkfifo(app / "lib" / "pipe")
    with pytest.raises(UserError, match=r"pipe is a FIFO"):
        Image.create(ws, "echo", [model], config)
    assert [i.id for i in Image.list(ws)] == ["echo:1"]
    assert not list((ws.path / "images").glob(".staging-*"))


# -- killed at every step ---------------------------------------------------------------------------------------
def _tree_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def run_killed_at(step: int | None, operation: Callable[[], object], after: str = "") -> list[tuple[str, int]]:
    """Run `operation` in a forked child that SIGKILLs itself when it reaches the `step`-th distinct
    line of the core's registry code (workspace, models, images), counted from the first call of a
    function named `after` if given; no hook in the code under test. With step=None the child runs
    to the end, and this returns the distinct lines it went through, in order."""
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: trace, run, report, leave without running the parent's clean-ups
        os.close(read)
        seen: dict[tuple[str, int], None] = {}
        counting = [not after]

        def line(frame, event, arg):
            counting[0] = counting[0] or frame.f_code.co_name == after
            if event == "line" and counting[0] and (frame.f_code.co_filename, frame.f_lineno) not in seen:
                seen[frame.f_code.co_filename, frame.f_lineno] = None
                if len(seen) == step:
                    os.kill(os.getpid(), signal.SIGKILL)
            return line

        sys.settrace(lambda frame, event, arg: line if frame.f_code.co_filename in CORE_FILES else None)
        try:
            operation()
        finally:
            sys.settrace(None)
            with os.fdopen(write_end, "w") as f:
                json.dump(list(seen), f)
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        report = f.read()
    if step is not None:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"step {step} was not reached"
        return []
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and report, "the operation failed without a kill"
    return [tuple(item) for item in json.loads(report)]


def assert_consistent(path: Path, source: Path | None = None) -> Workspace:
    """Open the workspace as the next process does, then: no leftovers, every row's artifact is there
    and whole, no artifact without a row, every image version's folder there and no folder without a row."""
    ws = Workspace(path)
    for leftovers in (ws.path / "artifacts" / ".staging", ws.path / "artifacts" / ".trash"):
        assert not any(leftovers.iterdir()), f"left in {leftovers}: {list(leftovers.iterdir())}"
    assert not list((ws.path / "images").glob(".staging-*"))
    models = Model.list(ws)
    assert len({m.id for m in models}) == len(models)
    for model in models:
        assert model.path.exists(), f"{model.id} lost its artifact"
        if source is not None and model.name == "m":
            assert sorted(p.read_bytes() for p in _tree_files(model.path)) == sorted(p.read_bytes() for p in _tree_files(source))
    stored = {p.name for p in (ws.path / "artifacts" / "sha256").iterdir()}
    assert stored == {m.digest for m in models}, "an artifact without a row, or a row without its artifact"
    recorded = {f"{i.name}:{i.version}" for i in Image.list(ws)}
    for folder in (ws.path / "images").glob("*/*"):
        if folder.parent.name.startswith("."):
            continue
        last = ws.query("SELECT last FROM counters WHERE kind='image' AND name=:name", {"name": folder.parent.name})
        # a version past the counter was never committed: the next create of that version clears it
        assert f"{folder.parent.name}:{folder.name}" in recorded or int(folder.name) > (last[0]["last"] if last else 0)
    return ws


def test_a_register_killed_at_any_step_leaves_the_next_one_working(ws, tmp_path, model_folder):
    source = model_folder(tmp_path / "bundle")
    steps = len(run_killed_at(None, lambda: Model.register(Workspace(ws.path), source, "m")))
    assert steps > 50, "the trace sees the registry's code"
    for step in range(1, steps + 1):
        for model in Model.list(ws, name="m"):  # the killed register is the only one to store this content
            model.delete()
        run_killed_at(step, lambda: Model.register(Workspace(ws.path), source, "m"))
        again = assert_consistent(ws.path, source)
        latest = Model.register(again, source, "m")
        assert latest.version == max(m.version for m in Model.list(again, name="m")), f"after a kill at step {step}"
    assert_consistent(ws.path, source)


@pytest.mark.parametrize("shared", [False, True], ids=["last-reference", "shared-content"])
def test_a_delete_killed_at_any_step_loses_no_artifact(ws, tmp_path, shared, model_folder):
    source = model_folder(tmp_path / "bundle")
    if shared:
        Model.register(ws, source, "keeper")  # the same content under another name: it must survive
    steps = None
    step = 0
    while steps is None or step < steps:
        victim = Model.register(ws, source, "m")
        if steps is None:
            steps = len(run_killed_at(None, lambda v=victim: Model(Workspace(ws.path), id=v.id).delete()))
            continue
        step += 1
        run_killed_at(step, lambda v=victim: Model(Workspace(ws.path), id=v.id).delete())
        again = assert_consistent(ws.path, source)
        ids = [m.id for m in Model.list(again)]
        if victim.id in ids:  # killed before its commit: the delete did not happen, and can be done now
            Model(again, id=victim.id).delete()
        assert_consistent(ws.path, source)
    assert steps > 10
    assert [m.id for m in Model.list(ws)] == (["keeper:1"] if shared else [])


def test_an_image_create_killed_at_any_step_leaves_the_next_one_working(ws, tmp_path, monkeypatch, write, echo_script):
    app = tmp_path / "app"
    write(app / "score.py", echo_script.format(version="v1", model="tiny"))
    monkeypatch.chdir(app)
    # Pinning the environment maps imports to distributions (0.25 s a time); nothing is installed
    # during the test, so one answer serves every create of the 100+ steps.
    monkeypatch.setattr(importlib.metadata, "packages_distributions", functools.cache(importlib.metadata.packages_distributions))
    model = Model.register(ws, write(tmp_path / "tiny.txt", "weights"), "tiny")
    config = ContainerImage.image_configuration(execution_script="score.py")

    def create() -> Image:
        return Image.create(Workspace(ws.path), "echo", [model], config)

    steps = len(run_killed_at(None, create, after="_staging_folder"))  # before it, nothing is written
    assert steps > 30
    for step in range(1, steps + 1):
        run_killed_at(step, create, after="_staging_folder")
        again = assert_consistent(ws.path)
        image = Image.create(again, "echo", [model], config)  # a leftover version folder must not block it
        assert (image.app_dir / "score.py").exists(), f"after a kill at step {step}"
        assert_consistent(ws.path)
    versions = [i.version for i in Image.list(ws, image_name="echo")]
    assert len(versions) == len(set(versions)) >= steps


def test_a_sweep_killed_at_any_step_leaves_the_next_one_working(tmp_path, model_folder):
    """The next process to open the workspace puts right what a killed register left; killed itself
    while doing so, the one after it still finds a working workspace."""
    source = model_folder(tmp_path / "bundle")
    state = tmp_path / "state"
    Workspace(state)

    def register() -> None:
        Model.register(Workspace(state), source, "m")

    # a register killed after placing its artifact, before its commit: an artifact without a row
    placed = _line_of(mlmagics.core.store.artifacts, "placed = digest if self.place(")
    lines = run_killed_at(None, lambda: Model.register(Workspace(tmp_path / "trial"), source, "m"))
    run_killed_at(lines.index(placed) + 1, register)
    assert any((state / "artifacts" / "sha256").iterdir()) and any((state / "artifacts" / ".staging").iterdir())
    shutil.copytree(state, tmp_path / "probe", symlinks=True)
    sweep = run_killed_at(None, lambda: Workspace(tmp_path / "probe"))
    assert len(sweep) > 20
    for step in range(1, len(sweep) + 1):
        trial = tmp_path / f"sweep-{step}"
        shutil.copytree(state, trial, symlinks=True)
        run_killed_at(step, lambda t=trial: Workspace(t))
        assert_consistent(trial, source)
        assert Model.register(Workspace(trial), source, "m").path.exists()
        remove_tree(trial)


def _line_of(module, text: str) -> tuple[str, int]:
    source = Path(module.__file__).read_text().splitlines()
    matches = [n for n, line in enumerate(source, 1) if text in line]
    assert len(matches) == 1, f"{text!r} is on one line of {module.__file__}"
    return module.__file__, matches[0]


CHURN = """
import sys
from mlmagics.core import Model, Workspace
ws = Workspace(sys.argv[1])
for i in range(int(sys.argv[3])):
    model = Model.register(ws, sys.argv[2], "m")
    assert model.path.exists(), f"{model.id} lost its artifact"
    model.delete()  # often the last row of this content: its artifact goes while other processes register it
"""


def test_concurrent_registers_and_deletes_of_one_content_lose_no_artifact(ws, tmp_path, model_folder):
    source = model_folder(tmp_path / "bundle")
    procs = [subprocess.Popen([sys.executable, "-c", CHURN, str(ws.path), str(source), "30"]) for _ in range(6)]
    assert [p.wait(180) for p in procs] == [0] * 6
    ws = assert_consistent(ws.path, source)
    assert Model.list(ws) == []
    assert Model.register(ws, source, "m").path.exists()


# -- a full disk --------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path, unavailable):
    """A 2 MB tmpfs: the workspace's disk, to be filled."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_during_registration_is_one_clear_line_and_nothing_half_written(small_disk, tmp_path, write):
    ws = Workspace(small_disk / "ws")
    big = write(tmp_path / "big.bin", "")
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(StorageFullError) as caught:
        Model.register(ws, big, "big")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"no space left on the device of {ws.path} to store the model big.bin")
    assert Model.list(ws) == []
    assert not any((ws.path / "artifacts" / ".staging").iterdir()) and not any((ws.path / "artifacts" / "sha256").iterdir())
    small = Model.register(ws, write(tmp_path / "small.bin", "s" * 1000), "small")
    assert small.id == "small:1" and small.path.read_text() == "s" * 1000
    assert_consistent(ws.path)


def test_a_full_disk_when_the_database_grows_is_one_clear_line(small_disk, tmp_path, write):
    ws = Workspace(small_disk / "ws")
    model = write(tmp_path / "m.bin", "m" * 100)
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk, then free just enough for the copy, not the database
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    os.truncate(filler, os.path.getsize(filler) - 2 * 4096)
    with pytest.raises(StorageFullError, match=r"^no space left .* to store the model m.bin \(database or disk is full\)$"):
        Model.register(ws, model, "m")
    filler.unlink()
    assert Model.list(ws) == [] and not any((ws.path / "artifacts" / "sha256").iterdir()), "no artifact without its row"
    assert Model.register(ws, model, "m").id == "m:1"
    assert_consistent(ws.path)


def test_a_full_disk_during_image_creation_leaves_nothing(small_disk, tmp_path, monkeypatch, write, echo_script):
    ws = Workspace(small_disk / "ws")
    app = tmp_path / "app"
    write(app / "score.py", echo_script.format(version="v1", model="tiny"))
    (app / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    monkeypatch.chdir(app)
    model = Model.register(ws, write(tmp_path / "tiny.txt", "weights"), "tiny")
    config = ContainerImage.image_configuration(execution_script="score.py", dependencies=["data.bin"])
    with pytest.raises(StorageFullError, match=r"^no space left on the device of .* to store image echo"):
        Image.create(ws, "echo", [model], config)
    assert Image.list(ws) == [] and not list((ws.path / "images").glob(".staging-*"))
    (app / "data.bin").unlink()
    assert Image.create(ws, "echo", [model], ContainerImage.image_configuration(execution_script="score.py")).id == "echo:1"


# -- services ---------------------------------------------------------------------------------------------------
def test_a_local_service_takes_update_after_update(ws, tmp_path, echo_image):
    """An update removes the release the server started in; the server must not depend on it (it did: the
    second reload failed on its vanished working directory and took the service down)."""
    service = Webservice.deploy_from_image(ws, "twice", echo_image(ws, tmp_path / "app"), LocalWebservice.deploy_configuration())
    try:
        service.wait_for_deployment()
        for version in ("v2", "v3", "v4"):
            image = echo_image(ws, tmp_path / version, version=version)
            service.update(image=image)
            assert service.run("{}")["version"] == version
    finally:
        service.delete()


def test_a_sweep_refuses_an_age_that_would_remove_registrations_in_flight(tmp_path):
    """sweep_artifacts' age keeps the objects of registrations still uploading: a negative, NaN or infinite age is a
    one-line refusal, not a sweep of everything or of nothing."""
    ws = Workspace(str(tmp_path / "ws"))
    for bad in (-1, float("nan"), float("inf"), "3600", True):
        with pytest.raises(UserError, match="older_than_s must be a finite number of seconds >= 0, got"):
            ws.sweep_artifacts(older_than_s=bad)
    assert ws.sweep_artifacts(older_than_s=0) == []
