"""ipywidgets faces over the same core: a deploy form, a service view, a progress display.

    from mlmagics.widgets import DeployForm, ServiceView
    DeployForm(ws)                  # or %deploy_form
    ServiceView(ws, "mnist")        # state, URIs, keys, logs, and a test form typed from the swagger

They work headlessly too (set `.value`, call `.click()`), which is how they are tested.
Output from callbacks goes through `Output.append_*`, never `with out:` (that captures
nothing outside a kernel and everything from other threads inside one).
"""

from __future__ import annotations

import json
import time
from typing import Any

import ipywidgets as w
from IPython.display import display

from mlmagics import arguments
from mlmagics import display as show
from mlmagics.core import DeploymentPlan, Image, Model, Webservice, target_class
from mlmagics.core.deploy import deploy
from mlmagics.core.errors import MlmagicsError, UserError
from mlmagics.core.services import validate_service_name


class WidgetProgress:
    """The core's progress interface as a bar, a stage label and a live log area."""

    def __init__(self, show_logs: bool = True, max_lines: int = 400) -> None:
        self.show_logs = show_logs
        self.max_lines = max_lines
        self.label = w.HTML("")
        self.bar = w.IntProgress(min=0, max=1, value=0, bar_style="info", layout=w.Layout(width="40%"))
        self.out = w.Output(layout=w.Layout(max_height="16em", overflow="auto"))
        self.widget = w.VBox([w.HBox([self.bar, self.label]), self.out])
        self.lines: list[str] = []
        self.stages: list[str] = []
        self.outcome: tuple[bool, str] | None = None

    def stage(self, name: str, total: int | None = None) -> None:
        self.stages.append(name)
        self.label.value = f"<b>{show.esc(name)}</b>"
        self.bar.max = total or 1
        self.bar.value = 0
        self.bar.bar_style = "info"

    def advance(self, n: int = 1) -> None:
        self.bar.value = min(self.bar.max, self.bar.value + n)

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self.show_logs and len(self.lines) <= self.max_lines:
            self.out.append_stdout(line.rstrip("\n") + "\n")

    def done(self, ok: bool, message: str = "") -> None:
        self.outcome = (ok, message)
        self.bar.value = self.bar.max
        self.bar.bar_style = "success" if ok else "danger"
        self.label.value = show.esc(message.splitlines()[0] if message else ("Done" if ok else "Failed"))

    def _ipython_display_(self) -> None:
        display(self.widget)


def _choices(items: list[Any], empty: str) -> list[tuple[str, str]]:
    return [(item.id, item.id) for item in items] or [(empty, "")]


