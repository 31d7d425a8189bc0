"""mlmagics: from a trained model in a notebook to a running, versioned web service.

`%load_ext mlmagics` adds the notebook magics; `from mlmagics import Workspace, Model, ...`
is the Python API (names as in the Azure ML v1 SDK). Importing this package is cheap: the
scoring runtime (`mlmagics.serving`) is imported inside images that hold nothing else.
"""

__version__ = "0.1.0"
