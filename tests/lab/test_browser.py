"""The Deployments panel in a real JupyterLab, through Debian's Chromium driven by Playwright: a service
deployed beforehand shows as Healthy, answers a Test, and is gone after Delete; the palette's deploy-form
command puts the form in a notebook. Screenshots land in .artifacts/screenshots/."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
import requests

from mlmagics.core import Model, NotFoundError, Webservice
from tests.lab.conftest import open_deployments_panel

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


def test_panel_shows_a_healthy_service_tests_it_and_deletes_it(page, lab_ws):
    from playwright.sync_api import expect

    started = time.monotonic()
    service = Webservice(lab_ws, "lab-echo")
    panel = open_deployments_panel(page)
    row = panel.locator('[data-service="lab-echo"]')
    row.locator('.jp-mlmagics-badge[data-state="Healthy"]').wait_for()
    assert panel.locator('[data-section="Models"] [data-id="tiny:1"]').is_visible()
    assert panel.locator('[data-section="Images"] [data-id="echo:1"]').is_visible()
    # who made what, where it runs, and which workspace the panel shows (a team's workspace needs all three)
    who = service.serialize()["createdByText"]
    assert who and f"local target of {socket.gethostname()}" in row.inner_text() and f"by {who}" in row.inner_text()
    model_by = Model(lab_ws, id="tiny:1").serialize()["createdByText"]
    assert f"by {model_by}" in panel.locator('[data-section="Models"] [data-id="tiny:1"]').inner_text()
    assert panel.locator(".jp-mlmagics-workspace").inner_text() == lab_ws.display

    row.click()
    detail = panel.locator('[data-detail="lab-echo"]')
    detail.wait_for()
    assert detail.locator(".jp-mlmagics-scoring-uri").inner_text() == service.scoring_uri
    primary = service.get_keys()[0]
    keys = detail.locator(".jp-mlmagics-key").all_inner_texts()
    assert len(keys) == 2 and primary not in keys and "••••" in keys[0], "keys are shown masked"
    page.wait_for_function("() => !document.querySelector('.jp-mlmagics-logs').textContent.includes('no log lines yet')")
    shot = screenshot(page, "lab-deployments.png")
    assert shot.read_bytes()[:8] == PNG_SIGNATURE

    detail.get_by_role("button", name="Test…").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("textarea.jp-mlmagics-test-body").fill('{"data": [1, 2, 3]}')
    dialog.get_by_role("button", name="Send").click()
    answer = dialog.locator(".jp-mlmagics-answer")
    answer.wait_for()
    assert '"model": "weights of tiny"' in answer.inner_text()
    assert '"data": [\n      1,' in answer.inner_text(), "the body went to the service as typed"
    assert re.fullmatch(r"\d+\.\d ms", dialog.locator(".jp-mlmagics-latency").inner_text())
    screenshot(page, "lab-deployments-test.png")
    body = dialog.locator("textarea.jp-mlmagics-test-body")
    body.fill('{"data": [42]}')
    body.press("Enter")  # a new line in the body: the dialog stays open
    body.press("Control+Enter")  # sends
    expect(answer).to_contain_text('"data": [\n      42\n    ]')
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached")

    detail.get_by_role("button", name="Delete").click()
    confirm = page.locator(".jp-Dialog")
    assert "Delete service lab-echo?" in confirm.inner_text()
    confirm.locator(".jp-Dialog-button.jp-mod-warn").click()
    row.wait_for(state="detached")
    assert "Deleted service lab-echo" in panel.locator(".jp-mlmagics-notice").inner_text()
    with pytest.raises(NotFoundError):
        Webservice(lab_ws, "lab-echo")
    with pytest.raises(requests.ConnectionError):
        requests.get(service.scoring_uri, timeout=2)
    print(f"panel flow (open, Healthy, detail, Test, Delete) in {time.monotonic() - started:.1f} s")


def test_a_refused_delete_shows_the_core_message_in_the_panel(page, lab_ws):
    panel = open_deployments_panel(page)
    panel.locator('[data-section="Models"] [data-id="tiny:1"]').get_by_role("button", name="Delete").click()
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-warn").click()
    notice = panel.locator(".jp-mlmagics-notice.jp-mlmagics-error")
    notice.wait_for()
    assert notice.inner_text().startswith("model tiny:1 is used by image echo:1; delete that image first")
    assert panel.locator('[data-id="tiny:1"]').is_visible(), "the model is still there"


def test_panel_polls_only_while_it_is_visible(page):
    polls: list[float] = []
    page.on("request", lambda request: "/mlmagics/deployments" in request.url and polls.append(time.monotonic()))
    open_deployments_panel(page)
    deadline = time.monotonic() + 10
    while len(polls) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(polls) >= 2, "the open panel polls every few seconds"
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="mlmagics-deployments"]').click()  # close it
    page.locator(".jp-mlmagics-panel").wait_for(state="hidden")
    closed_at = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == closed_at, "no polling while the panel is closed"
    open_deployments_panel(page)
    page.wait_for_timeout(1000)
    assert len(polls) > closed_at, "opening the panel loads at once"


def test_palette_command_opens_the_deploy_form_in_the_notebook(page):
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    page.locator(".jp-NotebookPanel").wait_for()
    page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for()  # the kernel is ready: a run now really runs
    page.keyboard.press("Control+Shift+C")
    palette = page.locator("#command-palette")
    palette.locator("input").fill("mlmagics: Open deploy form")
    palette.locator(".lm-CommandPalette-item", has_text="mlmagics: Open deploy form").click()
    cell = page.locator(".jp-Notebook .jp-Cell", has_text="%deploy_form")
    assert cell.locator(".jp-InputArea-editor").inner_text().split() == ["%load_ext", "mlmagics", "%deploy_form"]
    assert page.locator(".jp-Notebook .jp-Cell").count() == 1, "the empty first cell was used"
    cell.locator(".widget-button", has_text="Deploy").wait_for()
    assert "echo:1" in cell.locator(".widget-dropdown select").first.inner_text(), "the kernel sees the same workspace"
    screenshot(page, "lab-deploy-form.png")
