"""Tornado handlers of the mlmagics server extension: parse the request, run one operation in a worker
thread (core calls block: they wait for deploys and talk HTTP to services), answer JSON.

Every verb is `@tornado.web.authenticated`, so the API asks for the same token or cookie as the rest
of Jupyter. Core errors keep their sentence: `{"message": "image echo:1 is used by service ..."}`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from mlmagics.core import Workspace
from mlmagics.core.errors import ConflictError, MlmagicsError, NotFoundError, TargetUnavailable, UserError, WebserviceException

from . import operations as ops


def status_for(error: MlmagicsError, service_error: int = 502) -> int:
    """The HTTP status of a core error. `service_error` is for WebserviceException: 502 when a service
    or target failed to answer, 409 where it means the service is not in the needed state."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, UserError):  # before WebserviceException: InvalidConfiguration is both
        return 400
    if isinstance(error, TargetUnavailable):
        return 503
    if isinstance(error, WebserviceException):
        return service_error
    return 500


class CoreHandler(APIHandler):
    """Base of the routes: `await self.answer(operation, *args)` runs `operation(workspace, *args)`
    off the event loop and writes its result, or the core's refusal as `{"message": ...}`."""

    @property
    def workspace_path(self) -> str:
        return self.settings["mlmagics_workspace"]

    @property
    def executor(self) -> Executor:
        return self.settings["mlmagics_executor"]

    async def answer(self, operation: Callable[..., Any], *args: Any, service_error: int = 502) -> None:
        def call() -> Any:
            return operation(Workspace(self.workspace_path), *args)

        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except MlmagicsError as e:
            self.set_status(status_for(e, service_error))
            self.finish(json.dumps({"message": e.message, "error": type(e).__name__}))
            return
        self.finish(json.dumps(result))

    def refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"message": message}))


class DeploymentsHandler(CoreHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(ops.deployments)


class ListHandler(CoreHandler):
    """GET /mlmagics/models, /images, /services."""

    def initialize(self, operation: Callable[..., Any]) -> None:
        self.operation = operation

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.operation)


class ServiceHandler(CoreHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.answer(ops.get_service, name)

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        flag = self.get_argument("deleteCollectedData", "false")
        if flag not in ("true", "false"):
            self.refuse(400, f"deleteCollectedData must be true or false, got {flag!r}")
            return
        await self.answer(ops.delete_service, name, flag == "true")


class ServiceLogsHandler(CoreHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        text = self.get_argument("lines", "50")
        if not text.isdigit() or not 1 <= int(text) <= ops.MAX_LOG_LINES:
            self.refuse(400, f"lines must be an integer from 1 to {ops.MAX_LOG_LINES}, got {text!r}")
            return
        await self.answer(ops.service_logs, name, int(text))


class ServiceKeysHandler(CoreHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        # the core says why there are no keys (key auth is off): a state conflict, not a failure
        await self.answer(ops.service_keys, name, service_error=409)


class ServiceTestHandler(CoreHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        body = self.request.body.decode("utf-8", "replace")
        try:
            json.loads(body)
        except ValueError as e:
            self.refuse(400, f"the request body is not valid JSON ({e}); quote text as a JSON string")
            return
        await self.answer(ops.score_service, name, body)


class DeleteHandler(CoreHandler):
    """DELETE /mlmagics/images/ID, /models/ID (ID is name:version)."""

    def initialize(self, operation: Callable[..., Any]) -> None:
        self.operation = operation

    @tornado.web.authenticated
    async def delete(self, object_id: str) -> None:
        await self.answer(self.operation, object_id)


def setup_handlers(web_app: Any, workspace: str, executor: Executor) -> None:
    """Add the routes under `<base_url>/mlmagics/`, answering for `workspace`."""
    web_app.settings["mlmagics_workspace"] = workspace
    web_app.settings["mlmagics_executor"] = executor
    route = functools.partial(url_path_join, web_app.settings["base_url"], "mlmagics")
    name = r"([^/]+)"
    handlers = [
        (route("deployments"), DeploymentsHandler),
        (route("models"), ListHandler, {"operation": ops.list_models}),
        (route("images"), ListHandler, {"operation": ops.list_images}),
        (route("services"), ListHandler, {"operation": ops.list_services}),
        (route("services", name), ServiceHandler),
        (route("services", name, "logs"), ServiceLogsHandler),
        (route("services", name, "keys"), ServiceKeysHandler),
        (route("services", name, "test"), ServiceTestHandler),
        (route("images", name), DeleteHandler, {"operation": ops.delete_image}),
        (route("models", name), DeleteHandler, {"operation": ops.delete_model}),
    ]
    web_app.add_handlers(".*$", handlers)
