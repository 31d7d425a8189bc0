"""`GET /swagger.json`: the service's API document, as azureml-inference-server-http emits it.

Swagger 2.0 by default, OpenAPI 3.0.3 with `?version=3`, 3.1.0 with `?version=3.1`.
`ServiceInput`/`ServiceOutput` come from inference-schema's decorators; an undecorated
`run` gets `{"type": "object", "example": {}}`. A `swagger.json`/`swagger2.json`/
`swagger3.json` in the app root is served instead, verbatim, as v1 does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

VERSIONS = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
_ALL = ["2", "3", "3.1"]
_EMPTY = {"type": "object", "example": {}}
_ERROR = {"type": "object", "properties": {"message": {"type": "string"}}}
_HEALTH_TEXT = "If service is up and running, this response will be returned with the content 'Healthy'"
_FAILED_TEXT = "The service failed to execute due to an error."
_SCORED_TEXT = "The service processed the input correctly and provided a result prediction, if applicable."
_PAYLOAD_TEXT = "The input payload for executing the real-time machine learning service."


class SwaggerError(Exception):
    pass


def _info(name: str, version: str) -> dict[str, str]:
    return {
        "title": name,
        "description": f"API specification for the Azure Machine Learning service {name}",
        "version": version,
    }


def swagger2(name: str, version: str, prefix: str, service_input: Any, service_output: Any) -> dict:
    failed = {"description": _FAILED_TEXT, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": _info(name, version),
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"}
        },
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Simple health check endpoint to ensure the service is up at any given point.",
                    "responses": {
                        "200": {
                            "description": _HEALTH_TEXT,
                            "schema": {"type": "string"},
                            "examples": {"application/json": "Healthy"},
                        },
                        "default": failed,
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": _PAYLOAD_TEXT,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {"description": _SCORED_TEXT, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "default": failed,
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [{"name": "version", "in": "query", "required": False, "type": "integer", "enum": [2, 3]}],
                    "responses": {
                        "200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                        "default": failed,
                    },
                }
            },
        },
        "definitions": {"ServiceInput": service_input, "ServiceOutput": service_output, "ErrorResponse": _ERROR},
    }


def openapi3(name: str, version: str, prefix: str, service_input: Any, service_output: Any, openapi: str = "3.0.3") -> dict:
    def json_body(ref: str) -> dict:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}

    failed = {"description": _FAILED_TEXT, "content": json_body("ErrorResponse")}
    return {
        "openapi": openapi,
        "info": _info(name, version),
        "security": [{"Bearer": []}],
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Simple health check endpoint to ensure the service is up at any given point.",
                    "responses": {
                        "200": {
                            "description": _HEALTH_TEXT,
                            "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": failed,
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "requestBody": {"description": _PAYLOAD_TEXT, "content": json_body("ServiceInput")},
                    "responses": {"200": {"description": _SCORED_TEXT, "content": json_body("ServiceOutput")}, "default": failed},
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {"name": "version", "in": "query", "required": False, "schema": {"type": "integer", "enum": [2, 3]}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": failed,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"}
            },
            "schemas": {"ServiceInput": service_input, "ServiceOutput": service_output, "ErrorResponse": _ERROR},
        },
    }


class Swagger:
    """Builds each version once, on first request, and keeps the encoded bytes."""

    def __init__(self, app_root: str, run: Callable | None, decorated: bool, name: str, version: str, prefix: str) -> None:
        self.app_root = app_root
        self.run = run
        self.decorated = decorated
        self.name, self.version = name, version
        self.prefix = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        self._cache: dict[str, bytes] = {}

    def supported(self) -> list[str]:
        if not self.decorated:
            return list(_ALL)
        from inference_schema.schema_util import get_supported_versions

        offered = {VERSIONS.get(v, v) for v in get_supported_versions(self.run)}
        return [v for v in _ALL if v in offered]

    def document(self, requested: str | None) -> bytes:
        version = VERSIONS.get(requested or "2")
        supported = self.supported()
        if version is None:
            raise SwaggerError(f"Swagger version [{requested}] is not valid. Supported versions: [{', '.join(supported)}].")
        if version not in self._cache:
            doc = self._user_file(version) or self._generate(version, supported, requested)
            self._cache[version] = json.dumps(doc).encode()
        return self._cache[version]

    def _user_file(self, version: str) -> Any:
        names = ["swagger.json", "swagger2.json"] if version == "2" else ["swagger3.json"]
        for name in names:
            path = os.path.join(self.app_root, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    return json.load(f)
        return None

    def _generate(self, version: str, supported: list[str], requested: str | None) -> dict:
        if version not in supported:
            raise SwaggerError(
                f"Swagger version [{requested}] is not supported for the scoring script. "
                f"Supported swagger versions: [{', '.join(supported)}]."
            )
        if self.decorated:
            from inference_schema.schema_util import get_input_schema, get_output_schema

            service_input, service_output = get_input_schema(self.run), get_output_schema(self.run)
        else:
            service_input, service_output = dict(_EMPTY), dict(_EMPTY)
        if version == "2":
            return swagger2(self.name, self.version, self.prefix, service_input, service_output)
        return openapi3(
            self.name, self.version, self.prefix, service_input, service_output, "3.1.0" if version == "3.1" else "3.0.3"
        )
