"""Load a v1 `score.py` and learn how its `run()` wants to be called.

Three input styles, chosen exactly as azureml-inference-server-http chooses them:

- `@rawhttp` anywhere in the script -> `run(request)` gets the HTTP request object;
- `run` decorated with inference-schema's `@input_schema` -> keyword arguments taken from
  the JSON body (inference-schema converts them);
- otherwise -> the body as a `str`.

A parameter named `request_headers` receives the request headers in every style.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from . import compat

RAW, SCHEMA, TEXT = "raw", "schema", "text"


class ScriptError(Exception):
    """The script cannot be served; the message says why and what to change."""


@dataclass
class LoadFailure:
    stage: str  # "import", "check" or "init"
    message: str
    traceback: str


@dataclass
class ScoringScript:
    path: str  # absolute path of the entry script ("" -> `import main`)
    style: str = TEXT
    params: list[inspect.Parameter] = field(default_factory=list)
    first_param: str = ""
    wants_headers: bool = False
    run: Callable[..., Any] | None = None
    init: Callable[[], Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def load(self) -> None:
        """Import the script and inspect `run`; raise ScriptError or the import's own error."""
        compat.install()
        module = _import(self.path)
        for name in ("init", "run"):
            if not callable(getattr(module, name, None)):
                raise ScriptError(f"{_where(module)} has no {name}() function; a scoring script defines init() and run()")
        driver = getattr(module, "driver_module", None)
        # Generated driver scripts forward run() to the real script; call that one directly (as v1 does).
        self.run = driver.run if isinstance(driver, ModuleType) and hasattr(driver, "run") else module.run
        self.init = module.init
        self._analyse()

    def _analyse(self) -> None:
        params = list(inspect.signature(self.run).parameters.values())
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params):
            raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.wants_headers = any(p.name == "request_headers" for p in params)
        self.params = [p for p in params if p.name != "request_headers"]
        if not self.params:
            raise ScriptError(
                'run() needs to accept an argument other than "request_headers".'
                if self.wants_headers
                else "run() needs to accept an argument for input data."
            )
        self.first_param = self.params[0].name
        decorated = schema_decorated(self.run)
        if compat.raw_http_requested():
            if decorated:
                raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
            self.style = RAW
        elif decorated:
            self.style = SCHEMA
            self.warnings.extend(schema_lint(self.run, [p.name for p in self.params]))
        else:
            self.style = TEXT

    def input_properties(self) -> dict[str, Any]:
        """The JSON schema of each of run()'s inputs, by name, as its inference-schema decorators declare them."""
        if self.style != SCHEMA:
            return {}
        from inference_schema.schema_util import get_input_schema

        return (get_input_schema(self.run) or {}).get("properties", {})

    def row_params(self) -> list[str]:
        """run()'s inputs whose schema is an array: those that take rows (an MLflow request's, a batch's)."""
        properties = self.input_properties()
        return [p.name for p in self.params if properties.get(p.name, {}).get("type") == "array"]

    def call(self, kwargs: dict[str, Any], headers: dict[str, str] | None) -> Any:
        if self.wants_headers:
            return self.run(**kwargs, request_headers=headers or {})
        return self.run(**kwargs)


def _where(module: ModuleType) -> str:
    return getattr(module, "__file__", None) or module.__name__


def _import(path: str) -> ModuleType:
    if not path:
        import main  # the 2019 images' convention: the script copied as main.py

        return main
    if not os.path.isfile(path):
        raise ScriptError(f"entry script {path} does not exist")
    spec = importlib.util.spec_from_file_location("entry_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["entry_module"] = module
    spec.loader.exec_module(module)
    return module


def schema_decorated(run: Callable) -> bool:
    if "inference_schema" not in sys.modules:
        return False
    from inference_schema.schema_util import is_schema_decorated

    return is_schema_decorated(run)


def schema_lint(run: Callable, param_names: list[str]) -> list[str]:
    """Schema decorators that name a parameter `run` does not have (the seed's printed script).

    Such a script still deploys and answers as v1 did (400 for `{"data": ...}`), but it
    cannot work; say so before a user finds out from a client.
    """
    from inference_schema.schema_util import get_input_schema

    declared = list((get_input_schema(run) or {}).get("properties", {}))
    missing = [name for name in declared if name not in param_names]
    return [
        f"@input_schema({name!r}, ...) names a parameter that run({', '.join(param_names)}) does not have: "
        f"requests will fail (v1 answers 400 'A value is not provided for the {param_names[0]!r} parameter.'). "
        f"Rename run's parameter to {name!r}."
        for name in missing
    ]


_SERVING_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(exc: BaseException) -> str:
    """The traceback as the script's author needs it: the server's own frames (mlmagics/serving)
    and the import machinery's are left out, so the first frame shown is the script's."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = [f for f in summary.stack if not f.filename.startswith(_SERVING_DIR) and not f.filename.startswith("<frozen")]
    if frames:  # a failure inside the server itself keeps every frame
        summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format())


def describe_failure(stage: str, exc: BaseException) -> LoadFailure:
    """A one-line reason plus the traceback, for the log and the readiness answer."""
    text = user_traceback(exc)
    if isinstance(exc, ScriptError):
        message = str(exc)
    elif stage == "init":
        message = f"init() raised {type(exc).__name__}: {exc}"
    else:
        message = f"importing the script raised {type(exc).__name__}: {exc}"
    return LoadFailure(stage, message, text)