class DeployForm:
    """Deploy a model or an image from the workspace: pick, set the target's settings, Deploy.

    Headless use (tests, scripts): `form.name.value = "mnist"; form.image.value = "myimage:1";
    form.deploy_button.click()` — then `form.service` is the deployed service.
    """

    def __init__(self, workspace: Any, default_target: str | None = None) -> None:
        """`default_target`: the target the form starts with, by any of its names (default: the core's default)."""
        self.workspace = workspace
        self.service: Any = None
        self.error: str | None = None
        style = {"description_width": "9em"}
        self.name = w.Text(description="Service name", placeholder="3-32 chars: a-z, 0-9, -", style=style)
        self.source = w.ToggleButtons(
            options=[("an image", "image"), ("a model + script", "model")], value="image", description="Deploy", style=style
        )
        self.image = w.Dropdown(options=_choices(Image.list(workspace), "(no images yet)"), description="Image", style=style)
        self.model = w.Dropdown(options=_choices(Model.list(workspace), "(no models yet)"), description="Model", style=style)
        self.script = w.Text(value="score.py", description="Script", style=style)
        targets = arguments.targets()  # the default first
        self.target_descriptions = {name: description for name, _, description in targets}
        self.target = w.Dropdown(
            options=[(arguments.target_label(name), name) for name, _, _ in targets],
            value=target_class(default_target).compute_type.lower() if default_target else targets[0][0],
            description="Target",
            style=style,
        )
        # settings; which ones show depends on the target
        self.auth = w.Checkbox(value=False, description="Require a key (auth)", style=style)
        self.port = w.BoundedIntText(value=0, min=0, max=65535, description="Port (0: any)", style=style)
        self.timeout_ms = w.BoundedIntText(value=60000, min=1, max=3_600_000, description="Timeout (ms)", style=style)
        self.cpu = w.BoundedFloatText(value=0.1, min=0.01, max=64, step=0.1, description="CPU cores", style=style)
        self.memory = w.BoundedFloatText(value=0.5, min=0.01, max=512, step=0.1, description="Memory (GB)", style=style)
        self.autoscale = w.IntRangeSlider(value=(1, 10), min=1, max=50, description="Replicas", style=style)
        self.utilization = w.BoundedIntText(value=70, min=1, max=100, description="Target util. (%)", style=style)
        self.dry_run = w.Checkbox(value=True, description="Dry run (write manifests)", style=style)
        self.settings_box = w.VBox()
        self.deploy_button = w.Button(description="Deploy", button_style="primary", icon="rocket", disabled=True)
        self.status = w.HTML("")
        self.progress = WidgetProgress()
        self.result = w.Output()
        self.widget = w.VBox(
            [
                self.name,
                self.source,
                self.image,
                self.model,
                self.script,
                self.target,
                self.settings_box,
                w.HBox([self.deploy_button, self.status]),
                self.progress.widget,
                self.result,
            ]
        )
        for control in (self.name, self.source, self.image, self.model, self.script):
            control.observe(self._validate, names="value")
        self.target.observe(self._show_settings, names="value")
        self.source.observe(self._show_source, names="value")
        self.deploy_button.on_click(self._deploy)
        self._show_settings()
        self._show_source()
        self._validate()

    # -- the form's logic ---------------------------------------------------------------------------------
    def _show_source(self, change: Any = None) -> None:
        by_image = self.source.value == "image"
        self.image.layout.display = None if by_image else "none"
        self.model.layout.display = "none" if by_image else None
        self.script.layout.display = "none" if by_image else None
        self._validate()

    def _show_settings(self, change: Any = None) -> None:
        target = self.target.value
        self.target.tooltip = self.target_descriptions[target]
        shared = [self.auth, self.timeout_ms]
        if target == "local":
            self.auth.value = False
            self.settings_box.children = [*shared, self.port]
        elif target == "docker":
            self.auth.value = True
            self.settings_box.children = [*shared, self.cpu, self.memory, self.port]
        else:
            self.auth.value = True
            self.settings_box.children = [*shared, self.cpu, self.memory, self.autoscale, self.utilization, self.dry_run]

    def _validate(self, change: Any = None) -> None:
        problem = ""
        try:
            validate_service_name(self.name.value)
        except UserError as e:
            problem = e.message if self.name.value else "give the service a name"
        if not problem and self.source.value == "image" and not self.image.value:
            problem = "no image to deploy: create one (%build_image) or choose a model + script"
        if not problem and self.source.value == "model" and not (self.model.value and self.script.value):
            problem = "choose a model and a scoring script"
        self.deploy_button.disabled = bool(problem)
        self.status.value = f"<span style='color:var(--jp-ui-font-color2,#666)'>{show.esc(problem)}</span>"

    def settings(self) -> dict[str, Any]:
        """The deploy configuration the form stands for (v1 parameter names)."""
        target = self.target.value
        out: dict[str, Any] = {"auth_enabled": self.auth.value, "scoring_timeout_ms": self.timeout_ms.value}
        if target in ("local", "docker") and self.port.value:
            out["port"] = self.port.value
        if target in ("docker", "kubernetes"):
            out.update(cpu_cores=self.cpu.value, memory_gb=self.memory.value)
        if target == "kubernetes":
            low, high = self.autoscale.value
            out.update(
                autoscale_enabled=True,
                autoscale_min_replicas=low,
                autoscale_max_replicas=high,
                autoscale_target_utilization=self.utilization.value,
                dry_run=self.dry_run.value,
            )
        return out

    def _deploy(self, button: Any = None) -> None:
        self.deploy_button.disabled = True
        self.error = None
        self.result.outputs = ()
        try:
            source = (
                {"image": self.image.value}
                if self.source.value == "image"
                else {"models": [self.model.value], "script": self.script.value}
            )
            self.service = deploy(
                self.workspace, self.name.value, target=self.target.value, progress=self.progress, **source, **self.settings()
            )
            planned = isinstance(self.service, DeploymentPlan)  # a dry run: the manifests are the result
            card = show.ManifestPlan.of(self.service) if planned else show.service_card(self.service)
            self.result.append_display_data(card)
        except MlmagicsError as e:
            self.error = e.message
            self.result.append_stderr(e.message + "\n")
            if self.progress.outcome is None or self.progress.outcome[0]:
                self.progress.done(False, e.message)
        finally:
            self._validate()

    def _ipython_display_(self) -> None:
        display(self.widget)


