"""Two panels on two machines, one team workspace (PostgreSQL + S3): what one machine changes, the other's panel shows
within a poll. A machine here is a JupyterLab with a HOME of its own (its own cache of the workspace); the stores are
the ones .ci/services.sh starts. Network namespaces are the multi-machine notebook test's part
(tests/notebooks/test_team_workspace.py); this one is about the panels, in a real browser."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from mlmagics.core import Model, NotFoundError, Workspace
from tests import stores
from tests.lab.conftest import JupyterLab, lab_page, open_deployments_panel

pytestmark = pytest.mark.stores
postgres_uri, s3_uri = stores.postgres_uri, stores.s3_uri
POLL_S = 3  # the panel's poll interval (labextension/src/model.ts)


@pytest.fixture
def two_labs(browser, postgres_uri, s3_uri, tmp_path, free_port):
    """(the workspace, [(lab, page) of machine a, of machine b]) — both labs on one config file."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"metadata": postgres_uri, "artifacts": s3_uri}))
    with contextlib.ExitStack() as stack:
        machines = []
        for name in ("a", "b"):
            home = tmp_path / f"home-{name}"
            home.mkdir()
            env = {"HOME": str(home), "MLMAGICS_HOME": str(home / ".mlmagics")}
            lab = JupyterLab(tmp_path / f"lab-{name}", config, free_port(), env=env)
            stack.callback(lab.stop)
            machines.append((lab, stack.enter_context(lab_page(browser, lab))))
        yield Workspace(metadata=postgres_uri, artifacts=s3_uri, local=tmp_path / "here"), machines


def _within_a_poll(locator, state: str = "visible") -> float:
    started = time.monotonic()
    locator.wait_for(state=state, timeout=(2 * POLL_S + 4) * 1000)  # a poll, its answer, and a slow machine
    return time.monotonic() - started


def test_two_panels_on_two_machines_see_each_others_changes_within_a_poll(two_labs, tmp_path):
    ws, [(lab_a, page_a), (lab_b, page_b)] = two_labs
    panel_a, panel_b = open_deployments_panel(page_a), open_deployments_panel(page_b)
    for panel in (panel_a, panel_b):
        assert panel.locator(".jp-mlmagics-workspace").inner_text() == ws.display

    # a third machine (this process) registers: both panels show it, with who registered it
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"team weights")
    model = Model.register(ws, weights, "team-panel")
    rows = [panel.locator('[data-section="Models"] [data-id="team-panel:1"]') for panel in (panel_a, panel_b)]
    waited = [_within_a_poll(row) for row in rows]
    assert all(f"by {model.serialize()['createdByText']}" in row.inner_text() for row in rows), waited

    # machine a deletes it in its panel: machine b's panel drops it within a poll
    rows[0].get_by_role("button", name="Delete").click()
    page_a.locator(".jp-Dialog .jp-Dialog-button.jp-mod-warn").click()
    rows[0].wait_for(state="detached")
    waited.append(_within_a_poll(rows[1], state="detached"))
    with pytest.raises(NotFoundError):
        Model(ws, id="team-panel:1")
    print(f"seen by the other panel after {', '.join(f'{s:.1f}' for s in waited)} s")
