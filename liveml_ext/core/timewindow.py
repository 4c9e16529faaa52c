"""Time windows for log and metric queries: ``--since 1h`` or ``--start``/``--end``."""
from __future__ import annotations

import datetime as dt
import re

from .errors import InvalidArgument

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"1h30m"`` -> a timedelta."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise InvalidArgument(f"{text!r} is not a duration such as '15m', '1h' or '7d'",
                              field="since", value=text)
    return dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def parse_time(text: str, field: str) -> dt.datetime:
    """An ISO 8601 time (UTC when no offset is given)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(f"{field} {text!r} is not an ISO 8601 time such as "
                              "2026-11-26T10:00:00Z", field=field, value=text) from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def window(since: str | None = None, start: str | None = None, end: str | None = None,
           default: str = "1h") -> tuple[dt.datetime, dt.datetime]:
    """The [start, end] of a query: explicit times win; else the last ``since``."""
    now = dt.datetime.now(dt.UTC)
    stop = parse_time(end, "end") if end else now
    if start:
        begin = parse_time(start, "start")
    else:
        begin = stop - parse_duration(since or default)
    if begin > stop:
        raise InvalidArgument("start is after end", field="start")
    return begin, stop
