"""Imports run one way (ARCHITECTURE.md): faces -> core -> runtime, no circle inside the core or the runtime,
and the core never imports a target: each target registers itself (grimp reads the imports, function-level
and TYPE_CHECKING ones included)."""

from __future__ import annotations

import grimp
import pytest

FACES = ("mlmagics.magics", "mlmagics.widgets", "mlmagics.cli", "mlmagics.display", "mlmagics.arguments",
         "mlmagics.server", "mlmagics.quickstart")  # fmt: skip


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("mlmagics", include_external_packages=False)


def _within(graph, package: str) -> list[str]:
    return sorted(m for m in graph.modules if m == package or m.startswith(package + "."))


@pytest.mark.parametrize("package", ["mlmagics.core", "mlmagics.serving"])
def test_no_import_circle(graph, package):
    circles = sorted(
        {
            tuple(sorted((a, b)))
            for a in _within(graph, package)
            for b in graph.find_modules_directly_imported_by(a)
            if b.startswith(package) and b != a and graph.find_shortest_chain(importer=b, imported=a)
        }
    )
    assert circles == [], f"modules of {package} that import each other, directly or not: {circles}"


# what an image carries of mlmagics besides serving/ (core/targets/docker/build.py: the package's root, importing nothing)
IMAGE_ROOT = {"mlmagics", "mlmagics._version"}


def test_the_runtime_imports_nothing_of_the_rest(graph):
    found = {
        (a, b)
        for a in _within(graph, "mlmagics.serving")
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith("mlmagics.") and not b.startswith("mlmagics.serving") and b not in IMAGE_ROOT
    }
    assert found == set(), "every image carries mlmagics/serving and the package's root alone"


def test_the_core_imports_no_face(graph):
    found = {
        (a, b)
        for a in _within(graph, "mlmagics.core")
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith(FACES)
    }
    assert found == set()


def test_nothing_in_the_core_imports_a_target_but_the_targets_and_the_core_package_itself(graph):
    found = {
        (a, b)
        for a in _within(graph, "mlmagics.core")
        if a != "mlmagics.core" and not a.startswith("mlmagics.core.targets")
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith("mlmagics.core.targets")
    }
    assert found == set(), "targets register themselves (__init_subclass__); services, configs, images ask the registry"
