"""`from azureml.core import Model` inside a scoring script."""

from .model import Model

__all__ = ["Model"]
