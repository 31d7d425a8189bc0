"""The Docker target's Webservice: a service as a port holder and server containers (see the package's docstring)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import socket
import ssl
import tarfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from ... import progress as progress_mod
from ...configs import DeploymentConfiguration
from ...errors import MlmagicsError, TargetUnavailable, UserError, WebserviceException
from ...images import Image
from ...progress import Progress
from ...services import FAILED, HEALTHY, TRANSITIONING, UNHEALTHY, Webservice, swagger_uri_for
from ..container import APP, DATA_DIR, PORT, RUN_DIR, SECRETS, SERVING, UID
from . import build
from .config import AZURE_ONLY, DockerServiceDeploymentConfiguration
from .engine import LABEL, engine, engine_errors, engine_url, sdk, short_error, wait_for_engine
from .engine import base_image as base_image_for

LISTENER_SOCKET = f"{RUN_DIR}/listener.sock"
# Docker's json-file driver keeps a container's output forever unless told: 5 x 10 MiB, as the local target.
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "5"}}
# What both containers of a service run with: nothing in them may write outside their volumes and /tmp,
# gain privileges or capabilities; the engine restarts them (after a crash, or when it restarts itself).
LOCKED_DOWN = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "init": True,
    "restart_policy": {"Name": "unless-stopped"},
    "log_config": LOG_CONFIG,
}
# Processes and threads a server container may have: room for many workers with their native thread pools
# (BLAS, torch: one thread per core each), while a fork bomb in run() stops here instead of exhausting the host.
PIDS_LIMIT = 1024
HOLDER_PIDS_LIMIT = 16  # the port holder is one Python process behind tini
# /tmp is a tmpfs, which counts against the memory limit: half of memory_gb, so that a full /tmp is
# "No space left on device" for the script rather than the container killed for its memory.
TMP_SHARE = 0.5
TMP_MIN_BYTES = 64 * 1024**2
# The hand-over socket and the servers' state files live in memory, readable only by the service's user.
RUN_VOLUME = {"type": "tmpfs", "device": "tmpfs", "o": f"size=4m,uid={UID},gid={UID},mode=0700"}
ENGINE_RETURN_WAIT = 60.0  # seconds a deploy that failed because the engine went away waits to clean up

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _on_engine(doing: str) -> Callable[[_Method], _Method]:
    """The engine going away during the hook is one line naming the service (engine.engine_errors)."""

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def call(self: DockerWebservice, *args: Any, **kwargs: Any) -> Any:
            with engine_errors(f"{doing} {self.name}"):
                return method(self, *args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


def _workspace_key(path: Any) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:8]


def _served_certificate(config: DockerServiceDeploymentConfiguration) -> dict[str, str]:
    """The target's record of the certificate the server presents (what `tls_verify` trusts), if it serves TLS."""
    return {"tls_cert": Path(config.ssl_cert_pem_file).read_text()} if config.ssl_enabled and config.ssl_cert_pem_file else {}


def _uri_host(host: str) -> str:
    """How to reach a port published on `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _tar(files: dict[str, bytes], uid: int = UID, mode: int = 0o400) -> bytes:
    """A tar of `files` owned by the server's user, with sub-second mtimes: the server re-reads a file when its mtime changes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, uid, time.time()
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _read_file(container: Any, path: str) -> bytes | None:
    """A file from a container (the engine's archive API: no shell needed in the image), None if absent or torn.

    The engine sizes the archive's entry before it reads the file, so a file replaced in between (the server
    renames a new state file over the old one) arrives short: that read is torn, and the next poll reads again.
    """
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None else None
            return handle.read() if handle is not None else None
    except (sdk().errors.NotFound, tarfile.TarError):
        return None


def _log_tail(container: Any, num_lines: int) -> str:
    try:
        return container.logs(tail=num_lines, stdout=True, stderr=True).decode("utf-8", "replace").rstrip("\n")
    except sdk().errors.APIError:
        return ""


