"""The Docker target's containers are locked down, checked on real containers of a real engine.

What `docker inspect` says (read-only root, a tmpfs /tmp, a pids limit, the port holder as the image's
non-root user) and what it means for a score.py: run() may write to /tmp and to its working folder, not
elsewhere; /tmp ends in "No space left on device", not in the container killed; a fork bomb stops at
the pids limit and the service answers on; the hand-over socket only the service's user may use.
Collected model data belongs to the workspace: delete() keeps it and says where it is.
"""

from __future__ import annotations

import json
import time

import pytest

from mlmagics.core import AciWebservice, ContainerImage, Image, Model, UserError, Webservice
from mlmagics.core.targets import container as layout
from mlmagics.core.targets.docker import DockerWebservice, build
from mlmagics.core.targets.docker.service import PIDS_LIMIT

LABEL = "org.mlmagics"

# run() does what the request asks, inside the container, and says what happened.
PROBING = """
import json, os, signal, tempfile, time
from azureml.monitoring import ModelDataCollector

def init():
    global inputs
    inputs = ModelDataCollector("tiny", designation="inputs")

def run(raw_data):
    request = json.loads(raw_data)
    if "write" in request:
        try:
            with open(request["write"], "w") as f:
                f.write("x")
            return {"wrote": os.path.realpath(request["write"])}
        except OSError as e:
            return {"error": e.strerror}
    if "fill" in request:  # write 1 MiB at a time until the file system says no
        written = 0
        try:
            with open(request["fill"], "wb") as f:
                while True:
                    f.write(b"x" * 1024 * 1024)
                    f.flush()
                    written += 1024 * 1024
        except OSError as e:
            return {"written": written, "error": e.strerror}
        finally:
            os.remove(request["fill"])
    if "fork" in request:  # a fork bomb, tamed so that the test can clean up: children sleep until killed
        children, error = [], None
        while len(children) < request["fork"]:
            try:
                pid = os.fork()
            except OSError as e:
                error = e.strerror
                break
            if pid == 0:
                try:
                    os.execv("/bin/sleep", ["sleep", "60"])  # a small process, so that memory is not the limit hit
                finally:
                    os._exit(1)
            children.append(pid)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
        return {"forked": len(children), "error": error}
    if "collect" in request:
        inputs.collect(request["collect"])
        return {"collected": True}
    return {"home": os.environ.get("HOME"), "tmp": tempfile.gettempdir(), "cwd": os.getcwd(), "uid": os.getuid()}
"""


@pytest.fixture(scope="module")
def probing(docker_ws, tmp_path_factory, echo_image):
    image = echo_image(docker_ws, tmp_path_factory.mktemp("probing"), name="probing", script=PROBING)
    DockerWebservice.build_image(image)
    return image


@pytest.fixture(scope="module")
def service(docker_ws, probing):
    config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1)
    deployed = Webservice.deploy_from_image(docker_ws, "locked", probing, config)
    deployed.wait_for_deployment()
    yield deployed
    deployed.delete()


def inside(container, command: str) -> str:
    """A shell command run in the container (as its own user); its output."""
    result = container.exec_run(["sh", "-c", command])
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def test_docker_inspect_shows_both_containers_locked_down(docker_client, service):
    server = service.container
    host = server.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["Tmpfs"] == {"/tmp": f"size={512 * 1024**2},mode=1777"}, "half of memory_gb"
    assert (host["CapDrop"], host["SecurityOpt"]) == (["ALL"], ["no-new-privileges"])
    assert server.attrs["Config"]["User"] == f"{layout.UID}:{layout.UID}"
    holder = docker_client.containers.get(service.target["holder"])
    held = holder.attrs["HostConfig"]
    assert holder.attrs["Config"]["User"] == f"{layout.UID}:{layout.UID}", "the port holder is not root"
    assert held["ReadonlyRootfs"] is True and 0 < held["PidsLimit"] < PIDS_LIMIT
    assert (held["CapDrop"], held["SecurityOpt"]) == (["ALL"], ["no-new-privileges"])
    run = docker_client.volumes.get(service.target["volume"]).attrs["Options"]
    assert run["type"] == "tmpfs" and f"uid={layout.UID}" in run["o"] and "mode=0700" in run["o"]


