"""Inference history: queries captured at the gateway (``writer.Capture``), kept as Parquet
files in the liveml home (``store.HistoryStore``), read back as records or as a typed
DataFrame (``frame.history_frame``)."""
from __future__ import annotations

from .store import SCHEMA, HistoryStore, status_filter
from .writer import Capture, CaptureConfig, sampled

__all__ = ["SCHEMA", "Capture", "CaptureConfig", "HistoryStore", "sampled", "status_filter"]
