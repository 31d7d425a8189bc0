"""Check a scoring script in milliseconds, before anything is built or deployed.

    problems = check_script(Path("score.py").read_text())
    [p.message for p in problems if p.level == "error"]

It reads the script (it never imports it, so a script that loads a model at import time
costs nothing here) and reports what would make the deployment fail later, slowly:

- a syntax error;
- no `init()` or `run()` at module level;
- a `run()` signature the server cannot call (`*args`, `**kwargs`, positional-only, no input);
- `@input_schema('x', ...)` naming a parameter `run` does not have (the seed's printed script),
  `@rawhttp` together with `@input_schema`, two `@output_schema`;
- imports that neither the standard library, the scoring runtime, this environment, nor the
  image's requirements provide; `azureml` names the runtime does not offer.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from .environments import distributions_for_imports, normalise

# What `azureml.*` offers inside a scoring script (mlmagics.serving.compat).
AZUREML_PROVIDED = {
    "azureml": set(),
    "azureml.core": {"Model"},
    "azureml.core.model": {"Model"},
    "azureml.contrib": set(),
    "azureml.contrib.services": {"aml_request", "aml_response"},
    "azureml.contrib.services.aml_request": {"AMLRequest", "rawhttp"},
    "azureml.contrib.services.aml_response": {"AMLResponse"},
    "azureml.monitoring": {"ModelDataCollector"},
}
RUNTIME_MODULES = {"werkzeug", "azureml"}  # importable inside every image


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{'line ' + str(self.line) + ': ' if self.line else ''}{self.message}"


@dataclass
class ScriptFacts:
    """What the check learnt, for the image's environment and the faces."""

    problems: list[Problem]
    third_party_imports: set[str]
    style: str = "text"  # text | schema | raw
    run_params: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _run_checks(run: ast.FunctionDef, problems: list[Problem], raw_flag: bool) -> tuple[str, tuple[str, ...]]:
    args = run.args
    if args.vararg or args.kwarg or args.posonlyargs:
        problems.append(Problem("error", "run() cannot accept positional-only arguments, *args, or **kwargs.", run.lineno))
    params = tuple(a.arg for a in args.args + args.kwonlyargs)
    inputs = [p for p in params if p != "request_headers"]
    if not inputs:
        problems.append(Problem("error", "run() needs to accept an argument for input data.", run.lineno))
    schema_names, outputs = [], 0
    for deco in run.decorator_list:
        name = _decorator_name(deco)
        if name == "input_schema" and isinstance(deco, ast.Call) and deco.args:
            first = deco.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                schema_names.append((first.value, deco.lineno))
        elif name == "output_schema":
            outputs += 1
    for name, line in schema_names:
        if name not in params:
            problems.append(
                Problem(
                    "error",
                    f"@input_schema({name!r}, ...) names a parameter that run({', '.join(params)}) does not have: every "
                    f"request would fail (v1 answers 400 'A value is not provided for the {inputs[0] if inputs else name!r} "
                    f"parameter.'). Rename run's parameter to {name!r}.",
                    line,
                )
            )
    if outputs > 1:
        problems.append(Problem("error", "run() has more than one @output_schema", run.lineno))
    if raw_flag and schema_names:
        problems.append(Problem("error", "run() cannot be decorated with both @rawhttp and @input_schema", run.lineno))
    style = "raw" if raw_flag else "schema" if schema_names or outputs else "text"
    return style, params


def _imports(tree: ast.Module) -> Iterable[tuple[str, list[str], int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [a.name for a in node.names], node.lineno


def _check_azureml(module: str, names: list[str], line: int, problems: list[Problem]) -> None:
    if module not in AZUREML_PROVIDED:
        problems.append(
            Problem(
                "error",
                f"'{module}' is not available in the scoring runtime; it offers "
                "azureml.core.model.Model, azureml.contrib.services and azureml.monitoring",
                line,
            )
        )
        return
    offered = AZUREML_PROVIDED[module]
    for name in names:
        if name not in offered and f"{module}.{name}" not in AZUREML_PROVIDED:
            problems.append(
                Problem(
                    "error",
                    f"'from {module} import {name}': the scoring runtime offers only "
                    f"{', '.join(sorted(offered)) or 'submodules'} there",
                    line,
                )
            )


def check_script(
    source: str, filename: str = "score.py", requirements: set[str] | None = None, local_modules: Iterable[str] = ()
) -> ScriptFacts:
    """Read `source` and report problems. `requirements`: normalised distribution names the
    image will install (None: only this environment counts). `local_modules`: modules shipped
    next to the script (its `dependencies`)."""
    problems: list[Problem] = []
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        return ScriptFacts([Problem("error", f"syntax error: {e.msg}", e.lineno)], set())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    imported = {
        (a.asname or a.name).split(".")[0] for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
    }
    for name in ("init", "run"):
        if name not in functions and name not in assigned | imported:
            problems.append(Problem("error", f"the script has no {name}() function; a scoring script defines init() and run()"))
        elif isinstance(functions.get(name), ast.AsyncFunctionDef):
            problems.append(
                Problem("error", f"{name}() is 'async def'; the server calls it as a plain function", functions[name].lineno)
            )
    raw_flag = any(_decorator_name(d) == "rawhttp" for f in functions.values() for d in f.decorator_list)
    style, params = "text", tuple[str, ...]()
    run = functions.get("run")
    if isinstance(run, ast.FunctionDef):
        style, params = _run_checks(run, problems, raw_flag)
    third_party = _check_imports(tree, problems, requirements, set(local_modules))
    return ScriptFacts(problems, third_party, style, params)


def _check_imports(tree: ast.Module, problems: list[Problem], requirements: set[str] | None, local: set[str]) -> set[str]:
    third_party: set[str] = set()
    for module, names, line in _imports(tree):
        top = module.split(".")[0]
        if top == "azureml":
            _check_azureml(module, names, line, problems)
            continue
        if module == "sklearn.externals" and "joblib" in names or module == "sklearn.externals.joblib":
            problems.append(
                Problem(
                    "warning",
                    "sklearn.externals.joblib was removed in scikit-learn 0.23; the runtime "
                    "maps it to joblib (write `import joblib`)",
                    line,
                )
            )
            third_party.add("joblib")
        if top in sys.stdlib_module_names or top in RUNTIME_MODULES or top in local:
            continue
        if importlib.util.find_spec(top) is None:
            if requirements is None or not any(normalise(top) == r for r in requirements):
                problems.append(
                    Problem(
                        "error",
                        f"imports '{top}', which is not installed in this environment"
                        + ("" if requirements is None else " nor listed in the image's requirements"),
                        line,
                    )
                )
            continue
        third_party.add(top)
    if requirements is not None:
        pins, _ = distributions_for_imports(third_party)
        for pinned in pins:
            dist = pinned.split("==")[0]
            if normalise(dist) not in requirements:
                problems.append(
                    Problem(
                        "error",
                        f"the script imports a module of {dist}, which the image's requirements do "
                        f"not list; add '{pinned}' (the version installed here)",
                    )
                )
    return third_party
