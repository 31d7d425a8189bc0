"""The widgets, headless: set `.value`, `.click()`, then look at the workspace and the outputs."""

from __future__ import annotations

from mlmagics.core import Webservice
from mlmagics.widgets import DeployForm, ServiceView, WidgetProgress


def test_deploy_form_deploys_the_chosen_image_with_live_progress(ws, tmp_path, echo_image):
    echo_image(ws, tmp_path / "app")
    form = DeployForm(ws)
    assert form.deploy_button.disabled, "no name yet"
    assert "give the service a name" in form.status.value
    form.name.value = "Bad_Name"
    assert form.deploy_button.disabled and "is not valid" in form.status.value
    form.name.value = "form-svc"
    assert [o[1] for o in form.image.options] == ["echo:1"]
    assert not form.deploy_button.disabled
    form.deploy_button.click()
    assert form.error is None, form.error
    service = Webservice(ws, "form-svc")
    assert (service.state, service.image_id) == ("Healthy", "echo:1")
    assert form.progress.stages[0] == "Deploying echo:1 as form-svc (Local)"
    assert form.progress.outcome[0] and form.progress.bar.bar_style == "success"
    assert any("server process" in line for line in form.progress.lines), "log lines shown live"
    card = form.result.outputs[0]["data"]
    assert "Service form-svc" in card["text/plain"] and "Healthy" in card["text/html"]
    assert service.run("{}")["version"] == "v1"


def test_deploy_form_shows_each_targets_settings(ws, tmp_path):
    form = DeployForm(ws)
    assert form.port in form.settings_box.children and form.cpu not in form.settings_box.children
    form.target.value = "docker"
    assert form.cpu in form.settings_box.children and form.auth.value is True, "auth on by default for containers"
    form.target.value = "kubernetes"
    assert form.autoscale in form.settings_box.children and form.dry_run in form.settings_box.children
    form.autoscale.value = (2, 6)
    settings = form.settings()
    assert settings["autoscale_min_replicas"] == 2 and settings["autoscale_max_replicas"] == 6 and settings["dry_run"]


def test_deploy_form_from_a_model_and_script_reports_a_failure_and_recovers(ws, tmp_path, monkeypatch, echo_image, failing_init):
    image = echo_image(ws, tmp_path / "app", script=failing_init)
    monkeypatch.chdir(tmp_path / "app")
    form = DeployForm(ws)
    form.source.value = "model"
    assert form.image.layout.display == "none" and form.model.layout.display is None
    form.model.value = image.model_ids[0]
    form.name.value = "broken-form"
    form.deploy_button.click()
    assert "init() raised RuntimeError: the model file is corrupt" in form.error
    assert form.progress.bar.bar_style == "danger"
    assert form.result.outputs[0]["name"] == "stderr"
    assert not form.deploy_button.disabled, "the button is usable again"


def test_service_view_builds_a_typed_test_form_from_the_swagger(ws, tmp_path, monkeypatch, echo_image, schema_script):
    import ipywidgets as w

    from mlmagics.core.deploy import deploy

    image = echo_image(ws, tmp_path / "app", name="schema", script=schema_script)
    deploy(ws, "schema-view", image=image, auth_enabled=True)
    view = ServiceView(ws, "schema-view")
    assert set(view.fields) == {"data", "scale"}
    assert isinstance(view.fields["scale"], w.FloatText) and isinstance(view.fields["data"], w.Textarea)
    assert view.fields["data"].value == "[[1.0, 2.0]]", "prefilled with the schema's example"
    assert "••••" in view.header.value and "Healthy" in view.header.value
    view.reveal.value = True
    assert view.service.get_keys()[0] in view.header.value
    view.fields["data"].value = "[[1, 2], [3, 4]]"
    view.fields["scale"].value = 10.0
    view.test_button.click()
    assert view.last_answer == [{"row": 0, "total": 30.0}, {"row": 1, "total": 70.0}]
    assert "200" in view.answer.outputs[0]["data"]["text/plain"]
    view.fields["data"].value = "[[1, 2, 3]]"  # wrong shape: the service answers 500
    view.test_button.click()
    assert view.last_answer is None and "Response Code: 500" in view.answer.outputs[0]["data"]["text/plain"]
    assert any("calling init()" in o.get("text", "") for o in view.logs.outputs)


def test_widget_progress_renders_the_core_protocol():
    progress = WidgetProgress()
    progress.stage("Building", total=3)
    progress.advance()
    progress.log("Step 1/3")
    assert (progress.bar.value, progress.bar.max) == (1, 3)
    assert progress.out.outputs[0]["text"] == "Step 1/3\n"
    progress.done(False, "step 2 failed\ndetails")
    assert progress.bar.bar_style == "danger" and progress.label.value == "step 2 failed"
