"""`GET /swagger.json`: the service's API document, as azureml-inference-server-http emits it.

Swagger 2.0 by default, OpenAPI 3.0.3 with `?version=3`, 3.1.0 with `?version=3.1`.
`ServiceInput`/`ServiceOutput` come from inference-schema's decorators; an undecorated
`run` gets `{"type": "object", "example": {}}`. A `swagger.json`/`swagger2.json`/
`swagger3.json` in the app root is served instead, verbatim, as v1 does.

Swagger 2.0 stays exactly v1's (v1 clients read it); the OpenAPI 3 documents add the other protocols' routes
the service answers (the Open Inference Protocol's /v2/..., MLflow's /invocations ...: protocols.py).
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


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                                "INT64", "FP32", "FP64", "BYTES"]},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}  # fmt: skip
_V2_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_MLFLOW_INPUT = {
    "type": "object",
    "description": "exactly one of dataframe_split, dataframe_records, instances, inputs; params optional",
    "properties": {
        "dataframe_split": {"type": "object", "properties": {"columns": {"type": "array"}, "data": {"type": "array"}}},
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array"},
        "inputs": {},
        "params": {"type": "object"},
    },
}


def protocol_paths(prefix: str, model: str, version: str) -> dict[str, Any]:
    """The Open Inference Protocol's and MLflow's routes, in OpenAPI 3 (the model's name is the service's)."""

    def get(operation: str, description: str, ok: dict | None = None, secured: bool = False) -> dict:
        body = {"operationId": operation, "description": description,
                "responses": {"200": ok or {"description": "OK"}, "default": {"description": "not ready, or an error"}}}
        return {"get": {**body, **({"security": [{"Bearer": []}]} if secured else {"security": []})}}  # fmt: skip

    def post(operation: str, description: str, request: dict, answer: dict, error: dict) -> dict:
        def json_content(schema: dict) -> dict:
            return {"application/json": {"schema": schema}}

        responses = {"200": {"description": "the answer", "content": json_content(answer)},
                     "default": {"description": "an error", "content": json_content(error)}}  # fmt: skip
        body = {"required": True, "content": json_content(request)}
        return {"post": {"operationId": operation, "description": description, "security": [{"Bearer": []}],
                         "requestBody": body, "responses": responses}}  # fmt: skip

    infer_request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR}, "outputs": {"type": "array"},
        "parameters": {"type": "object"}}}  # fmt: skip
    infer_answer = {"type": "object", "properties": {"model_name": {"type": "string"}, "outputs": {"type": "array"}}}
    model_path = f"{prefix}/v2/models/{model}"
    mlflow_error = {"type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}
    return {
        f"{prefix}/v2/health/live": get("V2Live", "Open Inference Protocol: liveness"),
        f"{prefix}/v2/health/ready": get("V2Ready", "Open Inference Protocol: readiness (503 until init() succeeded)"),
        f"{prefix}/v2": get("V2ServerMetadata", "Open Inference Protocol: server metadata", secured=True),
        model_path: get("V2ModelMetadata", "the script's input schema as named tensors", secured=True),
        f"{model_path}/versions/{version}": get("V2ModelVersionMetadata", "the same, by version", secured=True),
        f"{model_path}/ready": get("V2ModelReady", "Open Inference Protocol: the model's readiness", secured=True),
        f"{model_path}/infer": post("V2Infer", "Open Inference Protocol: named tensors in and out", infer_request,
                                    infer_answer, _V2_ERROR),  # fmt: skip
        f"{model_path}/versions/{version}/infer": post("V2InferVersion", "the same, by version", infer_request,
                                                       infer_answer, _V2_ERROR),  # fmt: skip
        f"{prefix}/invocations": post("MLflowInvocations", "MLflow's scoring protocol (also text/csv)", _MLFLOW_INPUT,
                                      {"type": "object", "properties": {"predictions": {}}}, mlflow_error),  # fmt: skip
        f"{prefix}/ping": get("MLflowPing", "MLflow: 200 once the model is loaded"),
        f"{prefix}/health": get("MLflowHealth", "MLflow: 200 once the model is loaded"),
        f"{prefix}/version": get("MLflowVersion", "the server's version", secured=True),
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
        document = openapi3(
            self.name, self.version, self.prefix, service_input, service_output, "3.1.0" if version == "3.1" else "3.0.3"
        )
        document["paths"].update(protocol_paths(self.prefix, self.name, self.version))
        return document