def _field_for(name: str, schema: dict) -> w.Widget:
    """A widget typed from a swagger property: numbers, integers, text, booleans, JSON for the rest."""
    kind, example = schema.get("type"), schema.get("example")
    layout = {"description_width": "10em"}
    if kind == "integer":
        return w.IntText(value=int(example or 0), description=name, style=layout)
    if kind == "number":
        return w.FloatText(value=float(example or 0), description=name, style=layout)
    if kind == "boolean":
        return w.Checkbox(value=bool(example), description=name, style=layout)
    if kind == "string" and schema.get("format") not in ("date-time", "byte", "binary"):
        return w.Text(value=str(example or ""), description=name, style=layout)
    return w.Textarea(
        value=json.dumps(example) if example is not None else "",
        description=name,
        layout=w.Layout(width="60%", height="5em"),
        style=layout,
    )


class ServiceView:
    """One service: state, URIs, keys (masked; reveal on demand), logs, and a test form whose
    fields are typed from the service's swagger input schema."""

    def __init__(self, workspace: Any, name: str) -> None:
        self.service = Webservice(workspace, name)
        self.last_answer: Any = None
        self.header = w.HTML()
        self.reveal = w.ToggleButton(value=False, description="Reveal keys", icon="eye")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.logs = w.Output(layout=w.Layout(max_height="15em", overflow="auto", border="1px solid var(--jp-border-color2)"))
        self.fields: dict[str, w.Widget] = {}
        self.raw_body = w.Textarea(description="Body (JSON)", layout=w.Layout(width="80%", height="6em"))
        self.test_button = w.Button(description="Test", button_style="primary", icon="play")
        self.answer = w.Output()
        self.form = w.VBox()
        self.reveal.observe(lambda change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda button: self.refresh())
        self.test_button.on_click(self._test)
        self.widget = w.VBox(
            [
                w.HBox([self.refresh_button, self.reveal]),
                self.header,
                w.HTML("<b>Test</b>"),
                self.form,
                self.test_button,
                self.answer,
                w.HTML("<b>Last log lines</b>"),
                self.logs,
            ]
        )
        self.refresh()
        self._build_form()

    def refresh(self) -> None:
        self.service.update_deployment_state()
        self.header.value = show.service_card(self.service, reveal_keys=self.reveal.value)._repr_html_()
        self.logs.outputs = ()
        self.logs.append_stdout("\n".join(show.LogView(self.service.name, self.service.get_logs(30).splitlines()).readable()))

    def _swagger(self) -> dict:
        try:
            return self.service.get_swagger(timeout=10)
        except (MlmagicsError, ValueError):  # no schema to type the form from: a plain body field instead
            return {}

    def _build_form(self) -> None:
        schema = (self._swagger().get("definitions") or {}).get("ServiceInput", {})
        properties = schema.get("properties") or {}
        example = schema.get("example") or {}
        typed = {name: {**prop, "example": example.get(name, prop.get("example"))} for name, prop in properties.items()}
        self.fields = {name: _field_for(name, prop) for name, prop in typed.items()}
        self.form.children = list(self.fields.values()) or [self.raw_body]

    def body(self) -> str:
        if not self.fields:
            return self.raw_body.value
        values = {}
        for name, field in self.fields.items():
            if isinstance(field, w.Textarea):
                try:
                    values[name] = json.loads(field.value) if field.value.strip() else None
                except ValueError as e:
                    raise MlmagicsError(f"{name}: not valid JSON ({e})") from None
            else:
                values[name] = field.value
        return json.dumps(values)

    def _test(self, button: Any = None) -> None:
        self.answer.outputs = ()
        started = time.perf_counter()
        try:
            answer = self.service.run(self.body())
            self.last_answer = answer
            result = show.TestResult(self.service.name, 200, (time.perf_counter() - started) * 1000, answer)
        except MlmagicsError as e:
            self.last_answer = None
            result = show.TestResult(self.service.name, 0, (time.perf_counter() - started) * 1000, None, e.message)
        self.answer.append_display_data(result)

    def _ipython_display_(self) -> None:
        display(self.widget)
