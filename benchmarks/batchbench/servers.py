"""The six servers under test, as one kind of record: how to start each, where to send load, and
how to tell it is ready. The reference and mlmagics come from ``servebench.servers`` unchanged."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import clean_env
from servebench import procs, servers

BENTOML_PIN = "bentoml==1.4.40"
BENTOML_PACKAGES = ("bentoml", "uvicorn", "starlette", "pydantic", "scikit-learn", "numpy", "joblib")
BATCH_SETTINGS = {"max_batch_size": 64, "max_batch_latency_ms": 10}
# The three mlmagics servers: the runtime each runs ("before" batching, or "now": this checkout) and batching on or off.
MLMAGICS = {"mlmagics-before": ("before", False), "mlmagics-off": ("now", False), "mlmagics-batch": ("now", True)}
BATCH_TEXT = f"max_batch_size {BATCH_SETTINGS['max_batch_size']}, max_batch_latency_ms {BATCH_SETTINGS['max_batch_latency_ms']}"


@dataclass
class Server:
    """One server with one setting."""

    key: str  # short name for logs and the results
    server: str  # the report's "server" column
    setting: str  # the report's "setting" column
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log_path: Path
    score_path: str = "/score"
    ready_path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    batch_metrics: bool = False  # scrape mlmagics's batch histograms around each run

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.score_path}"


def _from_spec(spec: servers.ServerSpec, key: str, server: str, setting: str, **extra: Any) -> Server:
    return Server(
        key=key,
        server=server,
        setting=setting,
        command=spec.command,
        env=spec.env,
        cwd=spec.cwd,
        port=spec.port,
        log_path=spec.log_path,
        headers=spec.headers,
        notes=spec.notes,
        **extra,
    )


def bentoml_requirements(project: dict[str, Any]) -> list[str]:
    """BentoML and the project's exact model stack (the same pickle loads everywhere)."""
    return [BENTOML_PIN] + [f"{name}=={project[name]}" for name in ("scikit-learn", "numpy", "joblib")]


def write_mlmagics_config(path: Path, key: str, batching: bool) -> Path:
    """service.json: key auth on (as serving_bench), and the batch settings when ``batching``."""
    servers.write_service_config(path, key, key[::-1])
    if batching:
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, **BATCH_SETTINGS}, indent=2))
    return path


def build(
    app: dict[str, Any],
    pythons: dict[str, Path],
    runtimes: dict[str, tuple[Path, str]],
    configs: dict[str, Path],
    key: str,
    workers: int,
    out_dir: Path,
    pinning: procs.Pinning,
) -> list[Server]:
    """Every server, in run order, each on a free port, its command under the servers' taskset."""
    logs = {name: out_dir / f"batching-{name}.log" for name in ("reference", "mlmagics", "bentoml")}
    ref = servers.reference_spec(pythons["reference"], app, procs.free_port(), workers, logs["reference"])
    out = [_from_spec(ref, "reference", "reference", "azureml-inference-server-http, WORKER_COUNT=2")]
    for name, (runtime, batching) in MLMAGICS.items():
        which = f"before batching ({runtimes['before'][1]})" if runtime == "before" else "this checkout"
        spec = servers.mlmagics_spec(
            pythons["mlmagics"],
            runtimes[runtime][0],
            app,
            port=procs.free_port(),
            workers=workers,
            config=configs["on" if batching else "off"],
            key=key,
            log_path=logs["mlmagics"],
        )
        setting = f"{which}, {BATCH_TEXT if batching else 'batching off'}"
        out.append(_from_spec(spec, name, "mlmagics", setting, batch_metrics=batching))
    for latency in (1000, 10):
        out.append(bentoml_server(pythons["bentoml"], app, latency, workers, logs["bentoml"]))
    return [dataclasses.replace(s, command=[*pinning.server, *s.command]) for s in out]


def bentoml_server(python: Path, app: dict[str, Any], max_latency_ms: int, workers: int, log_path: Path) -> Server:
    """``bentoml serve service:Digits`` from the service's folder; its own BENTOML_HOME, no tracking."""
    port = procs.free_port()
    env = clean_env(
        BENCH_MAX_LATENCY_MS=str(max_latency_ms),
        BENCH_MODEL_PATH=app["model_file"],
        BENCH_WORKERS=str(workers),
        BENTOML_HOME=str(Path(app["bentoml_dir"]) / "home"),
        BENTOML_DO_NOT_TRACK="True",
    )
    command = [
        str(python.parent / "bentoml"),
        "serve",
        "service:Digits",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        app["bentoml_dir"],
    ]
    return Server(
        key=f"bentoml-{max_latency_ms}",
        server="BentoML",
        setting=f"batchable=True, max_batch_size 64, max_latency_ms={max_latency_ms}, workers={workers}",
        command=command,
        env=env,
        cwd=Path(app["bentoml_dir"]),
        port=port,
        log_path=log_path,
        score_path="/predict",
        ready_path="/readyz",
        notes="no auth; @bentoml.service(workers=2): two service worker processes under BentoML's arbiter, "
        "each with its own batch dispatcher",
    )
