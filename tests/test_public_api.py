"""`from mlmagics import …`: v1's names at the package's top, imported only when asked for."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mlmagics


def test_every_public_name_is_importable_from_the_package_and_is_the_cores():
    import mlmagics.core as core

    assert sorted(mlmagics.__all__) == sorted({*core.__all__, "VERSION"}), "one list of public names"
    for name in core.__all__:
        assert getattr(mlmagics, name) is getattr(core, name)
    assert mlmagics.VERSION == mlmagics.__version__, "v1's azureml.core.VERSION"


def test_importing_the_package_is_cheap_until_a_name_is_used():
    code = (
        "import sys, json, mlmagics; before = set(sys.modules); from mlmagics import Workspace; "
        "print(json.dumps([sorted(before), sorted(sys.modules)]))"
    )
    before, after = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout)  # fmt: skip
    heavy = {"mlmagics.core", "mlmagics.serving", "docker", "kubernetes", "IPython", "jupyter_server", "requests"}
    assert not heavy & set(before), "import mlmagics loads none of them (images import only mlmagics.serving)"
    assert "mlmagics.core" in after


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'Datastoore'"):
        mlmagics.Datastoore  # noqa: B018
    with pytest.raises(ImportError):
        exec("from mlmagics import Datastoore", {})
