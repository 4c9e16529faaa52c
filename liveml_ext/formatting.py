"""Small pure functions that turn values into text for people (CLI, widgets, notebook).

They never raise on odd input: ``None`` and values of the wrong type come back as ``"-"`` or as
their ``str()``, so a rendering never fails over one missing field.
"""
from __future__ import annotations

import datetime as dt
import math

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float | int | None) -> str:
    """A byte count in binary units with one decimal: ``181_800_000`` → ``"173.4 MiB"``
    (below 1 KiB: ``"512 bytes"``)."""
    if n is None or not isinstance(n, (int, float)) or math.isnan(n):
        return "-"
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} bytes" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def number(x: float | int | None, decimals: int = 0) -> str:
    """A number with thousands separators and ``decimals`` decimals: ``1234567`` →
    ``"1,234,567"``, ``number(12.345, 1)`` → ``"12.3"``."""
    if x is None or not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{decimals}f}"


def money(x: float | int | None) -> str:
    """An amount with thousands separators and two decimals: ``476111.9`` → ``"476,111.90"``."""
    return number(x, 2)


def short_time(iso: str | dt.datetime | None) -> str:
    """An ISO time without microseconds or offset, as ``"2026-12-01 08:12:03"`` (the time as
    given; liveml's times are UTC)."""
    if iso is None or iso == "":
        return "-"
    if isinstance(iso, dt.datetime):
        return iso.strftime("%Y-%m-%d %H:%M:%S")
    text = str(iso)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text[:19].replace("T", " ")


def short_rid(rid: str | None) -> str:
    """The last 8 hex characters of a RID's uuid, enough to tell RIDs apart on screen:
    ``ri.models.main.submission.1b4e28ba-2fa1-11d2-883f-0016d3cca427`` → ``"d3cca427"``."""
    if not rid:
        return "-"
    return rid.rsplit(".", 1)[-1].replace("-", "")[-8:]


def duration(seconds: float | int | None) -> str:
    """Seconds in a sensible unit: ``0.0042`` → ``"4.2 ms"``, ``12.5`` → ``"12.5 s"``,
    ``4000`` → ``"1 h 6 min"``."""
    if seconds is None or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "-"
    s = float(seconds)
    if abs(s) < 1:
        return f"{s * 1000:.1f} ms"
    if abs(s) < 120:
        return f"{s:.1f} s"
    if abs(s) < 7200:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def percent(x: float | int | None) -> str:
    """A percentage (already in 0..100) with one decimal: ``42.123`` → ``"42.1 %"``."""
    if x is None or not isinstance(x, (int, float)) or math.isnan(x):
        return "-"
    return f"{x:.1f} %"


def quantity(value: float | int | None, unit: str) -> str:
    """A metric value in its unit, readable: bytes → KiB/MiB/GiB, percent, seconds/ms, counts
    with thousands separators; anything else as a number with up to 2 decimals and the unit."""
    u = (unit or "").lower()
    if u in ("bytes", "byte", "b"):
        return size(value)
    if u in ("percent", "%"):
        return percent(value)
    if u in ("seconds", "second", "s"):
        return duration(value)
    if u in ("ms", "milliseconds"):
        return duration(None if value is None else value / 1000)
    if value is None or not isinstance(value, (int, float)):
        return "-"
    if float(value).is_integer():
        return f"{number(value)} {unit}".rstrip()
    return f"{number(value, 2 if abs(value) < 100 else 1)} {unit}".rstrip()


def decimal(x: float | int | None, most: int = 4) -> str:
    """A number with thousands separators and at most ``most`` decimals, trailing zeros cut:
    ``1.5`` → ``"1.5"``, ``0.123456`` → ``"0.1235"``, ``2.0`` → ``"2"``."""
    text = number(x, most)
    return text.rstrip("0").rstrip(".") if "." in text else text
