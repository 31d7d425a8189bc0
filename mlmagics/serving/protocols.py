"""The protocols a service answers besides v1's `/score`, on the same port, the same `run()` and the same queue
(batching included): what clients other teams already have can call a v1 script unchanged.

Open Inference Protocol (KServe v2, Triton's HTTP/REST), `{name}` being the service's name:

    GET  /v2/health/live, /v2/health/ready          200, or 503 until init() succeeded
    GET  /v2                                        server metadata
    GET  /v2/models/{name}[/versions/{v}]           model metadata: the script's schema as named tensors
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer     named tensors in and out; the request `id` echoed;
                                                    the binary tensor extension (tritonclient's default) too

A tensor is one of run()'s parameters (an inference-schema script: the parameter's name), its flat `data`
reshaped to `shape`; run()'s answer becomes the outputs — a dict of arrays (one output per key) or one array
(`output0`). Errors are `{"error": "..."}` with 400 (bad request), 404 (no such model) or 500.

MLflow's scoring protocol (`mlflow models serve`):

    POST /invocations      application/json: dataframe_split, dataframe_records, instances or inputs (+ params);
                           text/csv with a header row. Answer: {"predictions": ...}
    GET  /ping, /health    200 (`/ping` 503 until init() succeeded); GET /version: the server's version

For an inference-schema script the rows go to its row parameter (numpy rows, or pandas records) and `params`
to parameters of those names; a plain v1 script (`run(raw_data)`) gets `{"data": rows}` as JSON text, the
shape v1's own examples read. Errors are MLflow's: `{"error_code": "BAD_REQUEST", "message": ...}`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from . import outputs
from .http import error
from .inputs import InputError, decode_json, run_arguments, schema_arguments
from .outputs import Answer

NAME = "mlmagics"
_JSON = outputs.JSON


class V1:
    """v1's /score: the default of every request. Each protocol turns a request into run()'s arguments (and what its
    answer echoes of the request), run()'s value into an answer, and an error into its own error body."""

    name = "v1"

    def arguments(self, script: Any, request: Any) -> tuple[dict[str, Any], Any]:
        """run()'s keyword arguments, and what answer() needs of the request (None: nothing)."""
        return run_arguments(script, request), None

    def answer(self, value: Any, echo: Any = None) -> Answer:
        return outputs.answer(value)

    def error(self, status: int, message: str, failed: bool = False) -> Answer:
        return error(status, message, failed)


def _decoded(value: Any) -> Any:
    """What a string answer encodes (v1's `return json.dumps(...)`); a string that is not JSON stays a string."""
    if isinstance(value, str):
        try:
            return decode_json(value, "run()'s answer")
        except (ValueError, InputError):
            pass
    return value


# -- the Open Inference Protocol (KServe v2) ---------------------------------------------------------------------------
_DTYPES = {  # datatype -> struct format of one element in the binary extension
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h", "INT32": "i",
    "INT64": "q", "FP32": "f", "FP64": "d",
}  # fmt: skip
MAX_ELEMENTS = 50_000_000  # a tensor's shape may not claim more elements (and nested lists) than this
MAX_DIMS = 32


@dataclass
class _Asked:
    """What a v2 answer echoes of its request: the id, the outputs asked for (name -> binary or not; none: all)."""

    id: str | None
    outputs: dict[str, bool]
    binary: bool  # the request's binary_data_output: the default of every output


