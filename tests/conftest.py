"""Fixtures the whole suite shares: workspaces and images, scoring servers, the Docker engine and registry,
the Kubernetes schemas, and the rule for what a test does when a service it needs is missing here.

What only one folder needs lives in that folder's conftest.py, which also marks its tests
(tests/targets/kubernetes: `kubernetes`, tests/lab: `browser`, tests/notebooks: `notebook`).
The `docker` marker follows the fixtures: a test that uses `docker_engine` or `registry`, in any folder, has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from mlmagics.core import ContainerImage, Image, Model, Webservice, Workspace

# -- markers ------------------------------------------------------------------------------------------------------
DOCKER_FIXTURES = {"docker_engine", "registry"}


def pytest_itemcollected(item: pytest.Item) -> None:
    if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.docker)


# -- the user's own workspace is never touched ------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _run_home(tmp_path_factory):
    """$MLMAGICS_HOME is a folder of this run's own, and $MLMAGICS_WORKSPACE unset, for every test and every process
    it starts: the default workspace and the caches of workspaces of URIs never land in the user's ~/.mlmagics."""
    saved = {name: os.environ.pop(name, None) for name in ("MLMAGICS_HOME", "MLMAGICS_WORKSPACE")}
    os.environ["MLMAGICS_HOME"] = str(tmp_path_factory.mktemp("mlmagics-home"))
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


# -- what is missing here ------------------------------------------------------------------------------------------
def _unavailable(reason: str) -> None:
    """Skip: a service this test needs is missing here. Under CI=true it fails instead, since the CI machine
    is set up to have every one of them (.ci/run), and a skipped test there would hide that one went missing."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def unavailable():
    """`unavailable(reason)`: skip the test, or fail it under CI=true."""
    return _unavailable


# -- small builders ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """`free_port()`: a port on 127.0.0.1 that nothing listens on now."""
    return _free_port


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="session")
def write():
    """`write(path, text)`: the dedented text in a file, its folders made; returns the path."""
    return _write


@pytest.fixture(scope="session")
def self_signed_certificate():
    """`self_signed_certificate(folder, name="localhost")`: (cert.pem, key.pem) for `name`, localhost and 127.0.0.1."""

    def make(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-addext", f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key

    return make


# -- scoring scripts and models ------------------------------------------------------------------------------------
ECHO_SCRIPT = """
import json
VERSION = {version!r}

def init():
    global model_text
    from azureml.core.model import Model
    model_text = open(Model.get_model_path({model!r})).read().strip()

def run(raw_data):
    return {{"version": VERSION, "model": model_text, "input": json.loads(raw_data)}}
"""

FAILING_INIT = """
def init():
    raise RuntimeError("the model file is corrupt")

def run(raw_data):
    return raw_data
"""

COLLECTING = """
import json
from azureml.monitoring import ModelDataCollector

def init():
    global inputs_dc, prediction_dc
    inputs_dc = ModelDataCollector("best_model", designation="inputs", feature_names=["a", "b"])
    prediction_dc = ModelDataCollector("best_model", designation="predictions", feature_names=["y"])

def run(raw_data):
    data = json.loads(raw_data)["data"]
    correlation = inputs_dc.collect(data)
    prediction_dc.collect([sum(row) for row in data])
    return correlation
"""


@pytest.fixture(scope="session")
def echo_script() -> str:
    """A score.py template (`.format(version=..., model=...)`) whose run() answers its version, its model file's
    text and its input."""
    return ECHO_SCRIPT


@pytest.fixture(scope="session")
def failing_init() -> str:
    """A score.py whose init() raises RuntimeError("the model file is corrupt")."""
    return FAILING_INIT


@pytest.fixture(scope="session")
def collecting_script() -> str:
    """A score.py that collects its inputs and predictions with v1's ModelDataCollector (model best_model);
    run() answers the correlation id of what it collected."""
    return COLLECTING


@pytest.fixture(scope="session")
def seed_scripts() -> Path:
    """The seed document's three scoring scripts, verbatim (tests/seed_scripts/README.md)."""
    return Path(__file__).parent / "seed_scripts"


