"""Turn `run()`'s return value into an HTTP answer, byte for byte as v1 does.

- a Werkzeug/Flask response (`AMLResponse` included) is sent as is;
- anything else is `json.dumps`-ed into a 200 `application/json` — a `str` too, which is
  v1's famous double encoding (`return json.dumps(x)` sends `"[1, 2]"`); `None` sends `{}`;
- a value `json.dumps` cannot encode (bytes, a numpy array) is a 500, as in v1, and the
  log says what to return instead.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]  # status, headers, body
JSON = (b"content-type", b"application/json")
TEXT_HTML = (b"content-type", b"text/html; charset=utf-8")
RUN_OK = (b"x-ms-run-function-failed", b"False")
RUN_FAILED = (b"x-ms-run-function-failed", b"True")


class OutputError(Exception):
    """`run()` returned something that is not an HTTP answer; the message says what to do."""


def is_response(value: Any) -> bool:
    return hasattr(value, "status_code") and hasattr(value, "get_data") and hasattr(value, "headers")


def error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def answer(value: Any) -> Answer:
    """(status, headers, body) for a `run()` result."""
    if is_response(value):
        status = int(value.status_code)
        headers = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in value.headers.items()
            if k.lower() not in ("content-length", "x-ms-run-function-failed")
        ]
        headers.append(RUN_FAILED if status >= 500 else _flag(value))
        return status, headers, value.get_data()
    if type(value) is str:  # the common `return json.dumps(...)`: encode the string, as json.dumps would
        return 200, [JSON, RUN_OK], _quote(value).encode()
    try:
        body = json.dumps({} if value is None else value)
    except (TypeError, ValueError) as e:
        kind = type(value).__module__ + "." + type(value).__qualname__
        hint = {
            "builtins.bytes": "return AMLResponse(body, 200) to send bytes",
            "numpy.ndarray": "return array.tolist()",
        }.get(kind, "return lists, dicts, numbers or strings")
        raise OutputError(f"run() returned a {kind} that JSON cannot encode ({e}); {hint}") from None
    return 200, [JSON, RUN_OK], body.encode()


def _flag(response: Any) -> tuple[bytes, bytes]:
    value = response.headers.get("x-ms-run-function-failed", "False")
    return (b"x-ms-run-function-failed", str(value).encode("latin-1"))