class OpenInference(V1):
    """KServe v2 / Triton HTTP: named tensors."""

    name = "v2"

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version

    def arguments(self, script: Any, request: Any) -> tuple[dict[str, Any], _Asked]:
        header, binary = _v2_body(request)
        inputs = header.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InputError(400, "an inference request needs 'inputs': a list of tensors (name, shape, datatype, data)")
        if script.style != "schema":
            raise InputError(400, "this service's run() takes v1 text or raw input, not named tensors: POST it to /score")
        asked = _asked(header)
        known = {p.name for p in script.params}
        arguments: dict[str, Any] = {}
        offset = 0
        for tensor in inputs:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise InputError(400, "each input tensor needs a 'name'")
            name = tensor["name"]
            if name not in known:
                raise InputError(400, f"unexpected inference input {name!r} for model (run() takes {', '.join(sorted(known))})")
            if name in arguments:
                raise InputError(400, f"input {name!r} is given twice")
            shape, datatype = _shape(tensor), tensor.get("datatype")
            size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
            if size is not None:
                if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                    raise InputError(400, f"input {name!r}: binary_data_size does not match the body")
                flat = _unpack(binary[offset : offset + size], datatype, name, math.prod(shape))
                offset += size
            elif isinstance(tensor.get("data"), list):
                flat, _ = _elements(tensor["data"])  # flat, or nested lists (row-major)
            else:
                raise InputError(400, f"input {name!r}: 'data' must be a list")
            arguments[name] = _reshape(flat, shape, name)
        if offset != len(binary):
            raise InputError(400, f"{len(binary) - offset} bytes of the body follow the inputs' binary_data_size in all")
        return schema_arguments(script, arguments, "missing inference input {!r}"), asked

    def answer(self, value: Any, echo: Any = None) -> Answer:
        """run()'s answer as output tensors — a dict of arrays (one per key) or one array (`output0`) — those the
        request asked for (all by default), binary when it asked."""
        asked = echo or _Asked(None, {}, False)
        value = _decoded(value)  # v1's `return json.dumps(...)`: the tensor is what it encodes
        tensors = value if isinstance(value, dict) else {"output0": value}
        described, chunks = [], []
        try:
            for key, data in tensors.items():
                name = str(key)
                if asked.outputs and name not in asked.outputs:
                    continue
                shape, flat = _tensor(data.tolist() if hasattr(data, "tolist") else data)
                tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": _datatype(flat)}
                if asked.outputs.get(name, asked.binary) and tensor["datatype"] in _DTYPES:
                    chunks.append(struct.pack(f"<{len(flat)}{_DTYPES[tensor['datatype']]}", *flat))
                    tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
                else:
                    tensor["data"] = flat
                described.append(tensor)
            body = {"model_name": self.model, "model_version": self.version, "outputs": described}
            if asked.id is not None:
                body["id"] = asked.id[:256]
            text = json.dumps(body).encode()
        except (TypeError, ValueError, struct.error) as e:
            return self.error(500, f"run()'s answer is not a tensor or a dict of tensors: {e}")
        if not chunks:
            return 200, [_JSON, outputs.RUN_OK], text
        binary_headers = [(b"content-type", b"application/octet-stream"), outputs.RUN_OK,
                          (b"inference-header-content-length", b"%d" % len(text))]  # fmt: skip
        return 200, binary_headers, text + b"".join(chunks)

    def error(self, status: int, message: str, failed: bool = False) -> Answer:
        return error(status, message, failed, {"error": message})


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InputError(400, f"{what}: 'parameters' must be an object")
    return parameters


def _asked(header: dict[str, Any]) -> _Asked:
    """What the answer will echo of the request, checked before run() is called."""
    binary = bool(_parameters(header, "the inference request").get("binary_data_output"))
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError(400, "the inference request's 'id' must be a string")
    wanted = header.get("outputs")
    if wanted is None:
        return _Asked(request_id, {}, binary)
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
        raise InputError(400, "'outputs' must be a list of objects with a 'name'")
    binary_of = {o["name"]: bool(_parameters(o, f"output {o['name']!r}").get("binary_data", binary)) for o in wanted}
    return _Asked(request_id, binary_of, binary)


_DIGITS = re.compile(r"[0-9]{1,18}")


