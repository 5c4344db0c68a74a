"""The timer loop of scheduled cutovers: each pending schedule runs at its time, once.

The decision is pure (`decide`): before its time a schedule waits; from its time on it runs while it is at
most `grace` late (so one whose time passed while the service was down still runs at start-up within the
window); later than that it is recorded as missed. The grace is never taken below POLL: the loop itself
may be that late. A schedule is claimed (`firing`) before its promote starts, so it fires once; a promote
refused because another rollout holds the app leaves it pending, tried again each tick within the grace.
The table is reached through the async store (its own thread), never on the loop. An error of the store
(disk full, a lock held past its timeout) is logged and the loop tries again with a bounded backoff: it never
ends the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

from trafficshift.errors import LockedError
from trafficshift.models import Rollout
from trafficshift.store.aio import AsyncScheduleStore
from trafficshift.store.schedules import Schedule, ScheduleState

log = logging.getLogger("trafficshift.scheduler")

# The loop also looks at the table this often, whatever woke it (a clock change, a schedule added elsewhere).
POLL = 1.0
# After the store fails (disk full, a lock held past its timeout), look again after 1s, 2s, 4s ... 30s.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0

StartPromote = Callable[[str, str], Awaitable[Rollout]]
# The rollout a schedule left `firing` (by a crash) started, if it got that far: its id, or None.
FindRollout = Callable[[Schedule], Awaitable[str | None]]


async def _no_rollout(schedule: Schedule) -> str | None:
    return None


def retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row to reach the store: 1, 2, 4 ... at most 30."""
    return float(min(RETRY_MAX, RETRY_FIRST * 2 ** max(failures - 1, 0)))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Decision(enum.StrEnum):
    WAIT = "wait"
    RUN = "run"
    MISSED = "missed"


def decide(*, at: float, now: float, grace: float) -> Decision:
    """What to do with a pending schedule due `at`, at time `now`, with `grace` seconds of tolerated delay."""
    if now < at:
        return Decision.WAIT
    return Decision.RUN if now - at <= grace else Decision.MISSED


def next_wake(*, pending: list[Schedule], now: float, poll: float = POLL) -> float:
    """Seconds to sleep: until the next schedule is due, at most `poll`."""
    ahead = [s.at - now for s in pending if s.at > now]
    return max(0.0, min([poll, *ahead]))