def test_only_the_services_user_may_reach_the_hand_over_socket(service):
    server = service.container
    # numeric owner and mode of the folder and of the socket, as the server sees them
    assert inside(server, "stat -c '%u %a' /run/mlmagics") == f"{layout.UID} 700"
    mode = inside(server, "stat -c '%u %a %F' /run/mlmagics/listener.sock")
    assert mode == f"{layout.UID} 600 socket", "not world-writable: only the service's user may ask for the port"


def test_the_container_health_check_and_the_target_read_the_servers_state(service):
    server = service.container
    health = server.exec_run(server.attrs["Config"]["Healthcheck"]["Test"][1:])
    assert health.exit_code == 0 and health.output.decode().strip() == "ready", health.output
    assert service.update_deployment_state() == "Healthy"


def test_run_writes_to_tmp_and_its_working_folder_and_nowhere_else(service):
    assert service.run({}) == {"home": "/tmp", "tmp": "/tmp", "cwd": layout.APP, "uid": layout.UID}
    assert service.run({"write": "/tmp/scratch.txt"}) == {"wrote": "/tmp/scratch.txt"}
    assert service.run({"write": "output.txt"}) == {"wrote": f"{layout.APP}/output.txt"}, "v1 scripts write next to them"
    for elsewhere in ("/written-to-root.txt", "/opt/mlmagics/models/tiny/1/overwritten.txt", "/etc/passwd"):
        assert service.run({"write": elsewhere}) == {"error": "Read-only file system"}, elsewhere
    assert service.run({"write": "azureml-models/tiny/1/overwritten.txt"}) == {"error": "Read-only file system"}, (
        "the models stay read-only: the app folder links to them"
    )


def test_a_full_tmp_is_no_space_left_and_the_service_answers_on(service):
    started = service.container.attrs["State"]["StartedAt"]
    filled = service.run({"fill": "/tmp/big.bin"})
    assert filled["error"] == "No space left on device"
    assert 500 * 1024**2 <= filled["written"] <= 512 * 1024**2, filled
    assert service.run({"write": "/tmp/after.txt"}) == {"wrote": "/tmp/after.txt"}, "the space came back"
    service.container.reload()
    assert service.container.attrs["State"]["StartedAt"] == started and not service.container.attrs["State"]["OOMKilled"]


def test_a_fork_bomb_in_run_stops_at_the_pids_limit_and_the_service_answers_on(service):
    started = time.monotonic()
    bomb = service.run({"fork": 5 * PIDS_LIMIT})
    print(f"fork bomb: {bomb['forked']} processes in {time.monotonic() - started:.1f} s")
    assert bomb["error"] == "Resource temporarily unavailable", bomb
    assert PIDS_LIMIT - 64 <= bomb["forked"] < PIDS_LIMIT, "the limit counts the server's own processes and threads too"
    assert service.run({})["uid"] == layout.UID, "and it serves on"


def test_collected_data_outlives_the_service_and_its_releases(docker_client, docker_ws, probing):
    config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=0.5, collect_model_data=True)
    first = Webservice.deploy_from_image(docker_ws, "collecting", probing, config)
    first.wait_for_deployment()
    assert first.run({"collect": [1, 2]}) == {"collected": True}
    first.update(cpu_cores=0.5)  # a new release writes to the same volume
    assert first.run({"collect": [3, 4]}) == {"collected": True}
    volume = f"{first._prefix}-data"
    first.delete()
    kept = first.collected_data_kept
    assert kept.startswith(f"the Docker volume {volume} ") and layout.DATA_DIR in kept
    assert first.deleted_summary().endswith("(delete(delete_collected_data=True) removes it)"), "delete() says where it is"
    mine = {"label": [f"{LABEL}.workspace={docker_ws.path}", f"{LABEL}.service=collecting"]}
    assert docker_client.containers.list(all=True, filters=mine) == []
    assert [v.name for v in docker_client.volumes.list(filters=mine)] == [volume], "delete() keeps the collected data only"
    records = _collected(docker_client, probing, volume)
    assert [r["data"] for r in records] == [[1, 2], [3, 4]] and {r["model"] for r in records} == {"tiny"}

    again = Webservice.deploy_from_image(docker_ws, "collecting", probing, config)  # the same name takes its data back
    again.wait_for_deployment()
    again.run({"collect": [5, 6]})
    assert [r["data"] for r in _collected(docker_client, probing, volume, again.container)] == [[1, 2], [3, 4], [5, 6]]
    again.delete(delete_collected_data=True)  # removing it takes the explicit flag
    assert again.collected_data_removed and again.collected_data_kept is None
    assert docker_client.volumes.list(filters=mine) == []


