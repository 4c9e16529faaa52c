"""Readable numbers, sizes, times and ids for the CLI and the notebook (pure functions)."""
from __future__ import annotations

import datetime as dt


def size(n: float) -> str:
    """Bytes as B, KiB, MiB or GiB (one decimal above bytes)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def number(x: float, decimals: int = 4) -> str:
    """A number with thousands separators and at most ``decimals`` decimals, trailing zeros cut."""
    text = f"{float(x):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(x: float) -> str:
    """A money-like value: thousands separators and two decimals (476,111.90)."""
    return f"{float(x):,.2f}"


def short_time(iso: str) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC, no microseconds)."""
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def short_rid(rid: str) -> str:
    """The last eight characters of a RID's uuid."""
    return rid.rsplit(".", 1)[-1].replace("-", "")[-8:]