def _v2_body(request: Any) -> tuple[dict[str, Any], bytes]:
    body = request.body
    length = request.header(b"inference-header-content-length")
    if length:
        # digits only: str.isdigit() takes '²' too, and int() refuses more than 4300 digits (both a ValueError)
        if not _DIGITS.fullmatch(length) or int(length) > len(body):
            raise InputError(400, "Inference-Header-Content-Length does not match the body")
        text, binary = body[: int(length)], body[int(length) :]
    else:
        text, binary = body, b""
    try:
        header = decode_json(text, "The inference request")
    except ValueError as e:
        raise InputError(400, f"the inference request is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise InputError(400, "the inference request must be a JSON object")
    return header, binary


def _shape(tensor: dict[str, Any]) -> list[int]:
    """The tensor's shape, once it is sure to build at most MAX_ELEMENTS elements and nested lists: checked dimension
    by dimension, never multiplying out a hostile shape (10**6 dimensions of 2 took minutes), and counting the empty
    lists a zero builds ([10**9, 0] holds no element but is 10**9 lists)."""
    shape, name = tensor.get("shape"), tensor.get("name")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(400, f"input {name!r}: 'shape' must be a list of sizes")
    if len(shape) > MAX_DIMS:
        raise InputError(400, f"input {name!r}: a shape of {len(shape)} dimensions is too many (at most {MAX_DIMS})")
    built = lists = 1
    for d in shape:
        lists *= d  # the lists (or, last, the elements) of this dimension
        built += lists
        if built > MAX_ELEMENTS:
            raise InputError(400, f"input {name!r}: the shape is too large (at most {MAX_ELEMENTS} elements)")
    return shape


def _unpack(raw: bytes, datatype: Any, name: str, elements: int) -> list[Any]:
    """The `elements` elements of a binary tensor; its size is checked before a Python object is made of it."""
    if datatype == "BYTES":  # each element: its length (4 bytes, little-endian), then its bytes
        out, i = [], 0
        while i < len(raw) and len(out) < elements:
            n = struct.unpack_from("<I", raw, i)[0] if i + 4 <= len(raw) else None
            if n is None or i + 4 + n > len(raw):
                raise InputError(400, f"input {name!r}: BYTES element {len(out)} runs past binary_data_size")
            out.append(raw[i + 4 : i + 4 + n].decode("utf-8", "replace"))
            i += 4 + n
        if i != len(raw):
            raise InputError(400, f"input {name!r}: binary_data_size holds more than the shape's {elements} BYTES elements")
        return out
    code = _DTYPES.get(datatype)
    if code is None:
        raise InputError(400, f"input {name!r}: datatype {datatype!r} is not one of {', '.join([*_DTYPES, 'BYTES'])}")
    size = struct.calcsize(code)
    if len(raw) != elements * size:
        raise InputError(400, f"input {name!r}: binary_data_size is {len(raw)} bytes, the shape's {elements} {datatype} "
                              f"elements are {elements * size}")  # fmt: skip
    return list(struct.unpack(f"<{elements}{code}", raw))


def _reshape(flat: list[Any], shape: list[int], name: str) -> Any:
    """Row-major elements as nested lists of `shape` (a zero size included: [2, 0] is [[], []])."""
    total = math.prod(shape)
    if total != len(flat):
        raise InputError(400, f"input {name!r}: shape {shape} holds {total} elements, 'data' has {len(flat)}")
    if not shape:
        return flat[0]
    out: Any = flat
    for k in range(len(shape) - 1, 0, -1):
        d = shape[k]
        out = [out[i * d : (i + 1) * d] for i in range(math.prod(shape[:k]))]
    return out


def _elements(data: list | tuple) -> tuple[list[Any], list[int] | None]:
    """The row-major elements of nested lists (or tuples), walked without recursion, and their shape: None when the
    lists are ragged (a list of another length than its siblings, an element beside a list)."""
    flat: list[Any] = []
    shape: list[int] | None = [len(data)]
    element_seen = False
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            depth = len(stack)
            if isinstance(item, list | tuple):
                if shape is not None:
                    if depth == len(shape) and not element_seen:
                        shape.append(len(item))  # the first list this deep: its length is the dimension's
                    elif depth >= len(shape) or len(item) != shape[depth]:
                        shape = None
                stack.append(iter(item))
                break
            if shape is not None and depth != len(shape):
                shape = None
            element_seen = True
            flat.append(item)
        else:
            stack.pop()
    return flat, shape


def _tensor(data: Any) -> tuple[list[int], list[Any]]:
    """(shape, row-major elements) of an answer's value: a number or string is a tensor of shape []."""
    if not isinstance(data, list | tuple):
        return [], [data]
    flat, shape = _elements(data)
    if shape is None:
        raise ValueError("its lists are ragged")
    return shape, flat


def _datatype(flat: list[Any]) -> str:
    if all(isinstance(v, bool) for v in flat):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        return "FP64"
    return "BYTES"


def model_metadata(script: Any, model: str, version: str) -> dict[str, Any]:
    """The script's inference schema as named tensors (the shapes of its samples, -1 for rows)."""
    inputs, outputs_ = [], []
    if script.style == "schema":
        from inference_schema.schema_util import get_output_schema

        properties = script.input_properties()
        inputs = [_tensor_metadata(param.name, properties.get(param.name, {})) for param in script.params]
        output = get_output_schema(script.run) or {}
        if output:
            outputs_.append(_tensor_metadata("output0", output))
    return {"name": model, "versions": [version], "platform": f"{NAME}_v1_score", "inputs": inputs, "outputs": outputs_}


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": NAME, "version": version, "extensions": ["binary_tensor_data"]}


def _tensor_metadata(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    shape, level = [], schema
    while level.get("type") == "array":
        shape.append(-1)
        level = level.get("items", {})
    kind = level.get("type", "")
    datatype = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}.get(kind, "BYTES")
    return {"name": name, "datatype": datatype, "shape": shape}


# -- MLflow's scoring protocol ------------------------------------------------------------------------------------------
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class MLflow(V1):
    name = "mlflow"

    def arguments(self, script: Any, request: Any) -> tuple[dict[str, Any], None]:
        content_type = request.header(b"content-type").split(";", 1)[0].strip().lower()
        if content_type == "text/csv":
            columns, rows = _csv(request.body)
            frame, params = _Frame(rows=rows, columns=columns), {}
        elif content_type == "application/json":
            try:
                data = decode_json(request.body, "The request body")
            except ValueError as e:
                raise InputError(400, f"Failed to parse input from JSON: {e}") from None
            if not isinstance(data, dict) or sum(k in data for k in _MLFLOW_KEYS) != 1:
                fields = list(data) if isinstance(data, dict) else []
                raise InputError(400, f"The input must be a JSON dictionary with exactly one of the input fields "
                                      f"{set(_MLFLOW_KEYS)}. Received dictionary with input fields: {fields}.")  # fmt: skip
            params = data.get("params") or {}
            if not isinstance(params, dict):
                raise InputError(400, "'params' must be a JSON dictionary")
            frame = _frame(data)
        else:
            raise InputError(415, f"This predictor only supports the following content types: ['application/json', "
                                  f"'text/csv']. Got '{content_type}'.")  # fmt: skip
        if script.style == "schema":
            return _schema_arguments(script, frame, params), None
        if script.style == "text":
            return {script.first_param: json.dumps({"data": frame.named if frame.named is not None else frame.as_rows()})}, None
        raise InputError(400, "this service's run() takes the raw HTTP request (@rawhttp): POST it to /score")

    def answer(self, value: Any, echo: Any = None) -> Answer:
        value = _decoded(value)
        if outputs.is_response(value):
            return self.error(500, "run() returned an HTTP response, which /invocations cannot pass on: use /score")
        value = value.tolist() if hasattr(value, "tolist") else value
        try:
            body = json.dumps({"predictions": value})
        except (TypeError, ValueError) as e:
            return self.error(500, f"run()'s answer cannot be encoded as JSON: {e}")
        return 200, [_JSON, outputs.RUN_OK], body.encode()

    def error(self, status: int, message: str, failed: bool = False) -> Answer:
        code = _MLFLOW_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        return error(status, message, failed, {"error_code": code, "message": message})


# MLflow's own (mlflow.exceptions.HTTP_STATUS_TO_ERROR_CODE); any other 4xx is BAD_REQUEST, 5xx INTERNAL_ERROR
_MLFLOW_CODES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND", 503: "TEMPORARILY_UNAVAILABLE"}


@dataclass
class _Frame:
    """An MLflow request's input as its format gives it: named tensors, or rows — lists (named by `columns` or not)
    or records. The other form of the rows is made only when run() wants it."""

    named: dict[str, Any] | None = None
    rows: list | None = None
    columns: list | None = None
    records: list | None = None

    def as_rows(self) -> list:
        return self.rows if self.rows is not None else [list(r.values()) for r in self.records or []]

    def as_records(self) -> list | None:
        if self.records is not None or self.columns is None:
            return self.records
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows or []]


