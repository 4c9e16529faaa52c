"""Structured JSON log lines: one object per record, tagged with the replica's identity."""
from __future__ import annotations

import datetime as dt
import logging
import sys
import traceback
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with ``tags`` (node_id, deployment RID, release)."""

    def __init__(self, tags: dict[str, str]) -> None:
        super().__init__()
        self.tags = tags

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "tags": self.tags,
        }
        extra = getattr(record, "fields", None)
        if extra:
            doc["fields"] = extra
        if record.exc_info:
            doc["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(doc, default=str).decode()


def configure(tags: dict[str, str], level: int = logging.INFO) -> None:
    """Route every logger (the model's own included) to JSON lines on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(tags))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per gateway call otherwise
    logging.captureWarnings(True)  # Python warnings (pyspark's about pandas, say) as records


def step(logger: logging.Logger, message: str, **fields: Any) -> None:
    """Log one startup step with structured fields."""
    logger.info(message, extra={"fields": fields})


def current_tags() -> dict[str, str]:
    """The tags the JSON handler on the root logger writes (for the JVM's own log lines)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return dict(handler.formatter.tags)
    return {}
