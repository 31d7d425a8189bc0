"""LocalWebservice.deploy_to_cloud: what a local service runs, deployed as it is to the Docker target (v1's ACI)."""

from __future__ import annotations

import pytest

from mlmagics import AciWebservice, Environment, InferenceConfig, LocalWebservice, Model, WebserviceException

SCORE = "import os\ndef init():\n    pass\ndef run(data):\n    return {'echo': data, 'mode': os.environ.get('MODE')}\n"


@pytest.mark.slow  # builds an image
def test_a_local_service_moves_to_the_docker_target_as_it_is(docker_ws, docker_client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "m.txt").write_text("m")
    env = Environment("cloud-env")
    env.environment_variables["MODE"] = "cloud"
    config = InferenceConfig(entry_script="score.py", environment=env)
    local = Model.deploy(docker_ws, "to-cloud", [Model.register(docker_ws, "m.txt", "m")], config,
                         LocalWebservice.deploy_configuration())  # fmt: skip
    local.wait_for_deployment()

    remote = local.deploy_to_cloud(name="to-cloud-aci", deployment_config=AciWebservice.deploy_configuration(cpu_cores=0.5))
    remote.wait_for_deployment()
    assert remote.image_id == local.image_id, "the same image: script, models and environment"
    assert remote.run("hi") == local.run("hi") == {"echo": "hi", "mode": "cloud"}
    local.delete()
    with pytest.raises(WebserviceException, match="The LocalWebservice is not deployable"):
        local.deploy_to_cloud()
