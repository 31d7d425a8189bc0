"""The mlmagics scoring server: runs Azure ML v1 scoring scripts (`init()` + `run()`) unchanged.

It is the runtime inside every target (a local process, a Docker image, a Kubernetes pod)
and imports nothing from the rest of mlmagics; `requirements.txt` next to this file is
everything an image installs for it.

    python -m mlmagics.serving score.py --model-dir azureml-models --port 5001
"""