def _frame(data: dict[str, Any]) -> _Frame:
    if "dataframe_split" in data:
        split = data["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise InputError(400, "dataframe_split must be a dictionary with 'data' (rows) and 'columns'")
        rows = split["data"]
        columns = split.get("columns")
        if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str | int | float) for c in columns)):
            raise InputError(400, "dataframe_split's 'columns' must be a list of column names")
        if columns is not None and not all(isinstance(row, list) for row in rows):
            raise InputError(400, "dataframe_split's 'data' must be a list of rows, each a list of values")
        return _Frame(rows=rows, columns=columns)
    if "dataframe_records" in data:
        records = data["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InputError(400, "dataframe_records must be a list of records (dictionaries)")
        return _Frame(records=records)
    value = data.get("instances", data.get("inputs"))
    if isinstance(value, dict):
        return _Frame(named=value)
    if not isinstance(value, list):
        raise InputError(400, "instances / inputs must be a list of rows or a dictionary of named tensors")
    if value and all(isinstance(r, dict) for r in value):
        return _Frame(records=value)
    return _Frame(rows=value)


def _schema_arguments(script: Any, frame: _Frame, params: dict[str, Any]) -> dict[str, Any]:
    known = {p.name for p in script.params}
    if frame.named is not None:
        unknown = [k for k in frame.named if k not in known]
        if unknown:
            raise InputError(400, f"unexpected input {unknown[0]!r} (run() takes {', '.join(sorted(known))})")
        arguments = dict(frame.named)
    else:
        row_params = script.row_params()
        if not row_params:
            raise InputError(400, "run()'s schema has no parameter that takes rows")
        if script.input_properties()[row_params[0]].get("items", {}).get("type") == "object":
            records = frame.as_records()
            if records is None:
                raise InputError(400, "run() takes records (named columns): send dataframe_split with columns, or "
                                      "dataframe_records")  # fmt: skip
            arguments = {row_params[0]: records}
        else:
            arguments = {row_params[0]: frame.as_rows()}
    for key, value in params.items():
        if key in known and key not in arguments:
            arguments[key] = value
    return schema_arguments(script, arguments)


def _csv(body: bytes) -> tuple[list[str], list[list[Any]]]:
    try:
        reader = csv.reader(io.StringIO(body.decode("utf-8")))
        header = next(reader, None)
        if header is None:
            raise InputError(400, "Failed to parse input as CSV: the body is empty (it needs a header row)")
        return header, [[_number(cell) for cell in line] for line in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(400, f"Failed to parse input as CSV: {e}") from None


# A number as Python spells one (int, float, nan, inf), without underscores or other digits than 0-9 (as pandas reads
# CSV). Matched before converting: trying int() then float() on every cell made 10 MB of text cells take 15 s.
_NUMBER = re.compile(r"\s*(?:([+-]?[0-9]+)|[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:nan|inf|infinity))\s*", re.IGNORECASE)  # fmt: skip


def _number(cell: str) -> Any:
    match = _NUMBER.fullmatch(cell)
    if match is None:
        return cell
    if match.group(1) is not None and len(cell) < 4300:  # int() takes at most 4300 digits
        return int(cell)
    return float(cell)


V1_PROTOCOL = V1()
MLFLOW_PROTOCOL = MLflow()
