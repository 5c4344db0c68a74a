"""The scheduler's pure decisions (tables) and one tick over a real schedule table."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import time
from pathlib import Path

import pytest

import trafficshift.service.scheduler as scheduler_module
from trafficshift.errors import LockedError
from trafficshift.models import Colour, Phase, Rollout
from trafficshift.service.scheduler import POLL, Decision, Scheduler, decide, next_wake, retry_delay
from trafficshift.store.aio import AsyncScheduleStore
from trafficshift.store.schedules import Schedule, ScheduleState

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
    store = AsyncScheduleStore(tmp_path)
    now = dt.datetime.now(dt.UTC)
    due = await store.add(app="web", image="v2:1", at=now - dt.timedelta(seconds=5))
    missed = await store.add(app="web", image="v3:1", at=now - dt.timedelta(hours=1))
    refused = await store.add(app="api", image="v2:1", at=now - dt.timedelta(seconds=1))
    later = await store.add(app="web", image="v4:1", at=now + dt.timedelta(hours=1))
    started: list[tuple[str, str]] = []
    # The due schedule's start waits for this: without it, it could end (and stop firing) during the ticks.
    recorded = asyncio.Event()

    async def start(app: str, image: str) -> Rollout:
        started.append((app, image))
        if app == "api":
            raise RuntimeError("another rollout of api is in progress")
        await recorded.wait()
        return _rollout("r1")

    scheduler = Scheduler(store=store, grace=GRACE, start=start)
    await scheduler.tick(await store.pending(), now=now.timestamp())
    await scheduler.tick(await store.pending(), now=now.timestamp())  # while firing: not started twice
    assert scheduler.firing(due.id)
    recorded.set()
    await _settle_tasks(scheduler, due.id, refused.id)

    states = {s.id: s for s in await store.all()}
    assert started == [("web", "v2:1"), ("api", "v2:1")]
    assert (states[due.id].state, states[due.id].rollout_id) == (ScheduleState.STARTED, "r1")
    assert states[missed.id].state is ScheduleState.MISSED
    assert "grace" in (states[missed.id].reason or "")
    assert states[refused.id].state is ScheduleState.FAILED
    assert "in progress" in (states[refused.id].reason or "")
    assert states[later.id].state is ScheduleState.PENDING
    assert not scheduler.firing(due.id)
    await store.aclose()


async def _settle_tasks(scheduler: Scheduler, *ids: str) -> None:
    """Wait until none of these schedules is firing (its promote started, refused or failed: recorded)."""
    for _ in range(1000):  # 5 s at most
        if not any(scheduler.firing(i) for i in ids):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still firing after 5 s: {[i for i in ids if scheduler.firing(i)]}")


async def test_a_busy_app_leaves_a_due_schedule_pending_until_the_grace_runs_out(tmp_path: Path) -> None:
    store = AsyncScheduleStore(tmp_path)
    now = time.time()
    busy = await store.add(app="web", image="v2:1", at=dt.datetime.fromtimestamp(now - 1, dt.UTC))
    stuck = await store.add(app="api", image="v2:1", at=dt.datetime.fromtimestamp(now - 1, dt.UTC))
    refusals = {"web": 2, "api": 1000}
    started: list[str] = []

    async def start(app: str, image: str) -> Rollout:
        started.append(app)
        if refusals[app] > 0:
            refusals[app] -= 1
            raise LockedError(app)  # e.g. the recovery abort at start-up holds the app
        return _rollout("r9")

    scheduler = Scheduler(store=store, grace=30, start=start)
    for tick in range(3):
        await scheduler.tick(await store.pending(), now=now + tick)
        await _settle_tasks(scheduler, busy.id, stuck.id)
    got = {s.id: s for s in await store.all()}
    assert (got[busy.id].state, got[busy.id].rollout_id) == (ScheduleState.STARTED, "r9")
    assert got[stuck.id].state is ScheduleState.PENDING  # still within the grace: tried again next tick
    assert started.count("api") == 3

    await scheduler.tick(await store.pending(), now=now + 60)  # the grace has passed
    await _settle_tasks(scheduler, stuck.id)
    failed = await store.get(stuck.id)
    assert failed is not None
    assert failed.state is ScheduleState.FAILED
    assert "in progress" in (failed.reason or "")
    assert "grace" in (failed.reason or "")
    await store.aclose()


async def test_a_grace_below_the_poll_interval_still_runs_a_schedule_the_loop_reaches_late(
    tmp_path: Path,
) -> None:
    store = AsyncScheduleStore(tmp_path)

    async def start(app: str, image: str) -> Rollout:
        return _rollout("r1")

    assert Scheduler(store=store, grace=0, start=start).grace == POLL
    at = 1000.0
    assert (
        decide(at=at, now=at + 0.3, grace=Scheduler(store=store, grace=0, start=start).grace) is Decision.RUN
    )
    await store.aclose()


async def test_a_schedule_is_claimed_once_and_a_crash_while_firing_does_not_fire_it_again(
    tmp_path: Path,
) -> None:
    store = AsyncScheduleStore(tmp_path)
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    created = await store.add(app="web", image="v2:1", at=at)
    lost = await store.add(app="web", image="v3:1", at=at)
    assert await store.claim(created.id)
    assert not await store.claim(created.id)  # a second tick, or a second service: not again
    assert await store.claim(lost.id)
    await store.aclose()  # killed while both were firing: one had created its rollout, the other had not

    reopened = AsyncScheduleStore(tmp_path)
    fired: list[str] = []

    async def start(app: str, image: str) -> Rollout:
        fired.append(image)
        return _rollout("r-new")

    async def find_rollout(schedule: Schedule) -> str | None:
        return "r-before" if schedule.image == "v2:1" else None

    scheduler = Scheduler(store=reopened, grace=GRACE, start=start, find_rollout=find_rollout)
    await scheduler.recover()
    await scheduler.tick(await reopened.pending(), now=time.time())
    await _settle_tasks(scheduler, created.id, lost.id)
    got = {s.id: s for s in await reopened.all()}
    assert (got[created.id].state, got[created.id].rollout_id) == (ScheduleState.STARTED, "r-before")
    assert (got[lost.id].state, got[lost.id].rollout_id) == (ScheduleState.STARTED, "r-new")
    assert fired == ["v3:1"]
    await reopened.aclose()


async def test_a_bug_while_firing_is_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = AsyncScheduleStore(tmp_path)
    due = await store.add(app="web", image="v2:1", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

    async def start(app: str, image: str) -> Rollout:
        return None  # type: ignore[return-value]  # a bug: no rollout

    scheduler = Scheduler(store=store, grace=GRACE, start=start)
    with caplog.at_level(logging.ERROR, logger="trafficshift.scheduler"):
        await scheduler.tick(await store.pending(), now=time.time())
        await _settle_tasks(scheduler, due.id)
    assert any(r.exc_info is not None for r in caplog.records)
    got = await store.get(due.id)
    assert got is not None
    assert got.state is ScheduleState.FAILED
    await store.aclose()


def test_retry_delay_doubles_up_to_a_bound() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 6, 7, 50)] == [1, 2, 4, 8, 16, 30, 30, 30]


async def test_a_store_error_is_retried_and_never_ends_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Disk full or a lock held past the timeout: the loop logs it, backs off and fires the schedule after."""
    monkeypatch.setattr(scheduler_module, "RETRY_FIRST", 0.01)
    store = AsyncScheduleStore(tmp_path)
    due = await store.add(app="web", image="x:2", at=dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=50))
    failures = [sqlite3.OperationalError("database is locked"), sqlite3.OperationalError("disk I/O error")]
    real_pending = store.pending

    async def pending() -> list[Schedule]:
        if failures:
            raise failures.pop(0)
        return await real_pending()

    monkeypatch.setattr(store, "pending", pending)
    started: list[str] = []

    async def start(app: str, image: str) -> Rollout:
        started.append(image)
        return _rollout("r1")

    scheduler = Scheduler(store=store, grace=GRACE, start=start)
    with caplog.at_level(logging.ERROR, logger="trafficshift.scheduler"):
        loop = asyncio.create_task(scheduler.run())
        async with asyncio.timeout(5):
            while (s := await store.get(due.id)) is None or s.state is not ScheduleState.STARTED:
                assert not loop.done(), loop.exception()
                await asyncio.sleep(0.01)
    assert started == ["x:2"]
    assert not loop.done()  # still running: the service goes on
    assert [r.getMessage() for r in caplog.records] == [
        "schedules: cannot read or update them (OperationalError: database is locked); retrying in 0.01s",
        "schedules: cannot read or update them (OperationalError: disk I/O error); retrying in 0.02s",
    ]
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await store.aclose()
