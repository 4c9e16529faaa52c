"""Inference history: queries captured at the gateway (``writer.Capture``), kept as Parquet
files in the liveml home (``store.HistoryStore``), read back as records or as a typed
DataFrame (``frame.history_frame``)."""
from __future__ import annotations

from .store import PAIR_SCHEMA, SCHEMA, HistoryStore, status_filter
from .writer import Capture, CaptureConfig, query_id, sampled

__all__ = ["PAIR_SCHEMA", "SCHEMA", "Capture", "CaptureConfig", "HistoryStore", "query_id",
           "sampled", "status_filter"]
