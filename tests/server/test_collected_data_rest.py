"""DELETE /mlmagics/services/NAME keeps what the service collected and says where; ?deleteCollectedData=true
removes it too."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from mlmagics.core import LocalWebservice, Webservice, Workspace


@pytest.fixture(scope="module")
def lab_workspace(tmp_path_factory, echo_image, collecting_script):
    folder = tmp_path_factory.mktemp("collected")
    ws = Workspace(folder / "ws")
    image = echo_image(ws, folder / "app", name="collecting", script=collecting_script)
    for name in ("kept-api", "gone-api"):
        service = Webservice.deploy_from_image(ws, name, image, LocalWebservice.deploy_configuration(collect_model_data=True))
        service.wait_for_deployment()
        service.run({"data": [[1, 2]]})
    yield ws
    for service in Webservice.list(ws):
        service.delete(delete_collected_data=True)


async def test_a_deleted_services_data_stays_unless_asked(jp_fetch, lab_workspace):
    kept = lab_workspace.path / "collected" / "kept-api"
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("mlmagics", "services", "kept-api", method="DELETE", params={"deleteCollectedData": "yes"})
    assert caught.value.code == 400 and "deleteCollectedData must be true or false" in caught.value.response.body.decode()
    answer = json.loads((await jp_fetch("mlmagics", "services", "kept-api", method="DELETE")).body)
    assert answer == {
        "message": f"Deleted service kept-api\nThe data kept-api collected stays in {kept} (?deleteCollectedData=true removes it)"
    }
    assert any(kept.rglob("*.jsonl"))
    gone = lab_workspace.path / "collected" / "gone-api"
    params = {"deleteCollectedData": "true"}
    answer = json.loads((await jp_fetch("mlmagics", "services", "gone-api", method="DELETE", params=params)).body)
    assert answer == {"message": "Deleted service gone-api and the data it collected"} and not gone.exists()
