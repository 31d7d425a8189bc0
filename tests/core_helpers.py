"""Small builders for core tests: scripts, models and a workspace in a temporary folder."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from mlmagics.core import ContainerImage, Image, Model, Workspace

ECHO_SCRIPT = """
import json
VERSION = {version!r}

def init():
    global model_text
    from azureml.core.model import Model
    model_text = open(Model.get_model_path({model!r})).read().strip()

def run(raw_data):
    return {{"version": VERSION, "model": model_text, "input": json.loads(raw_data)}}
"""

FAILING_INIT = """
def init():
    raise RuntimeError("the model file is corrupt")

def run(raw_data):
    return raw_data
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def echo_image(
    ws: Workspace, folder: Path, name: str = "echo", version: str = "v1", model_name: str = "tiny", script: str | None = None
) -> Image:
    """A registered text model and an image serving it with a script that answers its version."""
    model_file = write(folder / f"{model_name}.txt", f"weights of {model_name}\n")
    try:
        model = Model(ws, model_name)
    except Exception:
        model = Model.register(ws, model_file, model_name)
    write(folder / "score.py", script or ECHO_SCRIPT.format(version=version, model=model_name))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
        return Image.create(ws, name, [model], config)
    finally:
        os.chdir(cwd)
