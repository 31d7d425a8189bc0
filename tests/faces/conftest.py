"""The faces (magics, widgets, CLI) run as their users run them: a real IPython shell, widgets set and clicked
headlessly, the `mlmagics` command as a subprocess."""

from __future__ import annotations

import pytest

SCHEMA_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType([{"row": 0, "total": 3.0}]))
def run(data, scale=1.0):
    return [{"row": i, "total": float(r.sum() * scale)} for i, r in enumerate(data)]
"""


@pytest.fixture(scope="session")
def schema_script() -> str:
    """A score.py with inference-schema decorators: run(data, scale=1.0) answers each row's total times scale."""
    return SCHEMA_SCRIPT
