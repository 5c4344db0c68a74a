"""`pause`, `resume` and `set-weight` of an app's rollout, wherever it is driven (stepping.py says when).

Each is recorded in the store first (with its event, in the transaction that checks the phase), then the
process that drives the rollout acts on it at its next poll (`Engine._hold`). A rollout nobody drives (its
CLI was killed) is taken over here, through the resume path `promote` uses: `resume` drives it to its end;
`set-weight` drives it until Traefik shows the weight, then leaves it held (and interrupted) as it found it;
`pause` only records the hold (a held rollout nobody drives cannot move).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from trafficshift import stepping
from trafficshift.engine import POLL, Engine
from trafficshift.errors import NotHoldable, RolloutStuck, TrafficShiftError, UsageError
from trafficshift.models import LockRole, Rollout
from trafficshift.ports import Locks
from trafficshift.store.aio import AsyncStateStore

PAUSED = "paused by request"
RESUMED = "resumed by request"
# How long a set weight may wait with nobody driving its rollout before the wait gives up.
DRIVER_GRACE = 2.0


def driven(locks: Locks, app: str) -> bool:
    """Whether a rollout process (a CLI, or the service) drives the app's rollout now."""
    return locks.lock(app).holder() is LockRole.ROLLOUT


async def pause(engine: Engine, app: str, *, reason: str = PAUSED) -> Rollout:
    """Hold the app's rollout at its current weights until it is resumed; return it as recorded."""
    engine.spec(app)
    return await engine.record(app, lambda: engine.store.hold(app, reason=reason))


async def resume(engine: Engine, app: str, *, reason: str = RESUMED) -> tuple[Rollout, bool]:
    """Resume the app's held rollout; (the rollout, whether this process drove it to its end).

    Its driver goes on; with none (killed), this process drives it, as `promote APP` resumes one.
    """
    engine.spec(app)
    released = await engine.record(app, lambda: engine.store.release(app, reason=reason))
    if driven(engine.locks, app):
        return released, False
    return await engine.promote(app=app), True


async def set_weight(engine: Engine, app: str, weight: int) -> Rollout:
    """Set the new colour of the app's rollout to `weight`, held there; return it once Traefik runs it."""
    engine.spec(app)
    if problem := stepping.check_weight(weight):
        raise UsageError(f"set-weight: {problem}")
    cursor = await engine.store.last_event_seq()
    asked = await engine.record(app, lambda: engine.store.request_weight(app, weight=weight))
    if driven(engine.locks, app):
        return await wait_weight(engine.store, engine.locks, asked, weight, after=cursor)
    # Nobody drives it: drive it here until the weight is confirmed, then stop (it stays held).
    driver = asyncio.create_task(engine.promote(app=app))
    waiter = asyncio.create_task(wait_weight(engine.store, engine.locks, asked, weight, after=cursor))
    try:
        await asyncio.wait({driver, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            return waiter.result()
        ended = driver.result()  # it ended first: went back (a failure, an abort) before the weight held
        raise TrafficShiftError(
            f"rollout {ended.id} of {app} {ended.outcome} before {weight}% was confirmed: {ended.reason}"
        )
    finally:
        for task in (driver, waiter):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def wait_weight(
    store: AsyncStateStore, locks: Locks, asked: Rollout, weight: int, *, after: int
) -> Rollout:
    """Wait until the rollout's driver reports `weight` confirmed by Traefik; raise why it was not."""
    unheld_since: float | None = None
    while True:
        for event in await store.events(after=after, rollout_id=asked.id):
            after = event.seq
            if stepping.is_weight_confirmed(event.message, weight, asked.to_colour):
                current = await store.rollout(asked.id)
                assert current is not None
                return current
            if event.message.startswith(f"set-weight {weight}% not applied"):
                raise NotHoldable(event.message)
        current = await store.rollout(asked.id)
        if current is None or not current.active:
            how = "is gone" if current is None else f"ended ({current.outcome}: {current.reason})"
            raise TrafficShiftError(f"rollout {asked.id} of {asked.app} {how} before {weight}% was confirmed")
        if driven(locks, asked.app):
            unheld_since = None
        elif unheld_since is None:
            unheld_since = time.monotonic()
        elif time.monotonic() - unheld_since >= DRIVER_GRACE:
            raise RolloutStuck(
                f"rollout {asked.id} of {asked.app}: nobody drives it any more, {weight}% was not applied;"
                f" `trafficshift status {asked.app}` explains it, `trafficshift set-weight` asks again"
            )
        await asyncio.sleep(POLL)
