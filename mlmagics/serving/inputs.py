"""Turn an HTTP request into `run()`'s arguments, as v1 does (messages and statuses included)."""

from __future__ import annotations

import io
import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .script import RAW, SCHEMA, ScoringScript

if TYPE_CHECKING:
    from .http import HttpRequest


class InputError(Exception):
    """The request cannot become `run()`'s input; `status` is 400 or 415."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def headers_dict(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as Werkzeug spells them (`Content-Type`), repeated ones joined by commas."""
    out: dict[str, str] = {}
    for key, value in headers:
        name = "-".join(part.capitalize() for part in key.decode("latin-1").split("-"))
        text = value.decode("latin-1")
        out[name] = f"{out[name]}, {text}" if name in out else text
    return out


def decode_json(data: str | bytes, what: str) -> Any:
    """`json.loads`, with a client's hostile input as a 4xx: JSON nested deeper than the interpreter's
    stack would end the worker (RecursionError), one too large for memory would too (MemoryError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InputError(400, f"{what} is nested too deeply to decode as JSON") from None
    except MemoryError:
        raise InputError(413, f"{what} is too large to decode as JSON in this worker's memory") from None


def _json_or_text(value: str) -> Any:
    try:
        return decode_json(value, "A query parameter")
    except ValueError:
        return value


def query_params(query_string: bytes) -> dict[str, Any]:
    """`?a=1&b=[1,2]&c=x&c=y` -> `{"a": 1, "b": [1, 2], "c": ["x", "y"]}` (v1's GET rule)."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    return {k: _json_or_text(v[0]) if len(v) == 1 else [_json_or_text(i) for i in v] for k, v in grouped.items()}


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def run_arguments(script: ScoringScript, request: HttpRequest) -> dict[str, Any]:
    """The keyword arguments for `run()`; raises InputError with v1's status and message."""
    if script.style == RAW:
        return {script.first_param: raw_request(request)}
    if script.style == SCHEMA:
        if request.method == "GET":
            body = query_params(request.query_string)
        else:
            if not _is_json(request.header(b"content-type")):
                raise InputError(415, "Expects Content-Type to be application/json")
            try:
                body = decode_json(request.body, "The POST body")
            except ValueError as e:
                if request.body:
                    raise InputError(400, f"POST body could not be decoded as JSON: {e}") from None
                raise InputError(400, "POST body is empty. Expecting a JSON dictionary.") from None
            if not isinstance(body, dict):
                raise InputError(400, "POST body should be a JSON dictionary.")
        return schema_arguments(script, body)
    if request.method == "GET":
        params = query_params(request.query_string)
        try:
            return {script.first_param: json.dumps(params)}
        except RecursionError:
            raise InputError(400, "A query parameter is nested too deeply to pass on as JSON") from None
    try:
        return {script.first_param: request.body.decode("utf-8")}
    except UnicodeDecodeError as e:
        raise InputError(400, f"Input cannot be decoded as UTF-8: {e}") from None
    except MemoryError:
        raise InputError(413, "The body is too large to decode in this worker's memory") from None


def schema_arguments(
    script: ScoringScript, given: dict[str, Any], missing: str = "A value is not provided for the {!r} parameter."
) -> dict[str, Any]:
    """run()'s keyword arguments taken from `given` by name, its defaults for the rest (as v1 fills them); a required
    one missing is a 400 (`missing`, formatted with its name). Other names in `given` are left out."""
    arguments = {}
    for param in script.params:
        value = given.get(param.name, param.default)
        if value is param.empty:
            raise InputError(400, missing.format(param.name))
        arguments[param.name] = value
    return arguments


def raw_request(request: HttpRequest):
    """A Werkzeug request (as `AMLRequest`) for `@rawhttp` scripts, built from the ASGI request."""
    aml_request = sys.modules.get("azureml.contrib.services.aml_request")
    request_class = getattr(aml_request, "AMLRequest", None)
    if request_class is None or not hasattr(request_class, "from_values"):
        from werkzeug.wrappers import Request as request_class
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string.decode("latin-1"),
        "SERVER_NAME": str(request.server[0]),
        "SERVER_PORT": str(request.server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "REMOTE_ADDR": str(request.client[0]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(request.body)),
    }
    for key, value in request.headers:
        name = key.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
        elif name != "CONTENT_LENGTH":
            http_name = "HTTP_" + name
            environ[http_name] = f"{environ[http_name]},{text}" if http_name in environ else text
    return request_class(environ)
