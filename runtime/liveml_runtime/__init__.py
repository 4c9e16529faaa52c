"""liveml replica runtime: loads a model artifact and serves inference over HTTP.

Importable without Jupyter (and without the control plane): a replica process, or a container
image, needs only this package and the model's own requirements.
"""
from .adapter import ModelAdapter, load_model
from .api import Column, ModelApi, Parameter, Tabular

__all__ = ["Column", "ModelAdapter", "ModelApi", "Parameter", "Tabular", "load_model"]