class DockerWebservice(Webservice):
    """A service in a container on a Docker engine (v1's `AciWebservice`, which is the same class here)."""

    compute_type = "Docker"
    names = ("docker", "aci")
    target_description = "A service in a container on a Docker engine"
    config_class = DockerServiceDeploymentConfiguration
    config: DockerServiceDeploymentConfiguration
    poll_interval = 0.1

    @staticmethod
    def deploy_configuration(
        cpu_cores: float | None = None,
        memory_gb: float | None = None,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
        location: str | None = None,
        auth_enabled: bool | None = None,
        ssl_enabled: bool | None = None,
        enable_app_insights: bool | None = None,
        ssl_cert_pem_file: str | None = None,
        ssl_key_pem_file: str | None = None,
        ssl_cname: str | None = None,
        dns_name_label: str | None = None,
        primary_key: str | None = None,
        secondary_key: str | None = None,
        collect_model_data: bool | None = None,
        cmk_vault_base_url: str | None = None,
        cmk_key_name: str | None = None,
        cmk_key_version: str | None = None,
        vnet_name: str | None = None,
        subnet_name: str | None = None,
        port: int | None = None,
        host: str | None = None,
        scoring_timeout_ms: int | None = None,
        replica_max_concurrent_requests: int | None = None,
        max_request_wait_time: int | None = None,
        workers: int | None = None,
        max_request_body_mb: float | None = None,
        cors_origins: list[str] | None = None,
        max_batch_size: int | None = None,
        max_batch_latency_ms: float | None = None,
        server_limits: dict[str, float] | None = None,
    ) -> DockerServiceDeploymentConfiguration:
        """v1's ACI parameters, in v1's order, with v1's defaults — except `auth_enabled`, on by default here.

        >>> DockerWebservice.deploy_configuration(cpu_cores=1, memory_gb=1).effective("auth_enabled")
        True

        `cpu_cores` (0.1) and `memory_gb` (0.5) are the container's hard limits. `port` (default:
        a free one) and `host` (default 127.0.0.1; 0.0.0.0 publishes on every interface) say where
        the scoring URI listens. Azure-only settings (location, dns_name_label, enable_app_insights,
        cmk_*, vnet_name, subnet_name) are accepted so that v1 code runs, and have no effect.
        """
        given = locals()
        for name in AZURE_ONLY:
            if given[name] is not None:
                warnings.warn(f"{name} has no effect on the docker target (it is an Azure setting)", UserWarning, stacklevel=2)
        return DockerServiceDeploymentConfiguration(**given)

    # -- where it runs ----------------------------------------------------------------------------------------
    @classmethod
    def _location(cls, config: DeploymentConfiguration) -> dict[str, Any]:
        """The engine, by its id (the same whichever DOCKER_HOST names it), and the host it was reached from."""
        with engine_errors("reading its id"):
            return {"engine": engine().info().get("ID", ""), "engine_host": socket.gethostname(), "engine_url": engine_url()}

    def _operable_here(self) -> None:
        recorded = self.target.get("engine")
        if not recorded or getattr(self, "_engine_checked", False):
            return
        with engine_errors("reading its id"):
            here = self._docker.info().get("ID", "")
        if here != recorded:
            host = self.target.get("engine_host", "another host")
            raise TargetUnavailable(
                f"service {self.name} runs on the Docker engine of {host}, not the one at {engine_url()}; "
                f"set DOCKER_HOST to reach that engine (e.g. ssh://{host}) to operate it from here"
            )
        self._engine_checked = True

    def runs_on(self) -> str:
        host = self.target.get("engine_host")
        return f"Docker on {host}" if host else "Docker"

    # -- names and lookups ---------------------------------------------------------------------------------
    @property
    def _docker(self) -> Any:
        if getattr(self, "_client", None) is None:
            self._client = engine()
        return self._client

    @property
    def _prefix(self) -> str:
        return f"mlmagics-{self.name}-{_workspace_key(self.workspace.identity)}"

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return {
            f"{LABEL}.workspace": self.workspace.identity,
            f"{LABEL}.service": self.name,
            f"{LABEL}.role": role,
            **{f"{LABEL}.{k}": v for k, v in extra.items()},
        }

    def _containers(self, role: str | None = None) -> list[Any]:
        """This service's containers on the engine, found by their labels (newest release first)."""
        labels = [f"{LABEL}.workspace={self.workspace.identity}", f"{LABEL}.service={self.name}"]
        if role:
            labels.append(f"{LABEL}.role={role}")
        found = self._docker.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: int(c.labels.get(f"{LABEL}.release", "0")), reverse=True)

    def _get(self, container_id: str | None, role: str) -> Any | None:
        if container_id:
            try:
                return self._docker.containers.get(container_id)
            except sdk().errors.NotFound:
                pass
        found = self._containers(role)
        return found[0] if found else None

    @property
    def container(self) -> Any | None:
        """The server container (a `docker.models.containers.Container`), or None if it is gone."""
        return self._get(self.target.get("container"), "server")

    @_on_engine("reading the container's usage")
    def usage(self) -> tuple[float, int]:
        """(CPU seconds, memory bytes without the page cache) of the server container, from the engine's stats."""
        container = self.container
        if container is None:
            raise WebserviceException(f"service {self.name} has no container: nothing to measure")
        stats = container.stats(stream=False)
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
        memory = stats.get("memory_stats", {})
        cache = memory.get("stats", {}).get("inactive_file", memory.get("stats", {}).get("cache", 0))
        return cpu, max(0, int(memory.get("usage", 0)) - int(cache))

    def _volumes(self, role: str | None = None) -> list[Any]:
        """This service's volumes on the engine, found by their labels."""
        labels = [f"{LABEL}.workspace={self.workspace.identity}", f"{LABEL}.service={self.name}"]
        if role:
            labels.append(f"{LABEL}.role={role}")
        return self._docker.volumes.list(filters={"label": labels})

    def _fresh_volume(self, name: str, role: str, driver_opts: dict[str, str] | None = None, **labels: str) -> str:
        """Create volume `name`, replacing a leftover of an attempt that died half-way: an empty volume is what
        makes the engine copy the image's folder into it (the app folder) and take its owner (the data folder)."""
        try:
            self._docker.volumes.get(name).remove(force=True)
        except sdk().errors.NotFound:
            pass
        self._docker.volumes.create(name=name, driver="local", driver_opts=driver_opts or {}, labels=self._labels(role, **labels))
        return name

    @property
    def _data_volume(self) -> str:
        return f"{self._prefix}-data"

    # -- hooks ---------------------------------------------------------------------------------------------
    @classmethod
    def _before_deploy(
        cls, workspace: Any, name: str, image: Image, config: Any, deployment_target: Any, progress: Progress
    ) -> None:
        engine()  # no engine: TargetUnavailable now, before the service is recorded

    @_on_engine("deploying")
    def _start(self, image: Image, progress: Progress, deployment_target: Any = None) -> None:
        build.build(image, progress=progress)
        progress.stage(f"Starting {self.name} on the Docker engine")
        try:
            self._start_containers(image, progress)
        except Exception as e:  # a deploy that failed half-way leaves nothing running, not even after an engine restart
            left = self._clean_up(self._remove_all, progress)
            if left and isinstance(e, MlmagicsError):
                raise type(e)(f"{e.message}; {left}") from None
            raise

    def _start_containers(self, image: Image, progress: Progress) -> None:
        holder, port, volume = self._start_holder(image, fresh=True)
        host = self.config.effective("host")
        if self.config.ssl_enabled:  # the certificate names the service: clients reach it by that name (ssl_cname)
            scoring_uri = f"https://{self.config.ssl_cname}:{port}/score"
        else:
            scoring_uri = f"http://{_uri_host(host)}:{port}/score"
        self._save(
            scoring_uri=scoring_uri,
            swagger_uri=swagger_uri_for(scoring_uri),
            state=TRANSITIONING,
            error=None,
            target={**self.target, "holder": holder.id, "port": port, "host": host, "volume": volume, "release": 0},
        )
        progress.log(f"port holder {holder.name} publishes {host}:{port}")
        server = self._start_server(image, self.config, release=1)
        self._save(target={**self.target, "container": server.id, "release": 1, **_served_certificate(self.config)})
        limits = f"cpu_cores {self._cpu(self.config):g}, memory_gb {float(self.config.effective('memory_gb')):g}"
        progress.log(f"server container {server.name} starting {image.id} ({limits})")

    def _clean_up(self, action: Callable[[], None], progress: Progress) -> str:
        """Run `action` (removing what a failed deploy or update started), waiting for an engine that went away to come
        back; returns what the error should add when it cannot ('' when done)."""
        later = "service.delete() removes what it started once the engine is back"
        try:
            self._client = engine()
        except TargetUnavailable:
            progress.log(f"the Docker engine is not answering: waiting {ENGINE_RETURN_WAIT:.0f} s to remove what was started")
            if not wait_for_engine(ENGINE_RETURN_WAIT):
                return f"the engine did not come back within {ENGINE_RETURN_WAIT:.0f} s: {later}"
            self._client = engine()
        try:
            with engine_errors(f"cleaning up after {self.name}"):
                action()
        except TargetUnavailable as e:
            return f"{e.message}: {later}"
        return ""

    def _start_holder(self, image: Image, port: int | None = None, fresh: bool = False) -> tuple[Any, int, str]:
        """The container that owns the published port and hands its listening socket to the servers.

        It runs as the servers' user, and the socket is 0600 (listener.py) on a tmpfs volume of that user,
        mode 0700: only the service's own servers can ask for its listening socket."""
        client = self._docker
        volume = f"{self._prefix}-run"
        if fresh:  # a new service; else the servers of a running one use the volume
            self._fresh_volume(volume, "run", RUN_VOLUME)
        else:
            try:
                client.volumes.get(volume)
            except sdk().errors.NotFound:
                self._fresh_volume(volume, "run", RUN_VOLUME)
        host = self.config.effective("host")
        base = image.build_info.get("base_image") or build.base_image(image.environment.python)
        command = ["python3", "-c", (SERVING / "listener.py").read_text(), "hold", "--host", "0.0.0.0", "--port", str(PORT)]
        try:
            holder = client.containers.run(
                base,
                command=[*command, "--socket", LISTENER_SOCKET],
                name=f"{self._prefix}-port",
                labels=self._labels("port"),
                detach=True,
                ports={f"{PORT}/tcp": (host, port or self.config.port)},
                volumes={volume: {"bind": RUN_DIR, "mode": "rw"}},
                user=f"{UID}:{UID}",  # the in-container port (5001) needs no privilege to bind
                mem_limit="64m",
                pids_limit=HOLDER_PIDS_LIMIT,
                **LOCKED_DOWN,
            )
        except sdk().errors.APIError as e:
            for leftover in self._containers("port"):  # created, but it could not start (the port is taken, ...)
                leftover.remove(force=True)
            raise WebserviceException(
                f"cannot start the port holder of {self.name} on {host}:{port or self.config.port or 'a free port'}: "
                f"{short_error(e)}"
            ) from None
        holder.reload()
        bindings = (holder.attrs["NetworkSettings"]["Ports"] or {}).get(f"{PORT}/tcp") or []
        if not bindings:  # it died at once: e.g. a base image without python3
            tail = _log_tail(holder, 10)
            holder.remove(force=True)
            raise WebserviceException(f"the port holder of {self.name} did not start ({holder.status}; it runs python3 "
                                      f"from the base image {base}):\n{tail}")  # fmt: skip
        return holder, int(bindings[0]["HostPort"]), volume

    def _cpu(self, config: DeploymentConfiguration) -> float:
        return float(config.effective("cpu_cores"))

    def _start_server(
        self, image: Image, config: DockerServiceDeploymentConfiguration, release: int, beside_another: bool = False
    ) -> Any:
        """Create release `release`'s server container, copy its settings and keys in, start it.

        `beside_another`: another release accepts on the same socket; this one must take no
        request unless its init() succeeds (a failed one answers nothing instead of 503s).
        """
        settings = config.runtime_settings(self.name, f"{SECRETS}/keys.json", image.environment_variables)
        settings["service_version"] = str(image.version)
        settings["data_collection_dir"] = DATA_DIR
        memory = int(float(config.effective("memory_gb")) * 1024**3)
        tmp_bytes = max(TMP_MIN_BYTES, int(memory * TMP_SHARE))
        # Fresh per release: the engine copies the image's app folder (and its owner) into an empty volume.
        volumes = {
            self._fresh_volume(name, "release", release=str(release)): {"bind": path, "mode": "rw"}
            for name, path in self._release_volumes(release).items()
        }
        # The socket, and where the server keeps its state. nocopy: the engine must not give the volume the owner
        # and mode of the image's folder, which would lock the holder out of it.
        volumes[self.target["volume"]] = {"bind": RUN_DIR, "mode": "rw,nocopy"}
        if config.effective("collect_model_data"):  # kept across releases and by delete(): the workspace's data
            if not self._volumes("data"):
                self._fresh_volume(self._data_volume, "data")
            volumes[self._data_volume] = {"bind": DATA_DIR, "mode": "rw"}
        state_file = _state_file(release)
        try:
            container = self._docker.containers.create(
                image.build_info["id"],
                command=build.server_command(state_file),
                healthcheck=build.healthcheck(state_file),
                name=f"{self._prefix}-{release}",
                labels=self._labels("server", image=image.id, release=str(release)),
                environment={
                    "AZUREML_CONFIG_FILE": f"{SECRETS}/service.json",
                    "MLMAGICS_LISTEN_FROM": LISTENER_SOCKET,
                    "MLMAGICS_SERVE_INIT_FAILURE": "false" if beside_another else "true",
                },
                volumes=volumes,
                tmpfs={"/tmp": f"size={tmp_bytes},mode=1777"},
                nano_cpus=int(self._cpu(config) * 1e9),
                mem_limit=memory,
                memswap_limit=memory,  # no swap: memory_gb is the limit, as on ACI
                pids_limit=PIDS_LIMIT,
                stop_signal="SIGTERM",
                **LOCKED_DOWN,
            )
        except sdk().errors.APIError as e:
            self._remove_release_volumes(release)
            raise WebserviceException(f"cannot create the container of {self.name}: {short_error(e)}") from None
        files = {"keys.json": self._keys_json()}
        if config.ssl_enabled and config.ssl_cert_pem_file and config.ssl_key_pem_file:  # the server terminates TLS itself
            files["tls.crt"] = Path(config.ssl_cert_pem_file).read_bytes()
            files["tls.key"] = Path(config.ssl_key_pem_file).read_bytes()
            settings.update(ssl_cert_file=f"{SECRETS}/tls.crt", ssl_key_file=f"{SECRETS}/tls.key")
        files["service.json"] = json.dumps(settings).encode()
        try:
            container.put_archive(SECRETS, _tar(files))
            container.start()
        except sdk().errors.APIError as e:
            self._discard(container)
            raise WebserviceException(f"cannot start the container of {self.name}: {short_error(e)}") from None
        return container

    def _release_volumes(self, release: int) -> dict[str, str]:
        """Release `release`'s own volumes: name -> where the server sees it."""
        return {f"{self._prefix}-{release}-app": APP, f"{self._prefix}-{release}-secrets": SECRETS}

    def _remove_release_volumes(self, release: int | str) -> None:
        for name in self._release_volumes(int(release)):
            try:
                self._docker.volumes.get(name).remove(force=True)
            except sdk().errors.NotFound:
                pass

    def _keys_json(self) -> bytes:
        return json.dumps({"primary_key": self._keys["primary"], "secondary_key": self._keys["secondary"]}).encode()

    def _readiness(self, container: Any, starting: bool = True) -> tuple[str, str | None]:
        """What one server container says of itself: stopped, init() failed, starting, or ready.

        While `starting`, a restart already counts as a failure (it crashed during start-up).
        """
        try:
            container.reload()
        except sdk().errors.NotFound:
            return FAILED, f"the container {container.name} is gone"
        state = container.attrs["State"]
        crashed = starting and (state["Status"] == "restarting" or container.attrs.get("RestartCount"))
        if state["Status"] in ("exited", "dead") or crashed:
            why = "killed: out of memory (raise memory_gb)" if state.get("OOMKilled") else f"exit code {state.get('ExitCode')}"
            return FAILED, f"the server container {container.name} stopped ({why}); last log lines:\n{_log_tail(container, 20)}"
        if state["Status"] != "running":
            return TRANSITIONING, None
        raw = _read_file(container, _state_file(container.labels.get(f"{LABEL}.release", "0")))
        try:
            server = json.loads(raw) if raw else {}
        except ValueError:  # written just now; read again at the next poll
            server = {}
        failure = server.get("init_failure")
        if failure:
            return FAILED, f"{failure.get('message')}\n{failure.get('traceback', '')}".strip()
        workers = server.get("workers") or {}
        if workers and all(w == "ready" for w in workers.values()) and not server.get("stopping"):
            return HEALTHY, None
        return TRANSITIONING, None

    @_on_engine("checking")
    def _probe(self) -> tuple[str, str | None]:
        was_up = self.state in (HEALTHY, UNHEALTHY)
        server = self.container
        if server is None:
            return (UNHEALTHY if was_up else FAILED), "the server container is gone; service.reload() starts a new one"
        state, error = self._readiness(server, starting=not was_up)
        holder = self._get(self.target.get("holder"), "port")
        if holder is None or holder.status != "running":
            why = f":\n{_log_tail(holder, 10)}" if holder is not None else " (it is gone)"
            hint = "\nservice.reload() starts it again" if was_up else ""
            return (UNHEALTHY if was_up else FAILED), f"the port holder container stopped{why}{hint}"
        if state != HEALTHY:
            return (UNHEALTHY if was_up and state == FAILED else state), error
        try:
            status = self._ready_status()
        except (requests.RequestException, OSError) as e:
            # e.g. the engine restarted the port holder after the server took its socket
            return (UNHEALTHY if was_up else TRANSITIONING), (
                f"the scoring URI does not answer ({e}); service.reload() reconnects the server to its port"
            )
        if status == 200:
            return HEALTHY, None
        return (UNHEALTHY if was_up else TRANSITIONING), f"GET /ready answered {status}"

    def _ready_status(self) -> int:
        """GET /ready through the published port. With TLS: at the published address, checking the
        certificate against ssl_cname — whether or not that name resolves here yet (v1's ACI too
        expected you to point the name at the service after the deploy)."""
        host, port = _uri_host(self.target["host"]).strip("[]"), self.target["port"]
        uri, trust = self.scoring_uri or "", self.tls_verify
        if not uri.startswith("https:") or not isinstance(trust, str):
            return requests.get(f"http://{_uri_host(self.target['host'])}:{port}/ready", timeout=2).status_code
        cname = uri.split("//", 1)[1].rsplit(":", 1)[0]
        context = ssl.create_default_context(cafile=trust)
        with socket.create_connection((host, port), timeout=2) as raw, context.wrap_socket(raw, server_hostname=cname) as tls:
            tls.sendall(f"GET /ready HTTP/1.1\r\nHost: {cname}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and (chunk := tls.recv(256)):
                head += chunk
        try:
            return int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise OSError(f"no HTTP answer from {host}:{port}") from None

    @_on_engine("updating")
    def _update(self, image: Image, config: DeploymentConfiguration, progress: Progress) -> None:
        assert isinstance(config, DockerServiceDeploymentConfiguration)
        port, host = self.target.get("port"), self.target.get("host")
        if config.port is not None and config.port != port:
            raise UserError(f"a docker service keeps its port on update (now {port}); delete and redeploy to change it")
        if config.effective("host") != host:
            raise UserError(f"a docker service keeps its host on update (now {host}); delete and redeploy to change it")
        uri = self.scoring_uri or ""
        if bool(config.ssl_enabled) != uri.startswith("https:") or (
            config.ssl_enabled and not uri.startswith(f"https://{config.ssl_cname}:")
        ):
            raise UserError(
                f"a docker service keeps its scoring URI {self.scoring_uri} on update: TLS on/off and ssl_cname cannot "
                "change (a new certificate for the same name can); delete and redeploy to change them"
            )
        holder = self._get(self.target.get("holder"), "port")
        if holder is not None and not holder.attrs["Config"].get("User"):
            # Its servers share a root-owned run volume that a locked-down server cannot write its state to.
            raise UserError(
                f"{self.name} was deployed by an earlier mlmagics, whose port holder runs as root and lets any user ask for "
                f"its socket; delete and redeploy it (port={port} keeps its scoring URI) to lock it down"
            )
        build.build(image, progress=progress)
        if holder is None:
            progress.log(f"the port holder is gone: publishing {host}:{port} again")
            holder, _, _ = self._start_holder(image, port)
            self._save(target={**self.target, "holder": holder.id})
        elif holder.status != "running":
            holder.start()
        old = self.container
        # Never a number used before, even by an update that failed: its state file may still be in the run volume.
        release = max(int(self.target.get("release") or 0), int(self.target.get("last_release") or 0)) + 1
        self._save(target={**self.target, "last_release": release})
        progress.stage(f"Starting {image.id} next to {self.image_id} (release {release})")
        try:
            new = self._start_server(image, config, release, beside_another=True)
            state, error = self._wait_ready(new)
        except Exception as e:  # the engine went away: release `release` must not come back with it beside the old one
            left = self._clean_up(lambda: self._discard_release(release), progress)
            if left and isinstance(e, MlmagicsError):
                raise type(e)(f"{e.message}; {left}") from None
            raise
        if state != HEALTHY:
            tail = _log_tail(new, 20)
            self._discard(new)
            raise WebserviceException(
                f"update of {self.name} to {image.id} failed; {self.image_id} keeps serving. {error}"
                + (f"\nLast log lines of the new container:\n{tail}" if tail and tail not in (error or "") else "")
            )
        # Only now the new certificate is the one clients check: a failed update keeps the old one trusted.
        self._save(target={**self.target, "container": new.id, "release": release, **_served_certificate(config)})
        progress.log(f"{new.name} is ready; {old.name if old else 'the previous release'} stops accepting and drains")
        if old is not None and old.id != new.id:
            self._remove_container(old)

    def _wait_ready(self, container: Any) -> tuple[str, str | None]:
        deadline = time.monotonic() + self.startup_timeout()
        while time.monotonic() < deadline:
            state, error = self._readiness(container)
            if state in (HEALTHY, FAILED):
                return state, error
            time.sleep(self.poll_interval)
        return UNHEALTHY, f"not ready after {self.startup_timeout():.0f} s"

    def _remove_container(self, container: Any) -> None:
        """Stop `container` gracefully (a server drains its requests), then remove it and its release's volumes."""
        graceful = float(self.config.effective("scoring_timeout_ms")) / 1000 + 5
        try:
            container.stop(timeout=int(min(graceful, 60)))
        except sdk().errors.NotFound:
            pass
        self._discard(container)

    def _discard(self, container: Any) -> None:
        """Remove `container` at once, with its release's volumes."""
        try:
            container.remove(force=True)
        except sdk().errors.NotFound:
            pass
        if container.labels.get(f"{LABEL}.release"):
            self._remove_release_volumes(container.labels[f"{LABEL}.release"])

    def _discard_release(self, release: int) -> None:
        for container in self._containers("server"):
            if container.labels.get(f"{LABEL}.release") == str(release):
                self._discard(container)
        self._remove_release_volumes(release)

    def _remove_all(self) -> None:
        """Remove the service's containers and volumes from the engine — all but its collected data."""
        containers = self._containers()
        for container in containers:  # servers first, so that they drain while the port still exists
            if container.labels.get(f"{LABEL}.role") == "server":
                self._remove_container(container)
        for container in containers:
            if container.labels.get(f"{LABEL}.role") != "server":
                self._remove_container(container)
        for volume in self._volumes():
            if volume.attrs.get("Labels", {}).get(f"{LABEL}.role") != "data":
                try:
                    volume.remove(force=True)
                except sdk().errors.NotFound:
                    pass

    @_on_engine("removing")
    def _stop(self) -> None:
        if not self.target:  # nothing was started (e.g. the engine was unreachable): nothing to remove from it
            try:
                self._client = engine()
            except TargetUnavailable:
                return
        self._remove_all()

    @_on_engine("looking for the collected data of")
    def _collected_data_location(self) -> str | None:
        """Where the service's collected model data is kept (it outlives the service), or None if it has none."""
        found = self._volumes("data")
        if not found:
            return None
        return f"the Docker volume {found[0].name} (on the engine at {engine_url()}; mounted at {DATA_DIR} in the service)"

    @_on_engine("removing the collected data of")
    def _remove_collected_data(self) -> None:
        """Remove the service's collected model data (what delete(delete_collected_data=True) asks for)."""
        for volume in self._volumes("data"):
            volume.remove(force=True)

    @_on_engine("reading the logs of")
    def _logs(self, num_lines: int) -> str:
        server = self.container
        return _log_tail(server, num_lines) if server is not None else ""

    @_on_engine("copying the keys into")
    def _keys_changed(self) -> None:
        for container in self._containers("server"):  # a stopped one too: it reads the file when it starts again
            try:
                container.put_archive(SECRETS, _tar({"keys.json": self._keys_json()}))
            except sdk().errors.NotFound:
                pass

    # -- Docker images -------------------------------------------------------------------------------------
    @staticmethod
    def build_image(
        image: Image,
        base_image: str | None = None,
        no_cache: bool = False,
        progress: Progress | None = None,
        show_output: bool = False,
    ) -> str:
        """Build the Docker image of `image` (deploying to docker does it too); returns its tag.

            DockerWebservice.build_image(image, show_output=True)   # 'mlmagics/myimage:2', the output live

        Built once: later calls return at once while the Docker image exists. The base image is
        `base_image`, else the configuration's, else $MLMAGICS_BASE_IMAGE, else python:<3.x>-slim.
        """
        report = progress_mod.resolve(progress, show_output)
        try:
            tag = build.build(image, base_image, report, no_cache=no_cache)
        except Exception as e:
            report.done(False, str(e))
            raise
        report.done(True, f"{tag} is built ({image.build_info.get('size', 0) / 1e6:.1f} MB)")
        return tag

    @staticmethod
    def save_build_context(image: Image, folder: str | os.PathLike, base_image: str | None = None) -> str:
        """Write the Dockerfile and everything it copies to `folder` (v1's `ModelPackage.save`): `docker build
        folder` builds, anywhere, the image this target would. Returns the Dockerfile's path."""
        target = Path(folder)
        if target.exists() and any(target.iterdir()):
            raise UserError(f"{target} is not empty: give a new or empty folder for the build context")
        target.mkdir(parents=True, exist_ok=True)
        context = io.BytesIO()
        build.write_context(image, base_image_for(image.environment.python, base_image or image.spec.get("base_image")), context)
        context.seek(0)
        with tarfile.open(fileobj=context) as tar:
            tar.extractall(target, filter="data")
        return str(target / "Dockerfile")

    @staticmethod
    def push_image(
        image: Image,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        progress: Progress | None = None,
        show_output: bool = False,
    ) -> str:
        """Push the Docker image of `image` to `registry` (built first if needed); returns where it is,
        which `image.image_location` says from then on.

            DockerWebservice.push_image(image, "127.0.0.1:5000")   # '127.0.0.1:5000/mlmagics/myimage:2'
        """
        report = progress_mod.resolve(progress, show_output)
        try:
            location = build.push(image, registry, username, password, report)
        except Exception as e:
            report.done(False, str(e))
            raise
        report.done(True, f"pushed {location}")
        return location


def _state_file(release: int | str) -> str:
    """Where release `release`'s server keeps its state: the run volume, which the target reads through the
    engine's archive API (it cannot see inside a tmpfs mount such as /tmp)."""
    return f"{RUN_DIR}/state-{release}.json"


AciWebservice = DockerWebservice
