"""Request bodies of the HTTP API: every refusal names the field and says why."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from trafficshift.service.requests import (
    ApiError,
    PromoteRequest,
    abort_request,
    parse_body,
    promote_request,
    rollback_request,
    schedule_request,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"image": "example/web:2.0"}, PromoteRequest(image="example/web:2.0")),
        ({"image": "localhost:5000/web:2"}, PromoteRequest(image="localhost:5000/web:2")),
        ({"image": "web@sha256:" + "a" * 64}, PromoteRequest(image="web@sha256:" + "a" * 64)),
        (
            {"image": "web:2", "steps": [10, 50, 100], "pause": "1m30s"},
            PromoteRequest(image="web:2", steps=(10, 50, 100), pause=90.0),
        ),
        (
            {"image": "web:2", "steps": [100], "pause": "0s"},
            PromoteRequest(image="web:2", steps=(100,), pause=0.0),
        ),
        # No image: the resume of an interrupted rollout (whether there is one, the route asks the runner).
        ({}, PromoteRequest(image=None)),
        ({"image": None}, PromoteRequest(image=None)),
    ],
)
def test_promote_request(body: dict[str, Any], expected: PromoteRequest) -> None:
    assert promote_request(body) == expected


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"image": 3}, "image", "image reference"),
        ({"image": ""}, "image", "image reference"),
        ({"image": "Web:1"}, "image", "image reference"),  # Docker repositories are lowercase
        ({"image": "web:1 --rm"}, "image", "image reference"),
        ({"image": "x" * 600}, "image", "image reference"),
        ({"image": "web:1", "steps": "10,100"}, "steps", "list"),
        ({"image": "web:1", "steps": []}, "steps", "at least one"),
        ({"image": "web:1", "steps": [50, 10, 100]}, "steps", "rise"),
        ({"image": "web:1", "steps": [10, 50]}, "steps", "end at 100"),
        ({"image": "web:1", "steps": [True, 100]}, "steps", "whole percentage"),
        ({"image": "web:1", "pause": 5}, "pause", "duration"),
        ({"image": "web:1", "pause": "soon"}, "pause", "duration"),
        ({"image": "web:1", "pause": "25h"}, "pause", "24h"),
        ({"image": "web:1", "colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_promote_request_refuses(body: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(ApiError, match=why) as info:
        promote_request(body)
    assert (info.value.status, info.value.field) == (400, field)
    assert info.value.body() == {"error": info.value.message, "field": field}


@pytest.mark.parametrize(
    ("raw", "required", "expected"),
    [(b"", False, {}), (b"  \n", False, {}), (b'{"now": true}', True, {"now": True})],
)
def test_parse_body(raw: bytes, required: bool, expected: dict[str, Any]) -> None:
    assert parse_body(raw, required=required) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [(b"", "required"), (b"{nope", "not valid JSON"), (b"[1]", "JSON object"), (b"\xff", "not valid JSON")],
)
def test_parse_body_refuses(raw: bytes, why: str) -> None:
    with pytest.raises(ApiError, match=why) as info:
        parse_body(raw, required=True)
    assert (info.value.status, info.value.field) == (400, None)


def test_rollback_request() -> None:
    assert rollback_request({}) is False
    assert rollback_request({"now": True}) is True
    for body, field in [({"now": "yes"}, "now"), ({"now": 1}, "now"), ({"later": True}, "later")]:
        with pytest.raises(ApiError) as info:
            rollback_request(body)
        assert info.value.field == field


def test_schedule_request() -> None:
    wanted = schedule_request(
        {"app": "web", "image": "web:2", "at": "2026-06-01T14:00:01+02:00"}, apps={"web"}, now=NOW
    )
    assert (wanted.app, wanted.image, wanted.at.timestamp() - NOW.timestamp()) == ("web", "web:2", 1.0)


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"image": "web:2", "at": "2026-06-02T00:00:00Z"}, "app", "required"),
        ({"app": "api", "image": "web:2", "at": "2026-06-02T00:00:00Z"}, "app", "unknown app"),
        ({"app": "web", "at": "2026-06-02T00:00:00Z"}, "image", "required"),
        ({"app": "web", "image": "web:2"}, "at", "required"),
        ({"app": "web", "image": "web:2", "at": 1767225600}, "at", "ISO 8601"),
        ({"app": "web", "image": "web:2", "at": "2026-06-02T00:00:00"}, "at", "offset"),
        ({"app": "web", "image": "web:2", "at": "2026-06-01T12:00:00Z"}, "at", "in the past"),  # now is past
        ({"app": "web", "image": "web:2", "at": "2026-06-01T13:59:00+02:00"}, "at", "in the past"),
        ({"app": "web", "image": "web:2", "at": "2027-01-01T00:00:00Z", "x": 1}, "x", "unknown field"),
    ],
)
def test_schedule_request_refuses(body: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(ApiError, match=why) as info:
        schedule_request(body, apps={"web"}, now=NOW)
    assert (info.value.status, info.value.field) == (400, field)


def test_a_deeply_nested_body_is_a_400_not_a_crash() -> None:
    with pytest.raises(ApiError) as info:
        parse_body(b"[" * 5000 + b"]" * 5000, required=True)
    assert (info.value.status, info.value.field) == (400, None)
    assert "nested" in info.value.message


def test_an_abort_takes_no_fields() -> None:
    abort_request({})
    with pytest.raises(ApiError) as info:
        abort_request({"reason": "why not"})
    assert (info.value.status, info.value.field) == (400, "reason")
