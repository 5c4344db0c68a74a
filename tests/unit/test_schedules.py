"""Schedule times and the durable schedule table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from trafficshift.durations import parse_at
from trafficshift.store.schedules import ScheduleState, ScheduleStore, schedule_dict


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-12-01T03:00:00+01:00", "2026-12-01T02:00:00+00:00"),
        ("2026-12-01T03:00:00Z", "2026-12-01T03:00:00+00:00"),
        ("2026-12-01T03:00:00.250-05:30", "2026-12-01T08:30:00.250000+00:00"),
        ("2026-12-01 03:00+00:00", "2026-12-01T03:00:00+00:00"),
    ],
)
def test_parse_at_accepts_times_with_an_offset(text: str, utc: str) -> None:
    assert parse_at(text).astimezone(dt.UTC).isoformat() == utc


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-12-01T03:00:00", "offset"),
        ("2026-12-01", "offset"),
        ("tomorrow", "ISO 8601"),
        ("", "ISO 8601"),
        ("2026-13-01T03:00:00Z", "ISO 8601"),
    ],
)
def test_parse_at_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_at(text)


def test_schedules_are_durable_and_settle_once(tmp_path: Path) -> None:
    store = ScheduleStore(tmp_path)
    at = parse_at("2099-01-01T00:00:00+02:00")
    first = store.add(app="web", image="x:1", at=at)
    second = store.add(app="web", image="x:2", at=at + dt.timedelta(minutes=1))
    store.close()

    reopened = ScheduleStore(tmp_path)  # as after a restart of the service
    assert [s.id for s in reopened.pending()] == [first.id, second.id]
    assert reopened.settle(first.id, state=ScheduleState.CANCELLED, reason="by hand")
    assert not reopened.settle(first.id, state=ScheduleState.STARTED, rollout_id="r1")  # not pending any more
    assert reopened.settle(second.id, state=ScheduleState.STARTED, rollout_id="r2")
    cancelled, started = reopened.all()
    assert (cancelled.state, cancelled.fired_at, cancelled.reason) == (
        ScheduleState.CANCELLED,
        None,
        "by hand",
    )
    assert (started.state, started.rollout_id) == (ScheduleState.STARTED, "r2")
    assert started.fired_at is not None
    doc = schedule_dict(started)
    assert doc["at"] == "2099-01-01T00:01:00+02:00"  # as written, offset kept
    assert (doc["state"], doc["rollout"]) == ("started", "r2")
    assert reopened.get("nope") is None
    assert reopened.pending() == []
    reopened.close()
