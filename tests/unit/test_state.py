from __future__ import annotations

import asyncio
import errno
import multiprocessing
import multiprocessing.synchronize
import os
import sqlite3
from pathlib import Path

import pytest

from trafficshift.errors import LockedError, TrafficShiftError, UsageError
from trafficshift.models import AppState, Colour, Outcome, Phase
from trafficshift.store.locks import AppLock, LockRole
from trafficshift.store.rollouts import StateStore

BLUE, GREEN = Colour.BLUE, Colour.GREEN


def test_a_rollout_is_recorded_step_by_step_and_survives_reopening(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    r = store.create_rollout(
        app="web",
        from_state=AppState(app="web", colour=BLUE, image="a:1"),
        to_colour=GREEN,
        to_image="a:2",
        steps=(10, 100),
        pause=1.0,
    )
    assert r.weights == {BLUE: 100}
    r = store.advance(r, phase=Phase.SHIFTING, step=0, weights={BLUE: 90, GREEN: 10}, message="step 1")
    store.close()

    reopened = StateStore(tmp_path)
    active = reopened.active_rollout("web")
    assert active is not None
    assert (active.phase, active.step, dict(active.weights)) == (Phase.SHIFTING, 0, {BLUE: 90, GREEN: 10})
    assert [e.message for e in reopened.events(rollout_id=r.id)][-1] == "step 1"

    done = reopened.finish(
        active, outcome=Outcome.DONE, reason=None, live=AppState(app="web", colour=GREEN, image="a:2")
    )
    assert done.phase is Phase.DONE
    assert reopened.active_rollout("web") is None
    assert reopened.app_state("web") == AppState(app="web", colour=GREEN, image="a:2", recorded=True)
    assert [h.id for h in reopened.history("web")] == [r.id]


def test_only_one_active_rollout_per_app(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    kwargs = dict(
        app="web", from_state=AppState(app="web"), to_colour=BLUE, to_image="a:1", steps=(100,), pause=0.0
    )
    store.create_rollout(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(LockedError):
        store.create_rollout(**kwargs)  # type: ignore[arg-type]


def test_abort_requests_reach_the_rollout(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    r = store.create_rollout(
        app="web", from_state=AppState(app="web"), to_colour=BLUE, to_image="a:1", steps=(100,), pause=0.0
    )
    assert store.abort_requested(r.id) is None
    StateStore(tmp_path).request_abort(r.id, reason="by hand")
    assert store.abort_requested(r.id) == "by hand"


def test_lock_is_exclusive_and_reports_holders(tmp_path: Path) -> None:
    with AppLock(tmp_path, "web"):
        with pytest.raises(LockedError):
            AppLock(tmp_path, "web").acquire()
        assert AppLock(tmp_path, "web").is_held_elsewhere()
        AppLock(tmp_path, "api").acquire()  # other apps are independent
    assert not AppLock(tmp_path, "web").is_held_elsewhere()


def _hold_and_die(path: str, ready: multiprocessing.synchronize.Event) -> None:
    import os

    AppLock(Path(path), "web").acquire()
    ready.set()
    os._exit(9)  # like kill -9: no cleanup runs


def test_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_and_die, args=(str(tmp_path), ready))
    proc.start()
    proc.join(10)
    assert ready.is_set()
    lock = AppLock(tmp_path, "web")
    lock.acquire()
    lock.release()


def test_testing_the_lock_never_takes_it(tmp_path: Path) -> None:
    probe = AppLock(tmp_path, "web")
    assert not probe.is_held_elsewhere()
    holder = AppLock(tmp_path, "web")
    holder.acquire()  # the probe left nothing behind that could make this fail
    assert probe.is_held_elsewhere()
    holder.release()
    assert not probe.is_held_elsewhere()


def _hold_until_told(
    path: str, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event
) -> None:
    lock = AppLock(Path(path), "web")
    lock.acquire()
    ready.set()
    stop.wait(10)


def test_a_lock_held_by_another_process_is_seen_and_refused(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_until_told, args=(str(tmp_path), ready, stop))
    proc.start()
    try:
        assert ready.wait(10)
        assert AppLock(tmp_path, "web").is_held_elsewhere()
        assert not AppLock(tmp_path, "web").try_acquire()
    finally:
        stop.set()
        proc.join(10)
    assert AppLock(tmp_path, "web").try_acquire()


def test_an_unusable_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(UsageError, match=r"the state folder .*state \(state_dir\) is not a folder"):
        StateStore(blocker)


def test_the_holder_names_its_role_and_a_rollout_waits_out_only_the_provider(tmp_path: Path) -> None:
    provider = AppLock(tmp_path, "web")
    assert provider.try_acquire(LockRole.PROVIDER)
    assert AppLock(tmp_path, "web").holder() is LockRole.PROVIDER
    assert provider.holder() is None  # its own hold is not "elsewhere"

    async def start_while_the_provider_writes() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, provider.release)  # one write + confirm, then it lets go
        lock = AppLock(tmp_path, "web")
        started = loop.time()
        await lock.acquire_waiting(wait=5.0)
        took = loop.time() - started
        assert AppLock(tmp_path, "web").holder() is LockRole.ROLLOUT
        lock.release()
        return took

    assert 0.25 <= asyncio.run(start_while_the_provider_writes()) < 2.0

    rollout = AppLock(tmp_path, "web")
    assert rollout.try_acquire()  # a rollout by default

    async def start_while_a_rollout_runs() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LockedError):
            await AppLock(tmp_path, "web").acquire_waiting(wait=5.0)
        return loop.time() - started

    assert asyncio.run(start_while_a_rollout_runs()) < 0.1  # at once, as the CLI's exit 4
    rollout.release()

    async def provider_never_lets_go() -> None:
        held = AppLock(tmp_path, "web")
        assert held.try_acquire(LockRole.PROVIDER)
        with pytest.raises(LockedError):
            await AppLock(tmp_path, "web").acquire_waiting(wait=0.2)
        held.release()

    asyncio.run(provider_never_lets_go())


def test_a_lock_file_without_a_role_is_a_rollout(tmp_path: Path) -> None:
    lock = AppLock(tmp_path, "web")
    assert lock.try_acquire(LockRole.PROVIDER)
    lock.path.write_text("12345")  # as written by a version before roles
    assert AppLock(tmp_path, "web").holder() is LockRole.ROLLOUT
    lock.release()
    assert AppLock(tmp_path, "web").holder() is None


@pytest.mark.parametrize("failing", ["ftruncate", "write"])
def test_a_lock_whose_holder_cannot_be_written_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def disk_full(*_: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    lock = AppLock(tmp_path, "web")
    with monkeypatch.context() as patch:
        patch.setattr(os, failing, disk_full)
        with pytest.raises(
            TrafficShiftError, match=r"cannot write .*web\.lock.*No space left on device"
        ) as info:
            lock.try_acquire()
    assert info.value.exit_code == 1
    # Not locked until the process exits: the next rollout of the app can take it.
    assert not AppLock(tmp_path, "web").is_held_elsewhere()
    assert AppLock(tmp_path, "web").try_acquire()


def test_one_rollouts_events_are_read_by_index_also_in_a_folder_from_before_it(tmp_path: Path) -> None:
    """The engine and a CLI following the service read one rollout's events: never a scan of every app's."""
    old = sqlite3.connect(tmp_path / "state.db")
    old.execute(  # the events table as the store made it before the index
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL,"
        " app TEXT NOT NULL, at REAL NOT NULL, phase TEXT NOT NULL, step INTEGER NOT NULL,"
        " weights TEXT NOT NULL, message TEXT NOT NULL)"
    )
    old.close()
    store = StateStore(tmp_path)
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE seq > ? AND rollout_id = ? ORDER BY seq LIMIT ?",
        (0, "r1", -1),
    ).fetchall()
    assert "USING INDEX events_rollout" in " ".join(str(row["detail"]) for row in plan)
    r = store.create_rollout(
        app="web", from_state=AppState(app="web"), to_colour=BLUE, to_image="a:1", steps=(100,), pause=0.0
    )
    store.create_rollout(
        app="api", from_state=AppState(app="api"), to_colour=BLUE, to_image="b:1", steps=(100,), pause=0.0
    )
    assert [e.rollout_id for e in store.events(rollout_id=r.id)] == [r.id]
    store.close()
