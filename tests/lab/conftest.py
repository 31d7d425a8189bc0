"""A real JupyterLab for browser tests: started on 127.0.0.1 with the mlmagics extension, driven by
Debian's Chromium through Playwright (never a downloaded browser), always stopped afterwards."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlmagics.core import LocalWebservice, Webservice, Workspace

TIMEOUT_MS = 30_000
CHROMIUM = Path("/usr/bin/chromium")
# As root in a sandbox without network: no sandbox, no GPU, no calls home (they would be refused, many at a time).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def built_labextension() -> Path | None:
    """The installed (prebuilt) labextension of mlmagics in this environment, if there is one."""
    folder = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "mlmagics"
    return folder if list((folder / "static").glob("remoteEntry.*.js")) else None


class JupyterLab:
    """`jupyter lab` in its own process group, with a fresh root, workspaces and config folder."""

    def __init__(
        self, folder: Path, workspace: Path, port: int, startup_timeout: float = 90.0, env: dict[str, str] | None = None
    ) -> None:
        """`workspace`: a workspace folder or a team's config file; `env`: what to set besides (another HOME)."""
        self.port = port
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "jupyterlab.log"
        for sub in ("root", "workspaces", "config", "runtime"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            "--allow-root",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={folder / 'root'}",
            f"--LabApp.workspaces_dir={folder / 'workspaces'}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--MlmagicsServer.workspace={workspace}",
        ]
        # no "get notified about Jupyter news?" toast over the screenshots
        (folder / "config" / "labconfig").mkdir(exist_ok=True)
        (folder / "config" / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(folder / "config"),
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
            "MLMAGICS_HOME": str(workspace),  # for the kernels: %deploy_form shows the same workspace
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_until_up(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/api/status", params={"token": self.token}, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL to the whole group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # kernels or anything else left in the group
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test in this folder drives a browser (pytest calls this hook with the conftest files of the test's own
    folder, so it marks this folder's tests only)."""
    item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def lab_ws(tmp_path_factory, echo_image):
    """A workspace with one Healthy local service, lab-echo, deployed with the core before Lab starts."""
    folder = tmp_path_factory.mktemp("lab-browser")
    ws = Workspace(folder / "ws")
    image = echo_image(ws, folder / "app")
    config = LocalWebservice.deploy_configuration(auth_enabled=True)
    Webservice.deploy_from_image(ws, "lab-echo", image, config).wait_for_deployment()
    yield ws
    for service in Webservice.list(ws):
        service.delete()


@pytest.fixture(scope="module")
def browser(unavailable):
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    if importlib.util.find_spec("playwright") is None:
        unavailable("the playwright package is missing: pip install -e '.[test]'")
    if importlib.util.find_spec("jupyterlab") is None:
        unavailable("jupyterlab is missing: pip install -e '.[test]'")
    if built_labextension() is None:
        unavailable("the JupyterLab extension is not built: pip install -e . without HATCH_JUPYTER_BUILDER_SKIP_NPM=1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def lab(browser, lab_ws, tmp_path_factory, free_port):
    """`jupyter lab` with the mlmagics extensions on lab_ws, stopped after the module's last test."""
    started = time.monotonic()
    server = JupyterLab(tmp_path_factory.mktemp("jupyterlab"), lab_ws.path, free_port())
    print(f"\njupyter lab up in {time.monotonic() - started:.1f} s")
    yield server
    server.stop()


@contextlib.contextmanager
def lab_page(browser, lab: JupyterLab) -> Iterator:
    """`lab` loaded in a fresh browser context; uncaught page errors fail the test when it ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.monotonic()
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")  # reset: no layout saved by an earlier test
    page.locator("#jp-main-dock-panel").wait_for()
    page.locator(".jp-Launcher").wait_for()
    print(f"JupyterLab ready in the browser in {time.monotonic() - started:.1f} s")
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}\nserver log:\n{lab.log_tail()}"


def open_deployments_panel(page):
    """Click the Deployments tab in the left sidebar; the panel, once shown."""
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="mlmagics-deployments"]').click()
    panel = page.locator(".jp-mlmagics-panel")
    panel.wait_for()
    return panel


@pytest.fixture
def page(browser, lab):
    """JupyterLab loaded in a fresh browser context; uncaught page errors fail the test."""
    with lab_page(browser, lab) as page:
        yield page
