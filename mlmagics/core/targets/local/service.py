"""The local target's Webservice: the scoring server as a detached process (see the package's docstring)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from ...configs import DeploymentConfiguration
from ...errors import ConflictError, TargetUnavailable, UserError, WebserviceException
from ...images import Image
from ...progress import Progress
from ...services import FAILED, HEALTHY, TRANSITIONING, UNHEALTHY, Webservice, swagger_uri_for, target_class
from ...store.artifacts import remove_tree
from .config import LocalServiceDeploymentConfiguration

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[4])  # the folder holding mlmagics/, for the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_time(pid: int) -> str | None:
    """The process's start time from /proc (None if gone or a zombie): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child that exited: reap it
        except ChildProcessError:
            pass
        return None
    return fields[19]


def _tail(path: Path, num_lines: int) -> str:
    """The last `num_lines` lines of the log at `path`, reaching into its rotated files (`path.1`, ...) when needed."""
    lines: list[bytes] = []
    rotated = 0
    current = path
    while current.exists() and len(lines) < num_lines:
        lines = _last_lines(current, num_lines - len(lines)) + lines
        rotated += 1
        current = path.with_name(f"{path.name}.{rotated}")
    return b"\n".join(lines).decode("utf-8", "replace")


def _last_lines(path: Path, num_lines: int) -> list[bytes]:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block, data = 65536, b""
        while size > 0 and data.count(b"\n") <= num_lines:
            step = min(block, size)
            size -= step
            f.seek(size)
            data = f.read(step) + data
    return data.splitlines()[-num_lines:] if num_lines > 0 else []


