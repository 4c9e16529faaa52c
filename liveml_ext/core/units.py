"""Sizes as operators write them (``"256MiB"``, ``"1GiB"``): one parser for the models, the
profiles and both backends."""
from __future__ import annotations

import re

from .errors import InvalidArgument

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30,
          "gib": 2**30, "ti": 2**40, "tib": 2**40}


def parse_memory(value: str | int) -> int:
    """``"256MiB"``, ``"1GiB"``, ``"512M"`` or a byte count -> bytes."""
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise InvalidArgument(f"memory {value!r} is not a size such as '256MiB' or '1GiB'",
                              field="memory", value=str(value))
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