def _collected(client, image, volume: str, container=None) -> list[dict]:
    """The records in the data volume, read by a throw-away container (or the running service)."""
    command = f"cat $(find {layout.DATA_DIR} -name '*.jsonl' | sort)"
    if container is not None:
        text = inside(container, command)
    else:
        text = client.containers.run(image.build_info["id"], ["sh", "-c", command], remove=True,
                                     volumes={volume: {"bind": layout.DATA_DIR, "mode": "ro"}}).decode()  # fmt: skip
    return sorted((json.loads(line) for line in text.splitlines() if line), key=lambda r: r["time"] + str(r["data"]))


def test_an_image_built_for_another_layout_is_built_again(probing):
    """An image built by an earlier mlmagics (a Dockerfile of another layout) is rebuilt before it is deployed."""
    built = probing.build_info["id"]
    probing.set_build_info(recipe="an older layout")
    DockerWebservice.build_image(probing)
    assert probing.build_info["recipe"] == build.recipe_digest(probing, probing.build_info["base_image"])
    assert probing.build_info["id"] == built, "from the layer cache: the same recipe gives the same image"


def test_files_shipped_with_the_script_are_in_its_working_folder_and_writable(docker_ws, tmp_path, monkeypatch, write):
    """Each release's working folder is a copy of its image's app folder, files shipped with the script included."""
    write(tmp_path / "score.py", PROBING)
    write(tmp_path / "notes.txt", "shipped with the script\n")
    monkeypatch.chdir(tmp_path)
    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python", dependencies=["notes.txt"])
    image = Image.create(docker_ws, "shipped", [Model(docker_ws, "tiny")], config)
    service = Webservice.deploy_from_image(docker_ws, "shipped", image, DockerWebservice.deploy_configuration(cpu_cores=1))
    try:
        service.wait_for_deployment()
        assert inside(service.container, "cat notes.txt") == "shipped with the script"
        assert service.run({"write": "notes.txt"}) == {"wrote": f"{layout.APP}/notes.txt"}
        assert inside(service.container, "cat notes.txt") == "x"
    finally:
        service.delete()
        image.delete()


def test_a_service_deployed_before_the_lock_down_is_told_to_redeploy(docker_client, docker_ws, probing):
    """Its port holder ran as root, on a root-owned run volume: a locked-down server cannot join it."""
    service = Webservice.deploy_from_image(docker_ws, "older", probing, DockerWebservice.deploy_configuration(cpu_cores=1))
    service.wait_for_deployment()
    holder = docker_client.containers.get(service.target["holder"])
    port = service.target["port"]
    holder.remove(force=True)  # what an earlier mlmagics started: the same holder, as root
    old = docker_client.containers.run(holder.image.id, command=holder.attrs["Config"]["Cmd"], name=holder.name,
                                       labels=holder.labels, detach=True, ports={"5001/tcp": ("127.0.0.1", port)})  # fmt: skip
    service._save(target={**service.target, "holder": old.id})
    with pytest.raises(UserError, match=f"older was deployed by an earlier mlmagics.*redeploy it \\(port={port} keeps"):
        service.update(cpu_cores=0.5)
    service.delete()
