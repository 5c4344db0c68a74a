"""Rollouts the service runs in the background: one Engine per rollout over shared adapters.

The API and the scheduler start rollouts here and get their id as soon as it is recorded; the tasks are kept
(never fire-and-forget), interrupted on shutdown, and awaited within a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from . import plan
from .containers import Containers
from .engine import Engine
from .errors import LockedError, TrafficShiftError, UsageError
from .models import Config, Rollout
from .state import AppLock, StateStore

log = logging.getLogger("trafficshift.runner")

# A brief hold of the app lock by the service's own provider (re-rendering a file) is not a rollout.
BUSY_RETRIES = 20
BUSY_PAUSE = 0.1


class NothingToDo(TrafficShiftError):
    """The request conflicts with the app's state: nothing to abort, nothing to roll back to (HTTP 409)."""


class Runner:
    """Starts promotes, rollbacks and aborts as tasks and keeps them until they end."""

    def __init__(
        self,
        *,
        config: Config,
        store: StateStore,
        containers: Containers,
        session: aiohttp.ClientSession,
        provider_busy: Callable[[str], bool] = lambda app: False,
    ) -> None:
        self.config = config
        self.store = store
        self.containers = containers
        self.session = session
        self._provider_busy = provider_busy
        self._tasks: dict[asyncio.Task[Rollout], Engine] = {}

    def engine(self, *, on_created: Callable[[Rollout], None] | None = None) -> Engine:
        return Engine(
            config=self.config,
            store=self.store,
            containers=self.containers,
            session=self.session,
            on_created=on_created,
        )

    # ------------------------------------------------------------------ starting

    async def promote(
        self, *, app: str, image: str, steps: tuple[int, ...] | None = None, pause: float | None = None
    ) -> Rollout:
        """Start a promote; return its rollout once recorded. LockedError when one of the app runs."""
        return await self._start(
            app, lambda e: e.promote(app=app, image=image, steps=steps, pause=pause), what=f"promote {app}"
        )

    async def rollback(self, *, app: str, now: bool) -> Rollout:
        self._check_free(app)
        if plan.rollback_image(self.store.history(app)) is None:
            raise NothingToDo(f"{app} has no earlier image to roll back to")
        return await self._start(app, lambda e: e.rollback(app=app, now=now), what=f"rollback {app}")

    def abort(self, *, app: str, reason: str = "aborted through the API") -> Rollout:
        """Start an abort of the app's rollout (running anywhere, or interrupted); return that rollout."""
        active = self.store.active_rollout(app)
        if active is None:
            raise NothingToDo(f"no rollout of {app} is in progress")
        engine = self.engine()
        task = asyncio.create_task(_closing(engine, engine.abort(app=app, reason=reason)))
        self._keep(task, engine, what=f"abort {app}")
        return active

    def recover(self) -> list[Rollout]:
        """Abort every rollout left interrupted (no live process holds its lock); return them.

        A rollout nobody watched must not gain traffic: it goes back to the old colour (one already past the
        point of return, removing the old colour, is completed instead, as `abort` always does).
        """
        found = []
        for app in sorted(self.config.apps):
            active = self.store.active_rollout(app)
            if active is not None and not AppLock(self.config.state_dir, app).is_held_elsewhere():
                log.warning(
                    "rollout %s of %s was interrupted (%s): aborting it", active.id, app, active.phase
                )
                found.append(self.abort(app=app, reason="interrupted; aborted by the service at start-up"))
        return found

    def running(self) -> int:
        return len(self._tasks)

    async def _start(
        self, app: str, action: Callable[[Engine], Coroutine[Any, Any, Rollout]], *, what: str
    ) -> Rollout:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return await self._start_once(app, action, what=what)
            except LockedError:
                if attempt == BUSY_RETRIES or not self._provider_busy(app):
                    raise
            await asyncio.sleep(BUSY_PAUSE)
        raise AssertionError("unreachable")

    async def _start_once(
        self, app: str, action: Callable[[Engine], Coroutine[Any, Any, Rollout]], *, what: str
    ) -> Rollout:
        self._check_free(app)
        created: asyncio.Future[Rollout] = asyncio.get_running_loop().create_future()

        def on_created(rollout: Rollout) -> None:
            if not created.done():
                created.set_result(rollout)

        engine = self.engine(on_created=on_created)
        task = asyncio.create_task(_closing(engine, action(engine)))
        # Kept at once: should the caller be cancelled while it waits, the rollout still has an owner.
        self._keep(task, engine, what=what)
        await asyncio.wait({created, task}, return_when=asyncio.FIRST_COMPLETED)
        if created.done():
            return created.result()
        return task.result()  # it failed before recording anything: raise why

    def _check_free(self, app: str) -> None:
        if app not in self.config.apps:
            raise UsageError(f"unknown app {app!r}")
        if AppLock(self.config.state_dir, app).is_held_elsewhere() or self.store.active_rollout(app):
            raise LockedError(app)

    def _keep(self, task: asyncio.Task[Rollout], engine: Engine, *, what: str) -> None:
        self._tasks[task] = engine
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Task[Rollout], what: str) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            log.warning("%s: cancelled; its record says where it stopped", what)
        elif (exc := task.exception()) is not None:
            log.error("%s: %s", what, exc)
        else:
            r = task.result()
            log.info("%s: rollout %s %s%s", what, r.id, r.outcome, f" ({r.reason})" if r.reason else "")

    # ------------------------------------------------------------------ stopping

    async def stop(self, *, timeout: float) -> None:  # noqa: ASYNC109
        """Ask every rollout to go back at its next safe point; cancel what is still running after `timeout`.

        A cancelled rollout is like one that crashed: its record lets the next start-up finish it.
        """
        for engine in list(self._tasks.values()):
            engine.interrupt("the service is shutting down")
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)


async def _closing(engine: Engine, work: Coroutine[Any, Any, Rollout]) -> Rollout:
    """Run a rollout, then let the engine's webhook deliveries in flight finish (bounded by their timeout)."""
    try:
        return await work
    finally:
        await engine.aclose()
