"""liveml: live, scalable, monitored REST endpoints for models, from the notebook.

The core (``core``, ``store``, ``controller``, ``backends``, ``gateway``) is plain Python; the
Jupyter server extension lives in ``extension`` and is loaded only by Jupyter.
"""
from __future__ import annotations

from typing import Any

from liveml_runtime import Column, ModelAdapter, ModelApi, Parameter, Tabular

__version__ = "0.1.0"
__all__ = ["Column", "ModelAdapter", "ModelApi", "Parameter", "Tabular", "__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import LiveMLExtension

    return [{"module": "liveml_ext", "app": LiveMLExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter labextension develop --overwrite .`` only: it links the built extension
    (``labextension/dist`` of a source checkout) into the environment; wheels ship it instead."""
    return [{"src": "../labextension/dist", "dest": "liveml-labextension"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext liveml_ext``: the ``%liveml`` and ``%%liveml`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
