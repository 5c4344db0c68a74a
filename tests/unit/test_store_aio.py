"""The async store: each call on its connection's own thread, never on the loop; results as before."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from trafficshift.errors import LockedError, UsageError
from trafficshift.models import AppState, Colour, Outcome, Phase, Rollout
from trafficshift.store.aio import AsyncScheduleStore, AsyncStateStore, StoreThread
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleState

BLUE, GREEN = Colour.BLUE, Colour.GREEN


async def _create(store: AsyncStateStore, app: str = "web") -> Rollout:
    return await store.create_rollout(
        app=app,
        from_state=AppState(app=app, colour=BLUE, image="a:1"),
        to_colour=GREEN,
        to_image="a:2",
        steps=(50, 100),
        pause=1.0,
    )


class _Opened:
    """Remembers the thread that made it, as a sqlite3 connection does."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.closed_on: int | None = None

    def close(self) -> None:
        self.closed_on = threading.get_ident()


def _where(opened: _Opened) -> tuple[int, int]:
    return opened.thread, threading.get_ident()


async def test_a_store_thread_opens_runs_and_closes_on_one_thread_that_is_not_the_loops() -> None:
    worker = StoreThread(_Opened, name="test-store")
    calls = await asyncio.gather(*(worker.run(_where) for _ in range(20)))
    opened_on = {opener for opener, _ in calls}
    ran_on = {runner for _, runner in calls}
    assert opened_on == ran_on
    assert len(ran_on) == 1
    assert threading.get_ident() not in ran_on
    await worker.aclose()
    with pytest.raises(RuntimeError):
        await worker.run(_where)


async def test_a_commit_that_waits_for_the_database_does_not_hold_the_loop(tmp_path: Path) -> None:
    store = AsyncStateStore(tmp_path)
    rollout = await _create(store)
    # Another writer (a CLI promote, say) holds the database's write lock: the commit has to wait for it.
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    commit = asyncio.create_task(store.advance(rollout, message="step 1/2", phase=Phase.SHIFTING, step=0))
    loop = asyncio.get_running_loop()
    lags = []
    for _ in range(20):
        started = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - started - 0.01)
    assert not commit.done()  # still waiting for the lock ...
    assert max(lags) < 0.1  # ... while the loop went on (on the loop, it would have stood still)
    other.execute("COMMIT")
    other.close()
    advanced = await commit
    assert advanced.phase is Phase.SHIFTING
    active = await store.active_rollout("web")
    assert active is not None
    assert active.phase is Phase.SHIFTING
    await store.aclose()


async def test_reads_see_every_write_that_has_returned(tmp_path: Path) -> None:
    store = AsyncStateStore(tmp_path)
    before = await store.last_event_seq()

    async def rollout_of(app: str) -> Rollout:
        r = await _create(store, app)
        r = await store.advance(
            r, message="step 1", phase=Phase.SHIFTING, step=0, weights={BLUE: 50, GREEN: 50}
        )
        assert await store.active_rollout(app) == r  # the reader's connection sees the writer's commit
        r = await store.advance(r, message="step 2", step=1, weights={GREEN: 100})
        live = AppState(app=app, colour=GREEN, image="a:2")
        return await store.finish(r, outcome=Outcome.DONE, reason=None, live=live)

    apps = [f"app{n}" for n in range(30)]
    done = await asyncio.gather(*(rollout_of(app) for app in apps))
    for app, r in zip(apps, done, strict=True):
        assert await store.app_state(app) == AppState(app=app, colour=GREEN, image="a:2", recorded=True)
        assert await store.active_rollout(app) is None
        assert [h.id for h in await store.history(app)] == [r.id]
        messages = [e.message for e in await store.events(after=before, rollout_id=r.id)]
        assert messages[1:] == ["step 1", "step 2", "done"]  # each rollout's commits in its call order
    assert await store.outcome_counts() == {(app, "done"): 1 for app in apps}
    assert await store.last_event_seq() == before + 4 * len(apps)
    overview = await store.overview(["app0", "nothing"])
    assert overview == {
        "app0": (AppState("app0", GREEN, "a:2", recorded=True), None),
        "nothing": (AppState("nothing"), None),
    }
    await store.aclose()


async def test_errors_reach_the_caller_and_abort_requests_the_reader(tmp_path: Path) -> None:
    store = AsyncStateStore(tmp_path)
    r = await _create(store)
    with pytest.raises(LockedError):
        await _create(store)  # one active rollout per app, checked in the writer's transaction
    assert await store.abort_requested(r.id) is None
    await store.request_abort(r.id, reason="by hand")
    assert await store.abort_requested(r.id) == "by hand"
    assert await store.rollout(r.id) == r
    assert await store.rollout_of(app="web", image="a:2", since=r.started_at) == r
    await store.aclose()


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    writer = StateStore(tmp_path)
    r = writer.create_rollout(
        app="web", from_state=AppState(app="web"), to_colour=BLUE, to_image="a:1", steps=(100,), pause=0.0
    )
    reader = StateStore(tmp_path, read_only=True)
    assert reader.rollout(r.id) == r
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.request_abort(r.id, reason="no")
    assert writer.abort_requested(r.id) is None
    reader.close()
    writer.close()


async def test_closing_lands_every_commit_already_made_then_refuses_more(tmp_path: Path) -> None:
    store = AsyncStateStore(tmp_path)
    rollouts = [await _create(store, f"app{n}") for n in range(20)]
    queued = [asyncio.create_task(store.advance(r, message="queued", phase=Phase.READY)) for r in rollouts]
    await asyncio.sleep(0)  # each task has handed its commit to the writer's thread
    await store.aclose()
    assert [r.phase for r in await asyncio.gather(*queued)] == [Phase.READY] * 20
    with pytest.raises(RuntimeError):
        await store.app_state("app0")
    reopened = StateStore(tmp_path)
    assert [reopened.active_rollout(f"app{n}").phase for n in range(20)] == [Phase.READY] * 20  # type: ignore[union-attr]
    reopened.close()


def test_a_store_that_cannot_open_raises_the_usual_error_and_leaves_no_thread(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    threads = threading.active_count()
    with pytest.raises(UsageError, match="state_dir"):
        AsyncStateStore(not_a_folder)
    with pytest.raises(UsageError, match="state_dir"):
        AsyncScheduleStore(not_a_folder)
    for thread in threading.enumerate():
        if thread.name.startswith(("state-", "schedules")):
            thread.join(timeout=5)
    assert threading.active_count() == threads


async def test_a_schedule_is_claimed_once_among_concurrent_claimers(tmp_path: Path) -> None:
    schedules = AsyncScheduleStore(tmp_path)
    due = await schedules.add(app="web", image="a:2", at=dt.datetime.now(dt.UTC))
    assert [s.id for s in await schedules.pending()] == [due.id]
    claims = await asyncio.gather(*(schedules.claim(due.id) for _ in range(10)))
    assert claims.count(True) == 1
    assert [s.id for s in await schedules.firing()] == [due.id]
    assert await schedules.unclaim(due.id, reason="busy")
    assert await schedules.settle(due.id, state=ScheduleState.CANCELLED, reason="by hand")
    got = await schedules.get(due.id)
    assert got is not None
    assert (got.state, got.reason) == (ScheduleState.CANCELLED, "by hand")
    assert [s.id for s in await schedules.all()] == [due.id]
    await schedules.aclose()
