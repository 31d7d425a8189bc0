"""What an image needs installed: pip requirements, pinned to the versions in this environment.

An image's environment comes from, in order: a conda file (its pip section and the conda
packages that exist on PyPI under the same name), a requirements file, or — when neither is
given — the scoring script's own imports. Every requirement without a version is pinned to
the version installed here, where the model was trained: a model pickled with
scikit-learn 1.9 is served by scikit-learn 1.9, not by whatever is newest on the day the
image is built (the silent cause of many failed v1 deployments).
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import pickletools
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from packaging.markers import InvalidMarker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from .errors import UserError

# Provided by the scoring runtime itself, never installed from a requirement.
RUNTIME_PROVIDED = {
    "azureml-defaults",
    "azureml-core",
    "azureml-contrib-services",
    "azureml-monitoring",
    "azureml-inference-server-http",
    "flask",
    "gunicorn",
}
# Conda packages that are not Python packages on PyPI.
CONDA_ONLY = {"python", "pip", "setuptools", "wheel", "libgcc", "libstdcxx-ng", "mkl", "blas", "openblas", "cudatoolkit"}
# Conda names that differ on PyPI.
CONDA_TO_PYPI = {"pytorch": "torch", "py-xgboost": "xgboost", "pytables": "tables"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


@dataclass
class EnvironmentSpec:
    python: str  # "3.11": the Python the image runs
    requirements: list[str] = field(default_factory=list)  # pip lines, pinned where this environment knows a version
    source: str = "inferred"  # inferred | requirements | conda
    unpinned: list[str] = field(default_factory=list)  # requirements not installed here, left as written
    dropped: list[str] = field(default_factory=list)  # lines the runtime provides or that are not pip packages

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EnvironmentSpec:
        return cls(**data)

    def requirement_names(self) -> set[str]:
        return {normalise(split_requirement(r)[0]) for r in self.requirements}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(line: str) -> tuple[str, str, str]:
    """'scikit-learn[x]>=1.0' -> ('scikit-learn', '[x]', '>=1.0')."""
    match = _NAME.match(line)
    if not match:
        raise UserError(f"cannot read the requirement {line!r}")
    return match.group(1), match.group(2) or "", match.group(3).strip()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pin(line: str, unpinned: list[str]) -> str:
    name, extras, spec = split_requirement(line)
    if spec or line.strip().startswith(("-", "git+", "http")):
        return line.strip()
    version = installed_version(name)
    if version is None:
        unpinned.append(name)
        return line.strip()
    return f"{name}{extras}=={version}"


def read_requirements(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def read_conda(text: str) -> tuple[str | None, list[str]]:
    """(python version, pip-installable requirements) from a conda environment file's text."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"the conda file is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise UserError("the conda file is not a YAML mapping (name, channels, dependencies)")
    python: str | None = None
    requirements: list[str] = []
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            requirements.extend(str(p) for p in dep.get("pip") or [])
            continue
        text = str(dep).split("::")[-1]
        name, _, version = text.partition("=")
        if name.strip() == "python":
            python = version.strip("=") or None
            continue
        if name.strip() in CONDA_ONLY:
            continue
        pypi = CONDA_TO_PYPI.get(name.strip(), name.strip())
        version = version.strip("=")
        requirements.append(f"{pypi}=={version}" if version and "*" not in version else pypi)
    return python, requirements


def distributions_for_imports(modules: set[str]) -> tuple[list[str], list[str]]:
    """(pinned requirements, modules no installed distribution provides) for top-level import names."""
    mapping = metadata.packages_distributions()
    found, missing = {}, []
    for module in sorted(modules):
        dists = mapping.get(module)
        if not dists:
            missing.append(module)
            continue
        name = dists[0]
        found[normalise(name)] = f"{name}=={installed_version(name)}"
    return sorted(found.values()), missing


