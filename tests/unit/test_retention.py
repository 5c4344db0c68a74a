"""Pruning of old events and schedules (`service.retention`) over a real state store."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from trafficshift.models import AppState, Colour, Outcome, Phase, Rollout
from trafficshift.service import retention
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleState, ScheduleStore

DAY = 86400.0
NOW = time.time()
CUTOFF = NOW - 30 * DAY


def _rollout(store: StateStore, app: str, *, steps: int, finish: bool) -> Rollout:
    """A rollout of `app` with `steps` shifting events (and its start and end events)."""
    r = store.create_rollout(
        app=app, from_state=AppState(app=app), to_colour=Colour.BLUE, to_image="x:1", steps=(100,), pause=0
    )
    for step in range(steps):
        r = store.advance(r, message=f"step {step}", phase=Phase.SHIFTING, step=step)
    if finish:
        r = store.finish(r, outcome=Outcome.DONE, reason=None, live=AppState(app=app, colour=Colour.BLUE))
    return r


def _age(state_dir: Path, sql: str, *args: object) -> None:
    """Move records back in time (the store stamps them with now)."""
    db = sqlite3.connect(state_dir / "state.db", isolation_level=None)
    db.execute(sql, args)
    db.close()


def _events_of(store: StateStore, rollout: Rollout) -> int:
    return len(store.events(rollout_id=rollout.id))


def test_old_events_of_finished_rollouts_go_those_of_active_and_recent_ones_stay(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    old = _rollout(store, "old", steps=4, finish=True)
    recent = _rollout(store, "recent", steps=2, finish=True)
    active = _rollout(store, "active", steps=3, finish=False)  # started long ago, still in progress
    _age(tmp_path, "UPDATE rollouts SET started_at = ?, ended_at = ? WHERE id = ?", NOW - 40 * DAY,
         NOW - 40 * DAY, old.id)  # fmt: skip
    _age(tmp_path, "UPDATE rollouts SET started_at = ?, ended_at = ? WHERE id = ?", NOW - 29 * DAY,
         NOW - 29 * DAY, recent.id)  # fmt: skip
    _age(tmp_path, "UPDATE rollouts SET started_at = ? WHERE id = ?", NOW - 60 * DAY, active.id)
    _age(tmp_path, "UPDATE events SET at = ?", NOW - 60 * DAY)
    before = {r.id: _events_of(store, r) for r in (old, recent, active)}
    last = store.last_event_seq()

    pruned = retention.prune(tmp_path, before=CUTOFF, batch=2, pause=0)

    assert pruned == retention.Pruned(events=before[old.id], schedules=0)
    assert before[old.id] == 6  # more than one batch of 2
    assert _events_of(store, old) == 0
    assert _events_of(store, recent) == before[recent.id]
    assert _events_of(store, active) == before[active.id]
    assert store.rollout(old.id) is not None  # the record stays: history, rollback
    # Sequence numbers go on from the highest ever given, whatever was pruned.
    after = store.advance(store.active_rollout("active") or active, message="later")
    assert store.events(after=last)[-1].message == "later"
    assert after.id == active.id
    store.close()


def test_old_finished_schedules_go_pending_firing_and_recent_ones_stay(tmp_path: Path) -> None:
    schedules = ScheduleStore(tmp_path)
    when = dt.datetime.fromtimestamp(NOW - 40 * DAY, dt.UTC)
    ids = {}
    for state in ScheduleState:
        ids[state] = schedules.add(app="web", image="x:1", at=when).id
    future_cancelled = schedules.add(app="web", image="x:1", at=when + dt.timedelta(days=400)).id
    fired_recently = schedules.add(app="web", image="x:1", at=when).id
    for state in (ScheduleState.STARTED, ScheduleState.FAILED, ScheduleState.MISSED, ScheduleState.CANCELLED):
        assert schedules.settle(ids[state], state=state)
    assert schedules.claim(ids[ScheduleState.FIRING])
    assert schedules.settle(future_cancelled, state=ScheduleState.CANCELLED)
    assert schedules.settle(fired_recently, state=ScheduleState.FAILED)  # late by far, but fired just now
    _age(tmp_path, "UPDATE schedules SET fired_at = ? WHERE id != ?", NOW - 40 * DAY, fired_recently)
    _age(tmp_path, "UPDATE schedules SET fired_at = NULL WHERE state = 'pending'")

    pruned = retention.prune(tmp_path, before=CUTOFF, batch=3, pause=0)

    assert pruned == retention.Pruned(events=0, schedules=4)
    left = {s.id: s.state for s in schedules.all()}
    assert left == {
        ids[ScheduleState.PENDING]: ScheduleState.PENDING,
        ids[ScheduleState.FIRING]: ScheduleState.FIRING,
        future_cancelled: ScheduleState.CANCELLED,
        fired_recently: ScheduleState.FAILED,
    }
    schedules.close()


def test_a_stopped_pass_ends_between_batches(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    old = _rollout(store, "old", steps=4, finish=True)
    _age(tmp_path, "UPDATE rollouts SET ended_at = ? WHERE id = ?", NOW - 40 * DAY, old.id)
    stop = threading.Event()
    stop.set()
    assert retention.prune(tmp_path, before=CUTOFF, batch=2, pause=0, stop=stop) == retention.Pruned()
    assert _events_of(store, old) == 6
    store.close()


async def test_the_background_pass_repeats_and_survives_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []
    real_prune = retention.prune

    def prune(state_dir: Path, *, before: float, stop: threading.Event) -> retention.Pruned:
        calls.append(before)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_prune(state_dir, before=before, stop=stop, pause=0)

    monkeypatch.setattr(retention, "prune", prune)
    store = StateStore(tmp_path)
    old = _rollout(store, "old", steps=1, finish=True)
    _age(tmp_path, "UPDATE rollouts SET ended_at = ? WHERE id = ?", NOW - 40 * DAY, old.id)
    with caplog.at_level(logging.INFO, logger="trafficshift.retention"):
        task = asyncio.create_task(retention.run(tmp_path, retention=30 * DAY, every=0.01))
        async with asyncio.timeout(5):
            while _events_of(store, old) or len(calls) < 3:  # noqa: ASYNC110 (the store offers no event)
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Each pass cuts at its own now - retention (CUTOFF was taken when the module was imported).
    assert all(abs(before - (time.time() - 30 * DAY)) < 60 for before in calls)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "pruning the state older than 30d failed: database is locked"
    assert messages[1] == "pruned 3 event(s) of finished rollouts and 0 finished schedule(s) older than 30d"
    assert len(messages) == 2  # nothing left to prune: nothing said
    store.close()
