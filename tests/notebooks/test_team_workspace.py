"""notebooks/08-team-workspace.ipynb: on its own (SQLite and a folder), and as the steps of a team's flow across
three "machines" sharing a PostgreSQL database and an S3 bucket (moto's server) and nothing else.

A machine is a host of its own on a private network the test makes (root only): a network namespace with its own
address, loopback and routes (`ip netns` + a veth into a bridge), a host name of its own (a UTS namespace), its own
HOME and working folder. Every byte between a machine and the stores crosses that network: the machines reach
PostgreSQL and S3 at the bridge's address, which is this host — the team's server, where the stores and the Docker
engine run. The engine is reached through its socket, as CI jobs reach a build server's engine; a service deployed to
it is published on the bridge's address, so the others reach it over the network too.

    host-a  a data scientist: runs the notebook with stage=register (model + image, into the shared stores)
    host-b  CI: runs the same notebook with stage=deploy target=docker, tests the service
    host-c  a colleague's JupyterLab: the panel's REST API (queried over the network) lists the service and tests it
    host-a  cleans up; host-b sees it gone
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests import stores
from tests.stores import POSTGRES_HOST, POSTGRES_PORT, S3_ENDPOINT

pytestmark = pytest.mark.stores
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "08-team-workspace.ipynb"
postgres_uri, s3_uri = stores.postgres_uri, stores.s3_uri


def test_08_team_workspace_on_its_own(tmp_path, run_notebook):
    summary, _ = run_notebook(NOTEBOOK, tmp_path, service_name="nb-team", timeout=600)
    assert summary["deployed"]["answer"] == [0, 2]
    assert summary["registered"]["by"]["host"] and summary["left"] == [0, 0, 0]
    assert json.loads((tmp_path / ".mlmagics" / "config.json").read_text())["metadata"].startswith("sqlite:///")


class Network:
    """A private network of this host's, made and removed by one test: a bridge holding the server's address (`server`,
    this host) and a network namespace per machine, plugged into the bridge by a veth pair.

    The stores listen on 127.0.0.1 alone; a DNAT rule hands their ports at the server's address to 127.0.0.1 (which
    `route_localnet` lets the bridge route), and PostgreSQL lets in the network's addresses (.ci/services.sh), so it
    sees each machine's own address. Names carry a random tag, and the /24 overlaps no address or route of this host.
    The stores must run on one host (they do: .ci/services.sh)."""

    STORE_PORTS = (POSTGRES_PORT, urllib.parse.urlsplit(S3_ENDPOINT).port)
    PREFIX = ipaddress.ip_network("10.231.0.0/16")  # what .ci/services.sh lets in to PostgreSQL

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"mlm{self.tag}"
        used = _networks_in_use()
        subnets = [n for n in self.PREFIX.subnets(new_prefix=24) if not any(n.overlaps(u) for u in used)]
        if not subnets:
            raise AssertionError(f"every /24 of {self.PREFIX} overlaps an address or a route of this host")
        self.subnet = subnets[secrets.randbelow(len(subnets))]
        self.server = str(self.subnet.network_address + 1)
        self.namespaces: list[str] = []
        ports = ",".join(map(str, self.STORE_PORTS))
        self.dnat = ["PREROUTING", "-i", self.bridge, "-d", self.server, "-p", "tcp", "-m", "multiport", "--dports", ports,
                     "-j", "DNAT", "--to-destination", POSTGRES_HOST]  # fmt: skip
        self.dnat_added = self.bridge_added = False

    def up(self) -> None:
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.bridge_added = True
        _sh("ip", "addr", "add", f"{self.server}/{self.subnet.prefixlen}", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        _sh("sysctl", "-qw", f"net.ipv4.conf.{self.bridge}.route_localnet=1")
        _sh("iptables", "-t", "nat", "-I", *self.dnat)
        self.dnat_added = True

    def host(self, name: str) -> tuple[str, str]:
        """A new machine on the network: (its namespace, its address)."""
        index = len(self.namespaces) + 1
        namespace, outside = f"{self.bridge}-{name}", f"{self.bridge}v{index}"
        address = str(self.subnet.network_address + 10 + index)
        _sh("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        _sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _sh("ip", "link", "set", outside, "master", self.bridge, "up")
        _sh("ip", "-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        for link in ("lo", "eth0"):
            _sh("ip", "-n", namespace, "link", "set", link, "up")
        _sh("ip", "-n", namespace, "route", "add", "default", "via", self.server)
        return namespace, address

    def down(self) -> None:
        """Everything up() and host() made, whatever failed before: the processes left in a namespace are killed.
        What cannot be removed is said on stderr (pytest shows it), not raised over the test's own failure."""
        for namespace in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _sh("ip", "netns", "del", namespace, check=False)  # its veth goes with it
        if self.dnat_added:
            _sh("iptables", "-t", "nat", "-D", *self.dnat, check=False)
        if self.bridge_added:
            _sh("ip", "link", "del", self.bridge, check=False)


