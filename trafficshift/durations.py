"""Durations as the config and the API write them: `500ms`, `2s`, `5m`, `1h`, or a combination like `1m30s`."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise ValueError with a message fit for a user."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a duration like 500ms, 2s, 5m or 1h, got {text!r}")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"expected a duration like 500ms, 2s, 5m or 1h, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Return a short human form, the inverse of parse_duration for whole units."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    if seconds % 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
