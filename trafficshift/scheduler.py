"""The timer loop of scheduled cutovers: each pending schedule runs at its time, once.

The decision is pure (`decide`): before its time a schedule waits; from its time on it runs while it is at
most `grace` late (so one whose time passed while the service was down still runs at start-up within the
window); later than that it is recorded as missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from .models import Rollout
from .schedules import Schedule, ScheduleState, ScheduleStore

log = logging.getLogger("trafficshift.scheduler")

# The loop also looks at the table this often, whatever woke it (a clock change, a schedule added elsewhere).
POLL = 1.0

StartPromote = Callable[[str, str], Awaitable[Rollout]]


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

    def __init__(self, *, store: ScheduleStore, grace: float, start: StartPromote) -> None:
        self.store = store
        self.grace = grace
        self._start = start
        self._wake = asyncio.Event()
        self._firing: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Look at the table now (a schedule was added or cancelled)."""
        self._wake.set()

    def firing(self, schedule_id: str) -> bool:
        return schedule_id in self._firing

    async def run(self) -> None:
        try:
            while True:
                pending = self.store.pending()
                self.tick(pending, now=time.time())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(next_wake(pending=pending, now=time.time())):
                        await self._wake.wait()
        finally:
            for task in list(self._firing.values()):
                task.cancel()

    def tick(self, pending: list[Schedule], *, now: float) -> None:
        for schedule in pending:
            if schedule.id in self._firing:
                continue
            decision = decide(at=schedule.at, now=now, grace=self.grace)
            if decision is Decision.RUN:
                task = asyncio.create_task(self._fire(schedule))
                self._firing[schedule.id] = task
                task.add_done_callback(functools.partial(self._fired, schedule.id))
            elif decision is Decision.MISSED:
                reason = (
                    f"its time passed {now - schedule.at:.0f}s ago, beyond the grace of {self.grace:g}s"
                    " (service.schedule_grace)"
                )
                if self.store.settle(schedule.id, state=ScheduleState.MISSED, reason=reason):
                    log.warning(
                        "schedule %s (%s -> %s) missed: %s", schedule.id, schedule.app, schedule.image, reason
                    )

    def _fired(self, schedule_id: str, _task: asyncio.Task[None]) -> None:
        self._firing.pop(schedule_id, None)

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
        except Exception as exc:
            log.error("schedule %s: could not start: %s", schedule.id, exc)
            self.store.settle(schedule.id, state=ScheduleState.FAILED, reason=str(exc) or type(exc).__name__)
            return
        self.store.settle(schedule.id, state=ScheduleState.STARTED, rollout_id=rollout.id)
