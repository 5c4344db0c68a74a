"""Validation of the HTTP API's request bodies: each problem is a 400 that names the field and says why."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from trafficshift.durations import parse_at, parse_duration
from trafficshift.plan import check_steps
from trafficshift.stepping import check_weight

# Bodies are tiny JSON objects; anything bigger is refused before it is read (413).
MAX_BODY = 16 * 1024
# Docker references, [registry[:port]/]name[:tag][@digest], by the grammar of distribution/reference.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# A registry is told from a first path component by a dot, a port, or being localhost (as Docker does).
_REGISTRY = rf"(?:{_DOMAIN}(?:\.{_DOMAIN})+(?::[0-9]+)?|{_DOMAIN}:[0-9]+|localhost)/"
IMAGE_PATTERN = (
    rf"^(?:{_REGISTRY})?{_PATH}(?:/{_PATH})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@{_DIGEST})?$"
)
_IMAGE = re.compile(IMAGE_PATTERN)
MAX_IMAGE = 512
MAX_PAUSE = 24 * 3600.0
# The fields of each body, in the order the error for an unknown one lists them.
PROMOTE_FIELDS = ("image", "steps", "pause", "hold_at")
WEIGHT_FIELDS = ("weight",)
ROLLBACK_FIELDS = ("now",)
SCHEDULE_FIELDS = ("app", "image", "at")
# Event ids are SQLite integers (signed 64-bit); ASCII digits only (int() would also take "١٢" or " 12 ").
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


class ApiError(Exception):
    """An answer other than success: HTTP status, a message, and the body field at fault (if any)."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


def bad(field: str | None, why: str) -> ApiError:
    return ApiError(400, why, field=field)


@dataclass(frozen=True)
class PromoteRequest:
    image: str | None  # None: resume the app's interrupted rollout
    steps: tuple[int, ...] | None = None
    pause: float | None = None
    hold_at: int | None = None  # held at this percentage on the new colour until resumed


@dataclass(frozen=True)
class ScheduleRequest:
    app: str
    image: str
    at: dt.datetime


def parse_body(raw: bytes, *, required: bool) -> dict[str, Any]:
    """The JSON object in `raw` (an empty body is `{}` when the body is optional)."""
    if not raw.strip():
        if required:
            raise bad(None, "a JSON object is required")
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(None, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad(None, "the body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise bad(None, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _only(body: Mapping[str, Any], allowed: Collection[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad(key, f"unknown field (expected {', '.join(allowed)})")


def _image(body: Mapping[str, Any]) -> str:
    value = body.get("image")
    if value is None:
        raise bad("image", "required")
    if not isinstance(value, str) or len(value) > MAX_IMAGE or not _IMAGE.fullmatch(value):
        raise bad("image", f"expected an image reference like registry/name:tag, got {value!r}")
    return value


def promote_request(body: Mapping[str, Any]) -> PromoteRequest:
    """`{"image"?, "steps": [..]?, "pause": "5s"?}`: without an image, the resume of an interrupted rollout.

    Whether there is a rollout to resume is the route's question: the body alone cannot tell.
    """
    _only(body, PROMOTE_FIELDS)
    image = _image(body) if body.get("image") is not None else None
    steps = body.get("steps")
    if steps is not None:
        if not isinstance(steps, list):
            raise bad("steps", f"expected a list of percentages like [10, 50, 100], got {steps!r}")
        if why := check_steps(steps):
            raise bad("steps", why)
    pause = body.get("pause")
    seconds = None
    if pause is not None:
        if not isinstance(pause, str):
            raise bad("pause", f"expected a duration like 5s, got {pause!r}")
        try:
            seconds = parse_duration(pause)
        except ValueError as exc:
            raise bad("pause", str(exc)) from None
        if seconds > MAX_PAUSE:
            raise bad("pause", f"at most 24h, got {pause}")
    hold_at = body.get("hold_at")
    if hold_at is not None and (why := check_weight(hold_at)):
        raise bad("hold_at", why)
    return PromoteRequest(
        image=image, steps=tuple(steps) if steps is not None else None, pause=seconds, hold_at=hold_at
    )


def event_cursor(text: str, *, field: str) -> int:
    """The event id a stream resumes after (`Last-Event-ID`, or `?after=`): a whole number the store holds.

    Checked before the stream starts: a value SQLite cannot hold would fail the query mid-stream.
    """
    if not _EVENT_ID.fullmatch(text) or int(text) > MAX_EVENT_ID:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise bad(field, f"expected an event id (a whole number 0..{MAX_EVENT_ID}), got {shown!r}")
    return int(text)


def stream_flag(text: str | None, *, field: str) -> bool:
    """A yes/no query parameter of `GET /events` (`true`/`false`, `1`/`0`; absent is no)."""
    if text is None or text.lower() in ("false", "0", ""):
        return False
    if text.lower() in ("true", "1"):
        return True
    raise bad(field, f"expected true or false, got {text[:40]!r}")


def abort_request(body: Mapping[str, Any]) -> None:
    """Nothing, or `{}`: an abort takes no parameters (a field is refused rather than ignored)."""
    for key in body:
        raise bad(key, "unknown field (an abort takes no fields)")


def empty_request(body: Mapping[str, Any], *, what: str) -> None:
    """Nothing, or `{}`: a pause or resume takes no fields (a field is refused rather than ignored)."""
    for key in body:
        raise bad(key, f"unknown field ({what} takes no fields)")


def weight_request(body: Mapping[str, Any]) -> int:
    """`{"weight": 30}`: the new colour's percentage, a whole number 1..100."""
    _only(body, WEIGHT_FIELDS)
    if "weight" not in body:
        raise bad("weight", "required")
    weight = body["weight"]
    if why := check_weight(weight):
        raise bad("weight", why)
    return int(weight)


def rollback_request(body: Mapping[str, Any]) -> bool:
    """`{"now": false}`, optional; returns `now`."""
    _only(body, ROLLBACK_FIELDS)
    now = body.get("now", False)
    if not isinstance(now, bool):
        raise bad("now", f"expected true or false, got {now!r}")
    return now


def schedule_request(body: Mapping[str, Any], *, apps: Collection[str], now: dt.datetime) -> ScheduleRequest:
    """`{"app", "image", "at"}`: a known app, an image, a time with offset that is still ahead."""
    _only(body, SCHEDULE_FIELDS)
    app = body.get("app")
    if app is None:
        raise bad("app", "required")
    if not isinstance(app, str) or app not in apps:
        raise bad("app", f"unknown app {app!r} (apps: {', '.join(sorted(apps)) or 'none'})")
    image = _image(body)
    at_text = body.get("at")
    if at_text is None:
        raise bad("at", "required")
    if not isinstance(at_text, str):
        raise bad("at", f"expected an ISO 8601 time with offset, got {at_text!r}")
    try:
        at = parse_at(at_text)
    except ValueError as exc:
        raise bad("at", str(exc)) from None
    if at <= now:
        raise bad("at", f"{at_text} is in the past (now is {now.isoformat(timespec='seconds')})")
    return ScheduleRequest(app=app, image=image, at=at)
