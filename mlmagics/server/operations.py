"""What each route does: one core call, its result as JSON-ready data. Plain blocking functions,
run by the handlers in worker threads; each takes the workspace first.

    deployments(Workspace("/tmp/ws"))["services"][0]["state"]      # 'Healthy'
    score_service(ws, "echo-svc", '{"data": [1, 2]}')["latencyMs"]  # 2.7

No deploy logic lives here: the core decides, refuses and explains; this only shapes answers.
"""

from __future__ import annotations

import time
from typing import Any

from mlmagics.core import Image, Model, Webservice, Workspace
from mlmagics.display import LogView, mask

MAX_LOG_LINES = 5000


def model_json(model: Model) -> dict[str, Any]:
    return model.serialize()


def image_json(image: Image) -> dict[str, Any]:
    return image.serialize()


def service_json(service: Webservice) -> dict[str, Any]:
    """The service as the panel shows it: state, target, URIs, and its keys masked (never the keys)."""
    keys = None
    if service.auth_enabled:
        primary, secondary = service.get_keys()
        keys = {"primary": mask(primary), "secondary": mask(secondary)}
    return {**service.serialize(), "keys": keys}


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    return [model_json(m) for m in Model.list(ws)]


def list_images(ws: Workspace) -> list[dict[str, Any]]:
    return [image_json(i) for i in Image.list(ws)]


def list_services(ws: Workspace) -> list[dict[str, Any]]:
    """Every service with its live state (each target is asked)."""
    return [service_json(s) for s in Webservice.list(ws, refresh=True)]


def deployments(ws: Workspace) -> dict[str, Any]:
    """Models, images and services in one answer: what the panel polls."""
    return {
        "workspace": ws.display,
        "models": list_models(ws),
        "images": list_images(ws),
        "services": list_services(ws),
    }


def get_service(ws: Workspace, name: str) -> dict[str, Any]:
    service = Webservice(ws, name)
    service.update_deployment_state()
    return service_json(service)


def service_logs(ws: Workspace, name: str, lines: int = 50) -> dict[str, Any]:
    """The last `lines` lines of the service's log; JSON log records made readable, as `%logs` shows them."""
    text = Webservice(ws, name).get_logs(num_lines=lines)
    return {"name": name, "lines": LogView(name, text.splitlines()).readable()}


def service_keys(ws: Workspace, name: str) -> dict[str, str]:
    """The real keys, for the panel's explicit "copy"."""
    primary, secondary = Webservice(ws, name).get_keys()
    return {"primary": primary, "secondary": secondary}


def score_service(ws: Workspace, name: str, body: str) -> dict[str, Any]:
    """Score `body` (JSON text, sent as given) on the service: its answer and the round trip in ms."""
    service = Webservice(ws, name)
    started = time.perf_counter()
    answer = service.run(body)
    latency_ms = (time.perf_counter() - started) * 1000
    if isinstance(answer, bytes):  # a non-JSON answer: show it as text
        answer = answer.decode("utf-8", "replace")
    return {"name": name, "status": 200, "latencyMs": round(latency_ms, 2), "answer": answer}


def delete_service(ws: Workspace, name: str, delete_collected_data: bool = False) -> dict[str, str]:
    """Delete the service; the message says where the data it collected stays (or that it went too)."""
    service = Webservice(ws, name)
    service.delete(delete_collected_data=delete_collected_data)
    return {"message": service.deleted_summary("?deleteCollectedData=true")}


def delete_image(ws: Workspace, image_id: str) -> dict[str, str]:
    image = Image(ws, id=image_id)
    image.delete()
    return {"message": f"Deleted image {image.id}"}


def delete_model(ws: Workspace, model_id: str) -> dict[str, str]:
    model = Model(ws, id=model_id)
    model.delete()
    return {"message": f"Deleted model {model.id}"}
