"""What the notebook faces show: small result objects with a text `__repr__` and an HTML
`_repr_html_` (so the same object reads well in a terminal, a notebook and a papermill log).

Styling uses JupyterLab's CSS variables, so it follows the theme (light or dark).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmagics.serving.logs import readable

_BADGE_COLOURS = {
    "Healthy": "var(--jp-success-color1, #388e3c)",
    "Transitioning": "var(--jp-warn-color1, #f57c00)",
    "Unhealthy": "var(--jp-error-color1, #d32f2f)",
    "Failed": "var(--jp-error-color1, #d32f2f)",
    "Succeeded": "var(--jp-success-color1, #388e3c)",
}
_BOX = (
    "font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px); "
    "border: 1px solid var(--jp-border-color2, #ccc); border-radius: 4px; padding: 8px 12px; margin: 4px 0;"
)


def esc(value: Any) -> str:
    return html.escape(str(value))


def badge(state: str) -> str:
    colour = _BADGE_COLOURS.get(state, "var(--jp-layout-color3, #888)")
    return (
        f'<span class="mlmagics-badge" style="background:{colour};color:white;border-radius:8px;'
        f'padding:1px 8px;font-size:0.9em">{esc(state)}</span>'
    )


def mask(key: str) -> str:
    """'abcdefgh12345678' -> 'abcd••••••••5678' (enough to tell keys apart, not to use them)."""
    return key[:4] + "•" * 8 + key[-4:] if len(key) > 8 else "•" * len(key)


def table_html(rows: list[list[Any]], header: list[str], raw_columns: set[int] = frozenset()) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding:2px 8px'>{cell if i in raw_columns else esc(cell)}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table class='mlmagics-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_text(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


@dataclass
class Message:
    """One sentence, e.g. 'Registered model sklearn_mnist:3'."""

    text: str
    ok: bool = True

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        colour = "var(--jp-success-color1, #388e3c)" if self.ok else "var(--jp-error-color1, #d32f2f)"
        return f"<div style='color:{colour}'>{esc(self.text)}</div>"


@dataclass
class Problems:
    """The pre-flight check's findings for a scoring script, as a short list."""

    path: str
    action: str  # "Writing", "Overwriting", "Appending to"
    problems: list[Any] = field(default_factory=list)
    style: str = "text"

    @property
    def errors(self) -> list[Any]:
        return [p for p in self.problems if p.level == "error"]

    def __repr__(self) -> str:
        lines = [f"{self.action} {self.path}"]
        if not self.problems:
            lines.append(f"  checked: init() and run() look right (run() takes {self.style} input)")
        lines += [f"  {'✗' if p.level == 'error' else '⚠'} {p}" for p in self.problems]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        items = "".join(
            f"<li style='color:{'var(--jp-error-color1,#d32f2f)' if p.level == 'error' else 'var(--jp-warn-color1,#f57c00)'}'>"
            f"{'✗' if p.level == 'error' else '⚠'} {esc(p)}</li>"
            for p in self.problems
        )
        status = (
            f"<ul style='margin:4px 0'>{items}</ul>"
            if self.problems
            else f" — checked: <code>init()</code> and <code>run()</code> look right (run() takes {esc(self.style)} input)"
        )
        return f"<div class='mlmagics-problems'>{esc(self.action)} <code>{esc(self.path)}</code>{status}</div>"


@dataclass
class Card:
    """A titled list of fields: a registered model, a created image, a deployed service."""

    title: str
    fields: list[tuple[str, str]]
    state: str | None = None
    html_fields: set[str] = field(default_factory=set)  # values already HTML (links, badges)
    footer: str = ""

    def __repr__(self) -> str:
        width = max((len(k) for k, _ in self.fields), default=0)
        lines = [self.title + (f" [{self.state}]" if self.state else "")]
        lines += [f"  {k.ljust(width)}  {_strip_html(v) if k in self.html_fields else v}" for k, v in self.fields]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='padding:1px 12px 1px 0;color:var(--jp-ui-font-color2,#666)'>{esc(k)}</td>"
            f"<td style='padding:1px 0'>{v if k in self.html_fields else esc(v)}</td></tr>"
            for k, v in self.fields
        )
        state = f" {badge(self.state)}" if self.state else ""
        footer = f"<pre style='margin:6px 0 0;max-height:20em;overflow:auto'>{esc(self.footer)}</pre>" if self.footer else ""
        return f"<div class='mlmagics-card' style='{_BOX}'><b>{esc(self.title)}</b>{state}<table>{rows}</table>{footer}</div>"