class LocalWebservice(Webservice):
    """A service running on this machine (v1's `LocalWebservice`, without Docker)."""

    compute_type = "Local"
    names = ("local",)
    target_description = "A service running on this machine"
    config_class = LocalServiceDeploymentConfiguration
    config: LocalServiceDeploymentConfiguration
    poll_interval = 0.05

    @staticmethod
    def deploy_configuration(
        port: int | None = None,
        auth_enabled: bool | None = None,
        primary_key: str | None = None,
        secondary_key: str | None = None,
        scoring_timeout_ms: int | None = None,
        replica_max_concurrent_requests: int | None = None,
        max_request_wait_time: int | None = None,
        collect_model_data: bool | None = None,
        workers: int | None = None,
        max_request_body_mb: float | None = None,
        cors_origins: list[str] | None = None,
        max_batch_size: int | None = None,
        max_batch_latency_ms: float | None = None,
        server_limits: dict[str, float] | None = None,
        tags: dict | None = None,
        properties: dict | None = None,
        description: str | None = None,
    ) -> LocalServiceDeploymentConfiguration:
        """v1 had only `port` (None: a free port); the shared service settings are accepted too."""
        return LocalServiceDeploymentConfiguration(
            auth_enabled=auth_enabled,
            primary_key=primary_key,
            secondary_key=secondary_key,
            scoring_timeout_ms=scoring_timeout_ms,
            replica_max_concurrent_requests=replica_max_concurrent_requests,
            max_request_wait_time=max_request_wait_time,
            collect_model_data=collect_model_data,
            workers=workers,
            max_request_body_mb=max_request_body_mb,
            cors_origins=cors_origins,
            max_batch_size=max_batch_size,
            max_batch_latency_ms=max_batch_latency_ms,
            server_limits=server_limits,
            tags=tags,
            properties=properties,
            description=description,
            port=port,
        )

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self.workspace.path / "services" / self.name

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    @property
    def keys_path(self) -> Path:
        return self.folder / "keys.json"

    @property
    def collected_dir(self) -> Path:
        """The data the service collects: outside its folder, which delete() removes."""
        return self.workspace.path / "collected" / self.name

    def _move_old_collected_data(self) -> None:
        """Services deployed by earlier versions collected into their own folder: move that data out."""
        old = self.folder / "model-data"
        for source in sorted(old.rglob("*.jsonl")) if old.is_dir() else []:
            target = self.collected_dir / source.relative_to(old)
            if target.exists():
                target = target.with_name(f"{target.stem}.moved-{uuid.uuid4().hex[:8]}.jsonl")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(source, target)

    def _write_keys(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.keys_path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump({"primary_key": self._keys["primary"], "secondary_key": self._keys["secondary"]}, f)
        os.replace(tmp, self.keys_path)

    def _release(self, image: Image, config: DeploymentConfiguration) -> dict[str, str]:
        """Lay out a new release folder for `image`; returns the server's arguments for it."""
        releases = self.folder / "releases"
        releases.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.name.split("-")[0]) for p in releases.iterdir() if p.name.split("-")[0].isdigit()), default=0)
        release = releases / f"{number}-{image.name}-{image.version}"
        app = release / "app"
        shutil.copytree(image.app_dir, app)
        for folder, _, files in os.walk(app):  # the snapshot is read-only; the release is the script's to write in
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        models = image.models
        for model in models:
            target = app / "azureml-models" / model.name / str(model.version)
            target.mkdir(parents=True, exist_ok=True)
            (target / model.path.name).symlink_to(model.path)
        if len(models) == 1:  # one model: AZUREML_MODEL_DIR is its version folder, as later v1 SDKs set it
            model_dir = app / "azureml-models" / models[0].name / str(models[0].version)
        else:
            model_dir = app / "azureml-models"
        self._write_keys()
        settings = config.runtime_settings(self.name, str(self.keys_path), image.environment_variables)
        self._move_old_collected_data()
        settings["data_collection_dir"] = str(self.collected_dir)
        settings["service_version"] = str(image.version)
        # 0600 as the keys file: it holds the script's environment variables, which may be credentials
        with open(os.open(release / "service.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(settings, f, indent=2)
        return {
            "entry_script": str(app / image.execution_script),
            "app_root": str(app),
            "model_dir": str(model_dir) if models else "",
            "config": str(release / "service.json"),
            "release": str(release),
        }

    @property
    def port(self) -> int | None:
        """The port on 127.0.0.1 the service listens on (v1's LocalWebservice.port)."""
        return self.target.get("port")

    def usage(self) -> tuple[float, int]:
        """(CPU seconds, resident bytes) of the server and its workers, read from the processes themselves."""
        if not self._alive():  # gone, or its pid now someone else's: nothing of the service's to measure
            raise WebserviceException(f"service {self.name} is not running: nothing to measure")
        try:
            server = psutil.Process(self.target["pid"])
            processes = [server, *server.children(recursive=True)]
        except (KeyError, psutil.Error):
            raise WebserviceException(f"service {self.name} is not running: nothing to measure") from None
        cpu, memory = 0.0, 0
        for process in processes:
            try:
                times = process.cpu_times()
                cpu += times.user + times.system
                memory += process.memory_info().rss
            except psutil.Error:  # a worker replaced between the listing and the reading
                continue
        return cpu, memory

    def reload(self, wait: bool = False) -> None:
        """v1's reload: the entry script and its files read again from where they were given (edit score.py with
        `%%writefile`, then reload()) and served — in seconds, nothing rebuilt; the models and the environment stay.
        The previous version keeps serving if the edited script fails (the error says why)."""
        origin = self.image.spec.get("origin")
        self.update(image=self.image.refreshed() if origin else self.image)

    def deploy_to_cloud(self, name: str | None = None, deployment_config: Any = None, deployment_target: Any = None) -> Any:
        """v1's: deploy what this local service runs (the same image: script, models, environment) to another
        target — the Docker target (v1's ACI) without a configuration, Kubernetes with a `deployment_target`."""
        if self.state not in (HEALTHY, TRANSITIONING, UNHEALTHY):
            raise WebserviceException(
                f"The LocalWebservice is not deployable (state = {self.state}). Recreate it, or use the Model.deploy() "
                "method directly."
            )
        name = name or self.name
        if self.workspace.query("SELECT 1 FROM services WHERE name=:name", {"name": name}):  # before any image is built or pushed
            taken = "this local service's name" if name == self.name else "taken in the workspace"
            raise ConflictError(f"service name {name!r} is {taken}: give the cloud service another, deploy_to_cloud(name=...)")
        if deployment_config is None:
            target = target_class("Kubernetes" if deployment_target is not None else "ACI")
            deployment_config = target.deploy_configuration()
        return Webservice.deploy_from_image(self.workspace, name, self.image, deployment_config, deployment_target)

    # -- hooks ---------------------------------------------------------------------------------------------
    def _start(self, image: Image, progress: Progress, deployment_target: Any = None) -> None:
        config = self.config
        port = config.port or free_port()
        progress.log(f"preparing release of {image.id} in {self.folder}")
        release = self._release(image, config)
        self._spawn(release, port, progress)

    def _spawn(self, release: dict[str, str], port: int, progress: Progress) -> None:
        args = [
            sys.executable,
            "-m",
            "mlmagics.serving",
            release["entry_script"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            release["config"],
            "--app-root",
            release["app_root"],
            "--state-file",
            str(self.state_path),
            "--log-file",  # the server rotates it; until it starts, its output is appended there too
            str(self.log_path),
        ]
        if release["model_dir"]:
            args += ["--model-dir", release["model_dir"]]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        for leftover in (self.state_path, Path(f"{self.state_path}.reload")):
            leftover.unlink(missing_ok=True)
        with open(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
            process = subprocess.Popen(
                args,
                # Not the release's folder: an update removes it, and the server must still have a working
                # directory for the next reload (its workers move into their release's app folder).
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                umask=0o077,  # what the server writes (its state, rotated logs, collected data) is its user's only
            )
        progress.log(f"server process {process.pid} starting on http://127.0.0.1:{port}")
        scoring_uri = f"http://127.0.0.1:{port}/score"
        self._save(
            scoring_uri=scoring_uri,
            swagger_uri=swagger_uri_for(scoring_uri),
            state=TRANSITIONING,
            error=None,
            target={
                **self._location(self.config),
                "pid": process.pid,
                "start": _start_time(process.pid),
                "port": port,
                "release": release["release"],
                "python": sys.executable,
            },
        )

    @classmethod
    def _location(cls, config: DeploymentConfiguration) -> dict[str, Any]:
        return {"host": socket.gethostname()}

    def _operable_here(self) -> None:
        host = self.target.get("host")
        if host and host != socket.gethostname():
            raise TargetUnavailable(f"service {self.name} runs on the local target of {host}; operate it there")

    def runs_on(self) -> str:
        host, pid = self.target.get("host"), self.target.get("pid")
        return "local target" + (f" of {host}" if host else "") + (f" (pid {pid})" if pid else "")

    def _alive(self) -> bool:
        pid, start = self.target.get("pid"), self.target.get("start")
        return pid is not None and start is not None and _start_time(pid) == start

    def _server_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _probe(self) -> tuple[str, str | None]:
        if not self._alive():
            state = self._server_state()
            failure = state.get("init_failure")
            if failure:
                return FAILED, failure.get("message")
            tail = _tail(self.log_path, 5)
            if self.state == HEALTHY or self.state == UNHEALTHY:
                return (
                    UNHEALTHY,
                    "the server process is not running (machine restarted, or killed); service.reload() starts it again",
                )
            return FAILED, f"the server process exited during start-up; last log lines:\n{tail}"
        try:
            # with the key: with key auth on, why init() failed is for the service's owner only
            ready = self.request("GET", "ready", timeout=2)
        except WebserviceException:
            failure = self._server_state().get("init_failure")
            return (FAILED, failure["message"]) if failure else (TRANSITIONING, None)
        if ready.status_code == 200:
            return HEALTHY, None
        body = ready.json() if ready.headers.get("content-type") == "application/json" else {}
        if body.get("status") == "Failed":
            return FAILED, f"{body.get('message')}\n{body.get('traceback', '')}".strip()
        return TRANSITIONING, None

    def _update(self, image: Image, config: DeploymentConfiguration, progress: Progress) -> None:
        assert isinstance(config, LocalServiceDeploymentConfiguration)
        old_port = self.target.get("port")
        if config.port is not None and config.port != old_port:
            raise UserError(f"a local service keeps its port on update (now {old_port}); delete and redeploy to change it")
        release = self._release(image, config)
        if not self._alive():
            progress.log("the server is not running: starting it with the new version")
            self._spawn(release, old_port or free_port(), progress)
            try:
                self.wait_for_deployment(timeout_sec=self.startup_timeout())
            except WebserviceException:
                self._stop_process()
                raise
            self._remove_other_releases(release["release"])
            return
        before = self._server_state().get("reload")
        request = {k: release[k] for k in ("entry_script", "app_root", "model_dir", "config")}
        Path(f"{self.state_path}.reload").write_text(json.dumps(request))
        progress.log(f"asking server {self.target['pid']} to start {image.id} next to {self.image_id}")
        os.kill(self.target["pid"], signal.SIGHUP)
        outcome = self._wait_for_reload(before)
        if not outcome.get("ok"):
            remove_tree(Path(release["release"]))
            message = outcome.get("message") or "the new version did not become ready"
            traceback = outcome.get("traceback", "")
            raise WebserviceException(
                f"update of {self.name} to {image.id} failed; {self.image_id} keeps serving. "
                f"{message}" + (f"\n{traceback}" if traceback else "")
            )
        progress.log(outcome["message"])
        self._save(target={**self.target, "release": release["release"]})
        self._remove_other_releases(release["release"])

    def _wait_for_reload(self, before: dict | None) -> dict:
        deadline = time.monotonic() + self.startup_timeout() + 10
        while time.monotonic() < deadline:
            outcome = self._server_state().get("reload")
            if outcome and outcome != before:
                return outcome
            if not self._alive():
                return {"ok": False, "message": "the server process exited during the update"}
            time.sleep(self.poll_interval)
        return {"ok": False, "message": f"no answer from the server within {self.startup_timeout():.0f} s"}

    def _remove_other_releases(self, keep: str) -> None:
        for release in (self.folder / "releases").iterdir():
            if str(release) != keep:
                remove_tree(release)

    def _stop_process(self) -> None:
        if not self._alive():
            return
        pid = self.target["pid"]
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + float(self.config.effective("scoring_timeout_ms")) / 1000 + 10
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive():
            os.killpg(pid, signal.SIGKILL)
            while self._alive():
                time.sleep(0.05)

    def _stop(self) -> None:
        self._stop_process()
        self._move_old_collected_data()
        remove_tree(self.folder)

    def _collected_data_location(self) -> str | None:
        """Where the collected data is (or is moved to by _stop(), from a folder earlier versions used)."""
        found = any(f.is_dir() and any(f.rglob("*.jsonl")) for f in (self.collected_dir, self.folder / "model-data"))
        return str(self.collected_dir) if found else None

    def _remove_collected_data(self) -> None:
        remove_tree(self.collected_dir)

    def _logs(self, num_lines: int) -> str:
        return _tail(self.log_path, num_lines)

    def _keys_changed(self) -> None:
        self._write_keys()
