"""The scheduler's pure decisions (tables) and one tick over a real schedule table."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from trafficshift.models import Colour, Phase, Rollout
from trafficshift.scheduler import Decision, Scheduler, decide, next_wake
from trafficshift.schedules import Schedule, ScheduleState, ScheduleStore

GRACE = 600.0


@pytest.mark.parametrize(
    ("at", "now", "expected"),
    [
        (100.0, 99.0, Decision.WAIT),
        (100.0, 99.999, Decision.WAIT),
        (100.0, 100.0, Decision.RUN),  # on the dot
        (100.0, 100.5, Decision.RUN),
        (100.0, 100.0 + GRACE, Decision.RUN),  # late by exactly the grace: still runs
        (100.0, 100.001 + GRACE, Decision.MISSED),
        (100.0, 100.0 + 10 * GRACE, Decision.MISSED),
    ],
)
def test_decide(at: float, now: float, expected: Decision) -> None:
    assert decide(at=at, now=now, grace=GRACE) is expected


def test_decide_with_no_grace_runs_only_on_time() -> None:
    assert decide(at=5.0, now=5.0, grace=0.0) is Decision.RUN
    assert decide(at=5.0, now=5.1, grace=0.0) is Decision.MISSED


def _schedule(at: float) -> Schedule:
    return Schedule(
        id=f"s{at}", app="web", image="x:1", at=at, at_text="", state=ScheduleState.PENDING, created_at=0.0
    )


@pytest.mark.parametrize(
    ("ats", "now", "expected"),
    [
        ([], 10.0, 1.0),  # nothing pending: look again after the poll interval
        ([10.4], 10.0, pytest.approx(0.4)),  # wakes exactly at the next one
        ([12.0, 10.25], 10.0, pytest.approx(0.25)),
        ([5.0], 10.0, 1.0),  # overdue ones are handled by the tick, not waited for
        ([30.0], 10.0, 1.0),
    ],
)
def test_next_wake(ats: list[float], now: float, expected: float) -> None:
    assert next_wake(pending=[_schedule(a) for a in ats], now=now) == expected


def _rollout(rollout_id: str) -> Rollout:
    return Rollout(
        id=rollout_id,
        app="web",
        from_colour=None,
        from_image=None,
        to_colour=Colour.BLUE,
        to_image="x:1",
        steps=(100,),
        pause=0.0,
        phase=Phase.STARTING,
        step=-1,
        weights={},
        started_at=0.0,
        updated_at=0.0,
    )


async def test_tick_runs_due_schedules_once_records_missed_and_failed(tmp_path: Path) -> None:
    store = ScheduleStore(tmp_path)
    now = dt.datetime.now(dt.UTC)
    due = store.add(app="web", image="v2:1", at=now - dt.timedelta(seconds=5))
    missed = store.add(app="web", image="v3:1", at=now - dt.timedelta(hours=1))
    refused = store.add(app="api", image="v2:1", at=now - dt.timedelta(seconds=1))
    later = store.add(app="web", image="v4:1", at=now + dt.timedelta(hours=1))
    started: list[tuple[str, str]] = []

    async def start(app: str, image: str) -> Rollout:
        started.append((app, image))
        if app == "api":
            raise RuntimeError("another rollout of api is in progress")
        return _rollout("r1")

    scheduler = Scheduler(store=store, grace=GRACE, start=start)
    scheduler.tick(store.pending(), now=now.timestamp())
    scheduler.tick(store.pending(), now=now.timestamp())  # while firing: not started twice
    assert scheduler.firing(due.id)
    await asyncio.sleep(0.01)

    states = {s.id: s for s in store.all()}
    assert started == [("web", "v2:1"), ("api", "v2:1")]
    assert (states[due.id].state, states[due.id].rollout_id) == (ScheduleState.STARTED, "r1")
    assert states[missed.id].state is ScheduleState.MISSED
    assert "grace" in (states[missed.id].reason or "")
    assert states[refused.id].state is ScheduleState.FAILED
    assert "in progress" in (states[refused.id].reason or "")
    assert states[later.id].state is ScheduleState.PENDING
    assert not scheduler.firing(due.id)
    store.close()