def _strip_html(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def _created_by(item: Any) -> str:
    """'ana@ana-laptop (train.ipynb)': who made a model, image or service (core/provenance.py), '' if not recorded."""
    from mlmagics.core.provenance import describe  # display.py stays importable without the core's dependencies

    return describe(getattr(item, "created_by", None))


def model_card(model: Any) -> Card:
    return Card(
        f"Registered model {model.id}",
        [
            ("path", str(model.path)),
            ("size", f"{model.size:,} bytes"),
            ("tags", ", ".join(f"{k}={v}" for k, v in model.tags.items()) or "—"),
            ("description", model.description or "—"),
            ("source", model.source or "—"),
            ("created by", _created_by(model) or "—"),
        ],
    )


def image_card(image: Any) -> Card:
    env = image.spec.get("environment", {})
    fields = [
        ("models", ", ".join(image.model_ids) or "—"),
        ("script", image.execution_script),
        ("runtime", image.runtime),
        ("run() input", image.spec.get("input_style", "text")),
        (
            "environment",
            f"python {env.get('python')} · {env.get('source')} · {', '.join(env.get('requirements', [])) or 'no requirements'}",
        ),
    ]
    if image.image_location:
        fields.append(("docker image", image.image_location))
    footer = "\n".join(f"⚠ {w}" for w in image.warnings)
    return Card(f"Image {image.id}", fields, state=image.creation_state, footer=footer)


def service_card(service: Any, reveal_keys: bool = False) -> Card:
    fields = [("target", service.compute_type), ("image", service.image_id)]
    html_fields = set()
    if service.scoring_uri:
        fields.append(("scoring URI", f"<a href='{esc(service.scoring_uri)}' target='_blank'>{esc(service.scoring_uri)}</a>"))
        fields.append(("swagger URI", f"<a href='{esc(service.swagger_uri)}' target='_blank'>{esc(service.swagger_uri)}</a>"))
        html_fields |= {"scoring URI", "swagger URI"}
    if service.auth_enabled:
        primary, secondary = service.get_keys()
        fields.append(("keys", f"{primary if reveal_keys else mask(primary)} / {secondary if reveal_keys else mask(secondary)}"))
    else:
        fields.append(("keys", "auth off"))
    footer = service.error or ""
    return Card(f"Service {service.name}", fields, state=service.state, html_fields=html_fields, footer=footer)


def services_table(services: list[Any]) -> ServicesTable:
    return ServicesTable([[s.name, s.runs_on(), s.image_id, s.state, s.scoring_uri or "", _created_by(s)] for s in services])


@dataclass
class ServicesTable:
    rows: list[list[str]]
    header: tuple[str, ...] = ("name", "runs on", "image", "state", "scoring URI", "created by")

    def __repr__(self) -> str:
        return table_text(self.rows, list(self.header)) if self.rows else "No services in this workspace."

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<i>No services in this workspace.</i>"
        rows = [[r[0], r[1], r[2], badge(r[3]), f"<a href='{esc(r[4])}'>{esc(r[4])}</a>" if r[4] else "", r[5]]
                for r in self.rows]  # fmt: skip
        return table_html(rows, list(self.header), raw_columns={3, 4})


@dataclass
class LogView:
    """A service's log, JSON lines made readable (time, level, logger, message, traceback)."""

    name: str
    lines: list[str]

    def readable(self) -> list[str]:
        return readable(self.lines)

    def __repr__(self) -> str:
        return "\n".join(self.readable())

    def _repr_html_(self) -> str:
        return (
            f"<div style='{_BOX}'><b>Logs of {esc(self.name)}</b>"
            f"<pre style='max-height:25em;overflow:auto;margin:4px 0'>{esc(chr(10).join(self.readable()))}</pre></div>"
        )


def render_answer_html(answer: Any) -> str:
    """A list of rows or records as a table, anything else as JSON."""
    value = answer
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return f"<pre>{esc(value)}</pre>"
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        header = list(dict.fromkeys(k for r in value for k in r))
        return table_html([[r.get(k, "") for k in header] for r in value[:200]], header)
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        width = max(len(r) for r in value)
        return table_html([list(r) for r in value[:200]], [str(i) for i in range(width)])
    if isinstance(value, list):
        return table_html([[i, v] for i, v in enumerate(value[:200])], ["#", "value"])
    return f"<pre>{esc(json.dumps(value, indent=2) if not isinstance(value, bytes) else value)}</pre>"


@dataclass
class TestResult:
    """One scoring call: status, latency, answer."""

    service: str
    status: int
    latency_ms: float
    answer: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def __repr__(self) -> str:
        head = f"{self.service}: {self.status} in {self.latency_ms:.1f} ms"
        return f"{head}\n{self.error or _answer_text(self.answer)}"

    def _repr_html_(self) -> str:
        state = "Healthy" if self.ok else "Failed"
        note = ""
        if isinstance(self.answer, str) and _is_json(self.answer):
            note = (
                "<div style='color:var(--jp-ui-font-color2,#666)'>run() returned a JSON string, which v1 encodes "
                "once more (decoded here)</div>"
            )
        body = f"<pre>{esc(self.error)}</pre>" if self.error else render_answer_html(self.answer)
        return (
            f"<div style='{_BOX}'>{badge(state)} <b>{self.status}</b> from <b>{esc(self.service)}</b> in "
            f"{self.latency_ms:.1f} ms{note}{body}</div>"
        )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _answer_text(answer: Any) -> str:
    if isinstance(answer, bytes):
        return repr(answer[:200])
    return json.dumps(answer, indent=2) if not isinstance(answer, str) else answer


@dataclass
class BenchResult:
    """N scoring calls: latency percentiles and a histogram."""

    service: str
    latencies_ms: list[float]
    errors: int
    seconds: float
    concurrency: int
    batch_rows: list[int] = field(default_factory=list)  # per answer, the rows its run() call held (batching on)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.service}: {len(self.latencies_ms)} requests ({self.errors} errors) with {self.concurrency} at once "
            f"in {self.seconds:.2f} s — {self.rps:.0f} req/s, p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms"
            + (f"; batched: {len(self.batch_rows)} answers from calls of {min(self.batch_rows)}–{max(self.batch_rows)} rows "
               f"(median {sorted(self.batch_rows)[len(self.batch_rows) // 2]})" if self.batch_rows else "")
        )  # fmt: skip

    def figure(self):
        import matplotlib  # the [lab] extra, and slow to import: only when a histogram is drawn

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        ax.hist(self.latencies_ms, bins=min(50, max(5, len(self.latencies_ms) // 5)), color="#4c72b0")
        for value, label, style in ((self.p50, "p50", "--"), (self.p99, "p99", ":")):
            ax.axvline(value, color="black", linestyle=style, label=f"{label} {value:.2f} ms")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("requests")
        ax.set_title(f"{self.service}: {len(self.latencies_ms)} requests, {self.concurrency} at once")
        ax.legend()
        fig.tight_layout()
        plt.close(fig)
        return fig

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        try:
            image = f"<img src='data:image/png;base64,{base64.b64encode(self.png()).decode()}'/>"
        except ImportError:  # matplotlib comes with the lab extra
            image = "<i>the latency histogram needs matplotlib: pip install 'mlmagics[lab]'</i>"
        return f"<div style='{_BOX}'>{esc(self.summary())}<br>{image}</div>"


@dataclass
class SwaggerView:
    """A service's swagger, rendered: routes, then input and output schemas with their examples."""

    service: str
    document: dict

    def _schemas(self) -> tuple[dict, dict]:
        defs = self.document.get("definitions") or self.document.get("components", {}).get("schemas", {})
        return defs.get("ServiceInput", {}), defs.get("ServiceOutput", {})

    @staticmethod
    def _rows(schema: dict) -> list[list[str]]:
        props = schema.get("properties")
        if not props:
            return [["(body)", _type_of(schema), json.dumps(schema.get("example", ""))[:80]]]
        example = schema.get("example", {})
        return [[name, _type_of(p), json.dumps(example.get(name, p.get("example", "")))[:80]] for name, p in props.items()]

    def __repr__(self) -> str:
        service_input, service_output = self._schemas()
        title = self.document.get("info", {}).get("title", self.service)
        lines = [f"{title} — swagger {self.document.get('swagger') or self.document.get('openapi')}"]
        lines += [f"  {method.upper():6} {path}" for path, ops in self.document.get("paths", {}).items() for method in ops]
        lines += ["input:", table_text(self._rows(service_input), ["name", "type", "example"])]
        lines += ["output:", table_text(self._rows(service_output), ["name", "type", "example"])]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        service_input, service_output = self._schemas()
        routes = "".join(
            f"<li><code>{esc(m.upper())} {esc(p)}</code></li>" for p, ops in self.document.get("paths", {}).items() for m in ops
        )
        return (
            f"<div style='{_BOX}'><b>{esc(self.document.get('info', {}).get('title', self.service))}</b> "
            f"(swagger {esc(self.document.get('swagger') or self.document.get('openapi'))})<ul>{routes}</ul>"
            f"<b>Input</b>{table_html(self._rows(service_input), ['name', 'type', 'example'])}"
            f"<b>Output</b>{table_html(self._rows(service_output), ['name', 'type', 'example'])}</div>"
        )


def _type_of(schema: dict) -> str:
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else kind


@dataclass
class ManifestPlan:
    """A dry run's result: the manifests a deploy would apply, written for GitOps, shown for reading."""

    service: str
    files: list[str]
    kinds: list[str]

    @classmethod
    def of(cls, plan: Any) -> ManifestPlan:
        """From a `DeploymentPlan` (mlmagics.core.plans)."""
        kinds = [f"{m.get('kind')}/{m.get('metadata', {}).get('name')}" for m in plan.manifests]
        return cls(plan.name, [str(f) for f in plan.manifest_files], kinds)

    def yaml(self) -> str:
        return "\n".join(Path(f).read_text() for f in self.files if not f.endswith(".secret.yaml") and Path(f).exists())

    def __repr__(self) -> str:
        lines = [f"Dry run for {self.service}: nothing applied; {len(self.kinds)} objects written"]
        lines += [f"  {f}" for f in self.files]
        lines += [f"  - {k}" for k in self.kinds]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        files = "".join(f"<li><code>{esc(f)}</code></li>" for f in self.files)
        return (
            f"<div style='{_BOX}'>{badge('DryRun')} <b>Manifests for {esc(self.service)}</b> — nothing applied; "
            f"{esc(', '.join(self.kinds))}<ul>{files}</ul>"
            f"<details><summary>YAML</summary><pre style='max-height:30em;overflow:auto'>{esc(self.yaml())}</pre>"
            f"</details></div>"
        )
