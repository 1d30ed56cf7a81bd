"""Wall-clock durations given on the command line: every ``--time-budget`` (train, tune) is
read by :func:`parse_duration`, so ``5m``, ``90s``, ``1h30m`` and ``300`` mean the same
everywhere."""

from __future__ import annotations

import math
import re

from edgeseg.errors import EdgesegError

__all__ = ["parse_duration"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int, what: str = "--time-budget") -> float:
    """``"5m"`` -> 300.0; also ``"90s"``, ``"1.5h"``, ``"1m30s"`` and plain seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|h|m|s|)", s)
        if not s or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(min|h|m|s|)", "", s).strip():
            raise EdgesegError(f"{what}: expected a duration such as 5m, 90s or 300, got '{text}'")
        seconds = sum(float(v) * _UNITS[u] for v, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise EdgesegError(f"{what}: expected a positive duration, got '{text}'")
    return seconds