class Scheduler:
    """Runs due schedules through `start` (a promote that returns its rollout once recorded)."""

    def __init__(
        self,
        *,
        store: AsyncScheduleStore,
        grace: float,
        start: StartPromote,
        find_rollout: FindRollout = _no_rollout,
    ) -> None:
        self.store = store
        self.grace = max(grace, POLL)  # 0s (or less than the loop's own delay) would miss every schedule
        self._start = start
        self._find_rollout = find_rollout
        self._wake = asyncio.Event()
        self._firing: dict[str, asyncio.Task[None]] = {}
        # Why a due schedule could not start yet (the app was busy): told when the grace runs out.
        self._blocked: dict[str, str] = {}

    def wake(self) -> None:
        """Look at the table now (a schedule was added or cancelled)."""
        self._wake.set()

    def firing(self, schedule_id: str) -> bool:
        return schedule_id in self._firing

    async def run(self) -> None:
        recovered = False
        failures = 0
        try:
            while True:
                try:
                    if not recovered:
                        await self.recover()
                        recovered = True
                    pending = await self.store.pending()
                    await self.tick(pending, now=time.time())
                except Exception as exc:
                    # A full disk or a lock held past the timeout must not end the service (and revert every
                    # rollout in progress): log it and look again, backing off while it lasts.
                    failures += 1
                    delay = retry_delay(failures)
                    log.error(
                        "schedules: cannot read or update them (%s); retrying in %gs",
                        _describe(exc),
                        delay,
                        exc_info=None if isinstance(exc, sqlite3.Error | OSError) else exc,
                    )
                    await asyncio.sleep(delay)
                    continue
                if failures:
                    log.info("schedules: the store answers again after %d failed attempt(s)", failures)
                    failures = 0
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(next_wake(pending=pending, now=time.time())):
                        await self._wake.wait()
        finally:
            tasks = list(self._firing.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def recover(self) -> None:
        """Settle schedules a crash left `firing`: by their rollout if it was created, else pending again."""
        for schedule in await self.store.firing():
            rollout_id = await self._find_rollout(schedule)
            if rollout_id is not None:
                await self.store.settle(
                    schedule.id, state=ScheduleState.STARTED, rollout_id=rollout_id, was=ScheduleState.FIRING
                )
                log.info("schedule %s: its rollout %s was started before a restart", schedule.id, rollout_id)
            else:
                await self.store.unclaim(schedule.id, reason="interrupted before its rollout started")
                log.info("schedule %s: interrupted before its rollout started; pending again", schedule.id)

    async def tick(self, pending: list[Schedule], *, now: float) -> None:
        for schedule in pending:
            if schedule.id in self._firing:
                continue
            decision = decide(at=schedule.at, now=now, grace=self.grace)
            if decision is Decision.RUN:
                if not await self.store.claim(schedule.id):
                    continue  # cancelled meanwhile, or claimed elsewhere: not ours to fire
                task = asyncio.create_task(self._fire_logged(schedule))
                self._firing[schedule.id] = task
                task.add_done_callback(functools.partial(self._fired, schedule))
            elif decision is Decision.MISSED:
                await self._give_up(schedule, now=now)

    async def _give_up(self, schedule: Schedule, *, now: float) -> None:
        late = f"its time passed {now - schedule.at:.0f}s ago, beyond the grace of {self.grace:g}s"
        blocked = self._blocked.pop(schedule.id, None)
        if blocked is not None:
            state, reason = ScheduleState.FAILED, f"{blocked}; {late} (service.schedule_grace)"
        else:
            state, reason = ScheduleState.MISSED, f"{late} (service.schedule_grace)"
        if await self.store.settle(schedule.id, state=state, reason=reason):
            log.warning(
                "schedule %s (%s -> %s) %s: %s", schedule.id, schedule.app, schedule.image, state, reason
            )

    def _fired(self, schedule: Schedule, task: asyncio.Task[None]) -> None:
        self._firing.pop(schedule.id, None)

    async def _fire_logged(self, schedule: Schedule) -> None:
        """Fire it; a bug while doing so is logged and the schedule recorded as failed (not left firing)."""
        try:
            await self._fire(schedule)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("schedule %s: firing it failed unexpectedly", schedule.id, exc_info=exc)
            await self.store.settle(
                schedule.id,
                state=ScheduleState.FAILED,
                reason=f"internal error: {exc!r}",
                was=ScheduleState.FIRING,
            )

    async def _fire(self, schedule: Schedule) -> None:
        late = time.time() - schedule.at
        log.info(
            "schedule %s: promote %s to %s (%.3fs after its time)",
            schedule.id,
            schedule.app,
            schedule.image,
            late,
        )
        try:
            rollout = await self._start(schedule.app, schedule.image)
        except asyncio.CancelledError:
            raise
        except LockedError as exc:
            # Busy (a rollout, or a recovery at start-up): pending again, tried next tick within the grace.
            if schedule.id not in self._blocked:
                log.info("schedule %s: %s; trying again within the grace", schedule.id, exc)
            self._blocked[schedule.id] = str(exc)
            await self.store.unclaim(schedule.id, reason=f"waiting: {exc}")
            return
        except Exception as exc:
            log.error("schedule %s: could not start: %s", schedule.id, exc)
            self._blocked.pop(schedule.id, None)
            await self.store.settle(
                schedule.id,
                state=ScheduleState.FAILED,
                reason=str(exc) or type(exc).__name__,
                was=ScheduleState.FIRING,
            )
            return
        self._blocked.pop(schedule.id, None)
        await self.store.settle(
            schedule.id, state=ScheduleState.STARTED, rollout_id=rollout.id, was=ScheduleState.FIRING
        )