def build_spec(
    third_party_imports: set[str], requirements_file: Path | None = None, conda_text: str | None = None
) -> EnvironmentSpec:
    """The environment an image gets (see the module docstring for the order of sources)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if conda_text is not None:
        conda_python, lines = read_conda(conda_text)
        source = "conda"
        if conda_python:
            python = ".".join(conda_python.split(".")[:2])
    elif requirements_file is not None:
        lines, source = read_requirements(requirements_file), "requirements"
    else:
        lines, _ = distributions_for_imports(third_party_imports)
        source = "inferred"
    spec = EnvironmentSpec(python=python, source=source)
    for line in lines:
        name = normalise(split_requirement(line)[0]) if not line.startswith(("-", "git+", "http")) else ""
        if name in RUNTIME_PROVIDED:
            spec.dropped.append(line)
        else:
            spec.requirements.append(pin(line, spec.unpinned))
    return spec


def pickled_modules(path: Path, limit: int = 64 * 1024 * 1024) -> set[str]:
    """Top-level modules a pickle (or joblib file) refers to, read from its opcodes — never loaded.

    A script often unpickles a scikit-learn model without importing sklearn itself; the
    image still needs scikit-learn, and this is how an inferred environment learns it.
    """
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    modules: set[str] = set()
    for file in files:
        if file.suffix not in {".pkl", ".pickle", ".joblib", ".sav", ".p", ""} or file.stat().st_size > limit:
            continue
        with open(file, "rb") as f:
            if f.read(1) != b"\x80":  # pickle protocol 2+ marker; anything else is not ours to read
                continue
            f.seek(0)
            strings: list[str] = []
            try:
                for opcode, arg, _ in pickletools.genops(f):
                    if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                        modules.add(arg.split(" ")[0].split(".")[0])
                    elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") and isinstance(arg, str):
                        strings.append(arg)
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        modules.add(strings[-2].split(".")[0])
            except Exception:  # noqa: BLE001 - joblib appends raw array bytes after the pickle; stop there
                pass
    # memoised strings make the STACK_GLOBAL guess imperfect: keep only names that are importable here
    return {m for m in modules if m.isidentifier() and m not in sys.stdlib_module_names and importlib.util.find_spec(m)}


def with_dependencies(names: set[str]) -> set[str]:
    """`names` (normalised distributions) and everything they pull in, as installed here: a script may import
    numpy when the requirements list only scikit-learn."""
    found, todo = set(names), list(names)
    while todo:
        try:
            requires = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            try:
                requirement = Requirement(line)
                if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                    continue
            except (InvalidRequirement, InvalidMarker, UndefinedEnvironmentName):
                continue
            name = normalise(requirement.name)
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


def reconcile_with_models(spec: EnvironmentSpec, model_modules: set[str]) -> list[str]:
    """Make the requirements installable beside what the models were pickled with: the versions installed
    here win over pins that exclude them (an old notebook's numpy==1.23 beside today's scikit-learn), and so
    does this Python. Returns one warning per change, saying exactly what changed; the spec is edited in place."""
    if not model_modules:
        return []
    needed, _ = distributions_for_imports(model_modules)
    here = {normalise(p.split("==")[0]): p.split("==")[1] for p in needed}
    here.update({name: v for name in with_dependencies(set(here)) if (v := installed_version(name)) and name not in here})
    warnings = []
    for i, line in enumerate(spec.requirements):
        if line.startswith(("-", "git+", "http")):
            continue
        name, extras, specifier = split_requirement(line)
        version = here.get(normalise(name))
        if version is None or not specifier:
            continue
        try:
            allowed = SpecifierSet(specifier.split(";")[0])
        except InvalidSpecifier:
            continue
        if version not in allowed:
            spec.requirements[i] = f"{name}{extras}=={version}"
            warnings.append(f"{line} -> {name}{extras}=={version}: the model was pickled with {name} {version}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if spec.python != python:
        warnings.append(f"python {spec.python} -> {python}: the model's packages are installed for this Python")
        spec.python = python
    return warnings
