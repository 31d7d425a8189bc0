"""`from azureml.monitoring import ModelDataCollector` inside a scoring script."""

from mlmagics.serving.datacollection import ModelDataCollector

__all__ = ["ModelDataCollector"]
