"""Smoke checks (`smoke:` of an app): HTTP requests sent through Traefik whose answers must look right.

Pure: parsing a status range, the Host a check carries, the verdict on one answer (smoke_requests.py
sends the requests). The engine sends them to the new colour through a temporary pinned router (models.Pin,
matched on `SMOKE_HEADER`) before any public weight; `trafficshift smoke APP` sends them to the live colour
through the app's own router.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trafficshift.models import SmokeCheck

# The header that the temporary smoke router matches; its value is the rollout's id (or a one-off token).
SMOKE_HEADER = "X-Trafficshift-Smoke"
# How much of a failing answer's body the reason quotes.
BODY_HEAD = 200

_RANGE = re.compile(r"([1-5])xx|([1-5][0-9][0-9])-([1-5][0-9][0-9])")
_HOST = re.compile(r"Host\(\s*`([^`]+)`")


def parse_status(text: str) -> tuple[int, int] | None:
    """`2xx` -> (200, 299), `200-204` -> (200, 204); None for anything else (a low above its high too)."""
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return None
    if match.group(1) is not None:
        low = int(match.group(1)) * 100
        return low, low + 99
    low, high = int(match.group(2)), int(match.group(3))
    return (low, high) if low <= high else None


def status_text(status: tuple[int, int]) -> str:
    low, high = status
    if low == high:
        return str(low)
    if low % 100 == 0 and high == low + 99:
        return f"{low // 100}xx"
    return f"{low}-{high}"


def host_of(rule: str) -> str | None:
    """The first host of an app's rule (`Host(`web.example.com`)`): the Host header smoke requests carry."""
    match = _HOST.search(rule)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Answer:
    """What one smoke request got: a status and the start of its body, or the error that stood for one."""

    status: int | None
    body: str = ""
    error: str | None = None


def judge(check: SmokeCheck, answer: Answer) -> str | None:
    """None when the answer passes `check`; otherwise the reason, naming the request and the answer."""
    request = f"{check.method} {check.path}"
    if answer.status is None:
        return f"smoke check {request}: {answer.error or 'no answer'}"
    head = answer.body[:BODY_HEAD]
    got = f"answered {answer.status}, body {head!r}"
    low, high = check.status
    if not low <= answer.status <= high:
        return f"smoke check {request}: {got} (expected {status_text(check.status)})"
    if check.body is not None and check.body not in answer.body:
        return f"smoke check {request}: {got} (expected the body to contain {check.body!r})"
    return None
