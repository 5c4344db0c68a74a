"""Durations as the config and the API write them: `500ms`, `2s`, `5m`, `1h`, `30d`, or combined: `1m30s`."""

from __future__ import annotations

import datetime as dt
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise ValueError with a message fit for a user."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a duration like 500ms, 2s, 5m, 1h or 30d, got {text!r}")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"expected a duration like 500ms, 2s, 5m, 1h or 30d, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Return a short human form, the inverse of parse_duration for whole units."""
    if seconds < 1 and seconds != 0:
        return f"{_number(seconds * 1000)}ms"
    if seconds < 60 or seconds % 60:
        return f"{_number(seconds)}s"
    if seconds % 3600:
        return f"{_number(seconds / 60)}m"
    if seconds < 86400 or seconds % 86400:
        return f"{_number(seconds / 3600)}h"
    return f"{_number(seconds / 86400)}d"


def _number(value: float) -> str:
    # Never exponent notation (`1e+06`): parse_duration must read back what this writes.
    return f"{value:.3f}".rstrip("0").rstrip(".")


def parse_at(text: str) -> dt.datetime:
    """Parse an ISO 8601 time that carries an offset (`2026-12-01T03:00:00+01:00`, `...Z`); ValueError why."""
    try:
        when = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"expected an ISO 8601 time like 2026-12-01T03:00:00+01:00, got {text!r}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"the time needs an offset (like +01:00 or Z), got {text!r}")
    return when