@pytest.fixture(scope="session")
def sklearn_mnist(tmp_path_factory):
    """The seed's model: a LogisticRegression over 10 features, pickled with joblib, and its training data."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "sklearn_mnist_model.pkl"
    joblib.dump(model, path)
    return path, model


# -- workspaces and images ---------------------------------------------------------------------------------------
@pytest.fixture
def ws(tmp_path):
    """A workspace in tmp_path; afterwards its services are deleted with their collected data (no server outlives
    its test)."""
    workspace = Workspace(tmp_path / "ws")
    yield workspace
    for service in Webservice.list(workspace):
        service.delete(delete_collected_data=True)


# The last commit whose workspace was a SQLite schema of its own, before Alembic (mlmagics 0.1)
BEFORE_ALEMBIC = "2e203cd"
_OLD_CLIENT = """
import sys
from pathlib import Path
from mlmagics.core import ContainerImage, Image, Model, Webservice, Workspace, LocalWebservice
folder, app = Path(sys.argv[1]), Path(sys.argv[2])
ws = Workspace(folder)
model = Model.register(ws, str(app / "weights.txt"), "tiny", tags={"from": "0.1"})
config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
import os; os.chdir(app)
image = Image.create(ws, "echo", [model], config)
image.wait_for_creation()
service = Webservice.deploy_from_image(ws, "old-service", image, LocalWebservice.deploy_configuration())
service.wait_for_deployment()
print(service.scoring_uri)
"""


@pytest.fixture
def workspace_of_0_1(tmp_path):
    """`workspace_of_0_1()` -> (folder, scoring URI): a folder workspace written by mlmagics 0.1 (the code at
    BEFORE_ALEMBIC, from this repository's history) holding a model, an image and a running local service."""
    root = Path(__file__).resolve().parents[1]
    old = tmp_path / "mlmagics-0.1"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", BEFORE_ALEMBIC, "mlmagics"], capture_output=True)
    if archive.returncode != 0:
        _unavailable(f"git archive {BEFORE_ALEMBIC} failed (a shallow clone?): {archive.stderr.decode()[:200]}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)

    def make() -> tuple[Path, str]:
        app = tmp_path / "old-app"
        _write(app / "weights.txt", "weights of 0.1\n")
        _write(app / "score.py", ECHO_SCRIPT.format(version="v0.1", model="tiny"))
        folder = tmp_path / "old-ws"
        env = {**os.environ, "PYTHONPATH": str(old)}
        done = subprocess.run([sys.executable, "-c", _OLD_CLIENT, str(folder), str(app)], env=env, capture_output=True,
                              text=True, timeout=120, cwd=app)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return folder, done.stdout.strip().splitlines()[-1]

    yield make
    with contextlib.suppress(Exception):
        for service in Webservice.list(Workspace(tmp_path / "old-ws")):
            service.delete(delete_collected_data=True)


def _echo_image(
    ws: Workspace, folder: Path, name: str = "echo", version: str = "v1", model_name: str = "tiny", script: str | None = None
) -> Image:
    model_file = _write(folder / f"{model_name}.txt", f"weights of {model_name}\n")
    try:
        model = Model(ws, model_name)
    except Exception:
        model = Model.register(ws, model_file, model_name)
    _write(folder / "score.py", script or ECHO_SCRIPT.format(version=version, model=model_name))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
        return Image.create(ws, name, [model], config)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def echo_image():
    """`echo_image(ws, folder, name="echo", version="v1", model_name="tiny", script=None)`: a registered text model
    (registered once per workspace) and an image serving it with the echo script, or with `script`."""
    return _echo_image


# -- scoring servers -----------------------------------------------------------------------------------------------
class ScoringServer:
    """`python -m mlmagics.serving` in its own process group, stopped by `stop()`."""

    def __init__(
        self,
        app_root: Path,
        script: str = "score.py",
        model_dir: str | None = None,
        config: dict | None = None,
        workers: int = 1,
        env: dict | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.app_root = Path(app_root)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.app_root / "server.log"
        args = [sys.executable, "-m", "mlmagics.serving", script, "--port", str(self.port), "--workers", str(workers)]
        if model_dir:
            args += ["--model-dir", model_dir]
        if config is not None:
            config_path = self.app_root / "service.json"
            config_path.write_text(json.dumps(config))
            args += ["--config", str(config_path)]
        args += extra_args or []
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args,
            cwd=self.app_root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> dict:
        """Wait until /ready answers 200 or says init failed; returns its JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.url + "/ready", timeout=2)
                if r.status_code == 200 or r.json().get("status") == "Failed":
                    return r.json()
            except (requests.ConnectionError, requests.Timeout):  # nothing accepts before init() ends
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """The server's log so far: what it logged until now is written within a tick (50 ms)."""
        time.sleep(0.15)
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def post(self, path: str = "/score", data=None, json_body=None, **kw) -> requests.Response:
        return requests.post(self.url + path, data=data, json=json_body, timeout=30, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig) if sig == signal.SIGKILL else self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def _servers():
    started: list[ScoringServer] = []

    def start(app_root, script="score.py", ready=True, **kw) -> ScoringServer:
        server = ScoringServer(app_root, script, **kw)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def serve():
    """`serve(app_root, script="score.py", ready=True, model_dir=, config=, workers=, env=, extra_args=)`: a scoring
    server started as `python -m mlmagics.serving` (ready: once /ready says so); all are stopped afterwards."""
    yield from _servers()


@pytest.fixture(scope="module")
def module_serve():
    """`serve` for module-scoped fixtures: its servers run until the module's last test."""
    yield from _servers()


def _app_with(tmp_path: Path, script_source: str, name: str = "score.py") -> Path:
    app = tmp_path / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / name).write_text(script_source)
    return app


@pytest.fixture(scope="session")
def app_with():
    """`app_with(folder, source, name="score.py")`: folder/app holding the script; returns folder/app."""
    return _app_with


# -- Docker ----------------------------------------------------------------------------------------------------------
# Docker Hub is unreachable from CI, so builds start FROM a base image built locally (.ci/base-image.sh);
# .ci/services.sh starts dockerd and the registry.
TEST_BASE = "mlmagics/test-base:bookworm"
REGISTRY = "127.0.0.1:5000"
# Per test run: two runs on one engine (two engineers, CI and a developer) must not retag each other's images.
TEST_REPO = f"mlmagics-test-{os.getpid()}"


@pytest.fixture(scope="module")
def docker_engine():
    """(client, base image): the Docker engine and the image test builds start FROM (MLMAGICS_BASE_IMAGE or the local
    test base). Missing either, the test is skipped, or fails under CI=true."""
    from mlmagics.core import TargetUnavailable
    from mlmagics.core.targets.docker.engine import engine

    try:
        client = engine()
    except TargetUnavailable as e:
        _unavailable(f"{e} (sudo bash .ci/services.sh starts one)")
    base = os.environ.get("MLMAGICS_BASE_IMAGE") or TEST_BASE
    try:
        client.images.get(base)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound, imported lazily
        _unavailable(f"the base image {base} is not on the engine (sudo bash .ci/base-image.sh builds it)")
    return client, base


@pytest.fixture(scope="session")
def registry() -> str:
    """The address of the open registry on 127.0.0.1:5000 (.ci/services.sh); skipped without it, or fails under CI=true."""
    try:
        requests.get(f"http://{REGISTRY}/v2/", timeout=3).raise_for_status()
    except requests.RequestException as e:
        _unavailable(f"no registry at http://{REGISTRY}/v2/ ({e}); sudo bash .ci/services.sh starts one")
    return REGISTRY


@pytest.fixture(scope="session")
def image_repo() -> str:
    """The repository this test run tags its images in (MLMAGICS_IMAGE_REPO), its own per run."""
    return TEST_REPO


# -- Kubernetes ------------------------------------------------------------------------------------------------------
# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles: every manifest must pass both.
SCHEMA_VERSIONS = ("1.25.0", "1.37.0")


@pytest.fixture(scope="session")
def validate_manifest():
    """`validate_manifest(manifest)`: validate against the official Kubernetes OpenAPI schemas bundled in
    kubernetes-validate, of the oldest and the newest version it has (strict: an unknown field is an error too)."""
    import kubernetes_validate

    def validate(manifest: dict, versions: tuple[str, ...] = SCHEMA_VERSIONS) -> None:
        for version in versions:
            kubernetes_validate.validate(manifest, version, strict=True)

    return validate


# -- notebooks' magics ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _magic_shell(workspace: Path | None = None, progress: str | None = "text"):
    """An IPython shell (the singleton, so rich display is captured; history off) with `%load_ext mlmagics`,
    its magics on `workspace` (None: $MLMAGICS_HOME) and `progress`; cleared afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "mlmagics")
        if workspace is not None:
            shell.run_line_magic("config", f"DeployMagics.workspace = {str(workspace)!r}")
        if progress is not None:
            shell.run_line_magic("config", f"DeployMagics.progress = {progress!r}")
        yield shell
    finally:
        InteractiveShell.clear_instance()


@pytest.fixture(scope="session")
def magic_shell():
    """`with magic_shell(workspace_path) as shell:` — a shell with mlmagics' magics loaded (see _magic_shell)."""
    return _magic_shell