def _sh(*argv: str, check: bool = True) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode and not check:
        print(f"cleaning up the test network: {' '.join(argv)}: {done.stderr.strip()}", file=sys.stderr)
    assert done.returncode == 0 or not check, f"{' '.join(argv)}: {done.stderr.strip()}"


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this host's addresses and routes (a default route is not one: it overlaps everything)."""
    used = []
    for argv in (["ip", "-4", "-o", "addr"], ["ip", "-4", "route", "show", "table", "all"]):
        for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines():
            for word in line.split():
                with contextlib.suppress(ValueError):
                    if "/" in word or word[:1].isdigit():
                        network = ipaddress.ip_network(word, strict=False)
                        if network.prefixlen:
                            used.append(network)
    return used


class Machine:
    """A host of its own: network namespace and address, name, HOME and working folder; the stores at the server's
    address on the network."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], network: Network) -> None:
        self.name = name
        self.namespace, self.address = network.host(name)
        self.work = folder / name / "work"
        self.home = folder / name / "home"
        self.work.mkdir(parents=True)
        self.home.mkdir(parents=True)
        s3 = urllib.parse.urlsplit(S3_ENDPOINT)._replace(netloc=f"{network.server}:{network.STORE_PORTS[1]}").geturl()
        self.env = {**env, "HOME": str(self.home), "AWS_ENDPOINT_URL": s3}
        # a proxy of the CI's would otherwise be asked for the private network's addresses
        self.env["NO_PROXY"] = self.env["no_proxy"] = ",".join(filter(None, [env.get("NO_PROXY", ""), str(network.subnet)]))
        self.env.pop("MLMAGICS_HOME", None)
        self.env.pop("MLMAGICS_WORKSPACE", None)

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c", f'hostname {self.name} && exec "$@"',
                "sh", *argv]  # fmt: skip

    def run(self, *argv: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*argv), cwd=self.work, env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-c", code, **env)

    def notebook(self, tmp_path: Path, **parameters: str) -> dict:
        out = tmp_path / f"08-{self.name}-{parameters.get('stage', 'all')}.ipynb"
        argv = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-k", "python3", "--no-progress-bar",
                "--cwd", str(self.work)]  # fmt: skip
        for key, value in parameters.items():
            argv += ["-p", key, value]
        done = self.run(*argv)
        assert done.returncode == 0, f"{self.name}: {done.stderr[-3000:]}"
        import nbformat

        executed = nbformat.read(out, as_version=4)
        cell = next(c for c in executed.cells if "summary" in c.metadata.get("tags", []))
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def team(tmp_path, postgres_uri, s3_uri, docker_engine):
    """(the three machines, the network, the metadata URI as the machines reach it, the artifacts URI)."""
    needs = ("ip", "iptables", "unshare", "sysctl")
    if os.geteuid() != 0 or not all(map(shutil.which, needs)):
        pytest.fail(f"machines of their own need root and {', '.join(needs)} (iproute2, iptables, util-linux, procps)",
                    pytrace=False)  # fmt: skip
    network = Network()
    try:
        network.up()
        env = {**os.environ, "MLMAGICS_BASE_IMAGE": docker_engine[1]}
        machines = {name: Machine(name, tmp_path, env, network) for name in ("host-a", "host-b", "host-c")}
        metadata = postgres_uri.replace(f"@{POSTGRES_HOST}:", f"@{network.server}:")
        yield machines, network, metadata, s3_uri
        cleanup = ("from mlmagics.core import Webservice, Workspace\n"
                   f"ws = Workspace(metadata={metadata!r}, artifacts={s3_uri!r})\n"
                   "[s.delete() for s in Webservice.list(ws)]")  # fmt: skip
        machines["host-b"].python(cleanup)  # what a failed test left on the engine
        machines["host-a"].python(cleanup)
    finally:
        network.down()


def _jupyter_server(machine: Machine, config: Path, port: int) -> tuple[subprocess.Popen, str]:
    token = secrets.token_hex(16)
    argv = machine.command(sys.executable, "-m", "jupyter_server", "--no-browser", f"--ip={machine.address}", f"--port={port}",
                           "--port-retries=0", "--allow-root", f"--IdentityProvider.token={token}",
                           f"--ServerApp.root_dir={machine.work}", f"--MlmagicsServer.workspace={config}")  # fmt: skip
    log = open(machine.work / "jupyter.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(argv, cwd=machine.work, env=machine.env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://{machine.address}:{port}/api/status?token={token}", timeout=2).ok:
                return process, token
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError((machine.work / "jupyter.log").read_text()[-3000:])


def test_a_team_shares_one_workspace_across_machines(team, tmp_path, free_port):
    machines, network, metadata, artifacts = team
    a, b, c = machines["host-a"], machines["host-b"], machines["host-c"]
    # what crosses the network is real: PostgreSQL sees the machine's own address
    asked = f"print(psycopg.connect({metadata!r}).execute('select inet_client_addr()').fetchone()[0])"
    seen_by_postgres = b.python(f"import psycopg\n{asked}")
    assert seen_by_postgres.stdout.strip() == b.address, seen_by_postgres.stderr[-2000:]

    # host-a: a data scientist registers and packages
    registered = a.notebook(tmp_path, metadata=metadata, artifacts=artifacts, stage="register", service_name="team-iris")
    assert registered["host"] == "host-a" and registered["registered"]["by"]["host"] == "host-a"

    # host-b: the CI job deploys what host-a registered to Docker and tests it
    b.env["MLMAGICS_CI_JOB"] = "ci job 42"
    ci = b.notebook(tmp_path, metadata=metadata, artifacts=artifacts, stage="deploy", target="docker",
                    service_host=network.server, service_name="team-iris")  # fmt: skip
    assert ci["host"] == "host-b" and ci["deployed"]["answer"] == [0, 2] and ci["deployed"]["runs_on"] == "Docker on host-b"
    listing = b.run(sys.executable, "-m", "mlmagics", "service", "list", "--json",
                    "--workspace", str(a.work / ".mlmagics" / "config.json"))  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    [service] = json.loads(listing.stdout)
    assert (service["name"], service["state"], service["computeType"]) == ("team-iris", "Healthy", "Docker")
    assert service["createdBy"]["host"] == "host-b" and service["createdBy"]["ci"] == "ci job 42"

    # host-c: a colleague's Jupyter server (the panel's API) sees it, and tests it
    config = c.work / ".mlmagics" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"metadata": metadata, "artifacts": artifacts}))
    port = free_port()
    server, token = _jupyter_server(c, config, port)
    try:
        api = f"http://{c.address}:{port}/mlmagics"
        headers = {"Authorization": f"token {token}"}
        seen = requests.get(f"{api}/deployments", headers=headers, timeout=60).json()
        assert seen["workspace"] == f"{metadata} + {artifacts}"
        assert [(m["id"], m["createdByText"].split(" ")[0]) for m in seen["models"]] == [("team-iris-model:1", "root@host-a")]
        assert [(s["name"], s["createdByText"]) for s in seen["services"]] == [("team-iris", "root@host-b (ci job 42)")]
        tested = requests.post(f"{api}/services/team-iris/test", headers=headers, timeout=60,
                               data=json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]]}))  # fmt: skip
        assert tested.status_code == 200 and tested.json()["answer"] == [0]

        # host-a: a local-target service runs on host-a only; the others are told so in one line
        preview = a.python(
            "from mlmagics.core import Image, LocalWebservice, Webservice, Workspace\n"
            "ws = Workspace.from_config()\n"
            "config = LocalWebservice.deploy_configuration()\n"
            "s = Webservice.deploy_from_image(ws, 'preview', Image(ws, id='team-iris:1'), config)\n"
            "s.wait_for_deployment()\nprint(s.run('{\"data\": [[6.7, 3.0, 5.2, 2.3]]}'))"
        )
        assert preview.returncode == 0 and preview.stdout.strip().endswith("[2]"), preview.stderr[-2000:]
        refused = b.run(sys.executable, "-m", "mlmagics", "service", "run", "preview", '{"data": [[1, 2, 3, 4]]}',
                        "--workspace", str(config))  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.strip() == "mlmagics: error: service preview runs on the local target of host-a; operate it there"
        panel = requests.get(f"{api}/services", headers=headers, timeout=60).json()
        assert {s["name"]: s["runsOn"].split(" (")[0] for s in panel} == {"preview": "local target of host-a",
                                                                          "team-iris": "Docker on host-b"}  # fmt: skip

        # host-a: cleans up everything; host-b and host-c see it gone
        deleted = a.python("from mlmagics.core import Webservice, Workspace\n"
                           "Webservice(Workspace.from_config(), 'preview').delete()")  # fmt: skip
        assert deleted.returncode == 0, deleted.stderr[-2000:]
        cleaned = a.notebook(tmp_path, metadata=metadata, artifacts=artifacts, stage="cleanup", service_name="team-iris")
        assert cleaned["left"] == [0, 0, 0]
        after = b.run(sys.executable, "-m", "mlmagics", "service", "list", "--json", "--workspace", str(config))
        assert json.loads(after.stdout) == []
        assert requests.get(f"{api}/deployments", headers=headers, timeout=60).json()["models"] == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    from tests.core.test_team_workspace import _objects

    left = [p for p in _objects(artifacts) if p.startswith(("chunks/", "sha256/", "manifests/"))]
    assert left == [], "the store is empty again"
