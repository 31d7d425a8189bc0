"""What both container targets share: the layout inside a service's image, and how images are named.

The Docker target builds the image (docker/build.py) and runs it; the Kubernetes target runs the
same image in pods (kubernetes/manifests.py). Both rely on this layout: v1's app root and port,
a non-root user, the models outside the app folder (so that the small app folder can be copied
into a writable volume on a read-only root), and where settings, keys, the hand-over socket and
collected data go.
"""

from __future__ import annotations

import os
from pathlib import Path

UID = 10001  # the image's non-root user (runAsUser on Kubernetes)
VENV = "/opt/mlmagics/venv"
RUNTIME = "/opt/mlmagics/runtime"
APP = "/var/azureml-app"  # v1's app root: the script's working directory
MODELS = "/opt/mlmagics/models"  # linked as APP/azureml-models, so that copying the app folder leaves them out
SECRETS = "/var/mlmagics"  # service.json and keys.json, put there by the Docker target
RUN_DIR = "/run/mlmagics"  # the hand-over socket's volume (serving/listener.py), made by the Docker target
DATA_DIR = "/var/mlmagics-data"  # collected model data, where a target mounts a persistent volume
STATE_FILE = "/tmp/mlmagics-state.json"  # the server's account of itself, which the HEALTHCHECK reads
PORT = 5001  # v1's container port (DOCKER_IMAGE_HTTP_PORT)
HEALTH_PORT = 5000  # v1's separate health port: probes and Prometheus, never published
SERVING = Path(__file__).resolve().parents[2] / "serving"  # the runtime an image carries (mlmagics/serving)


def image_repo() -> str:
    """The repository images are named under (`<repo>/<image name>:<version>`): $MLMAGICS_IMAGE_REPO, else mlmagics."""
    return (os.environ.get("MLMAGICS_IMAGE_REPO") or "mlmagics").strip("/")
