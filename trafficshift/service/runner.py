"""Rollouts the service runs in the background: one Engine per rollout over shared adapters.

The API and the scheduler start rollouts here and get their id as soon as it is recorded; the tasks are kept
(never fire-and-forget). At shutdown the runner first closes (new starts and aborts are refused with
ShuttingDown), then asks every rollout it keeps to go back and waits for each, within a bound.

The runner and its engines reach the store through the adapters' AsyncStateStore, off the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from trafficshift.compose.resolve import reread_app
from trafficshift.config import require_app
from trafficshift.engine import Engine
from trafficshift.errors import (
    AbortRequested,
    LockedError,
    NothingToDo,
    ShuttingDown,
    TrafficShiftError,
    Unchanged,
    UsageError,
)
from trafficshift.models import LockRole, Rollout
from trafficshift.ports import Adapters
from trafficshift.service.progress import ProgressBoard

log = logging.getLogger("trafficshift.runner")


class Runner:
    """Starts promotes, rollbacks and aborts as tasks and keeps them until they end."""

    def __init__(self, *, adapters: Adapters) -> None:
        self.adapters = adapters
        self.config = adapters.config
        self.store = adapters.store
        self._tasks: dict[asyncio.Task[Rollout], Engine] = {}
        self._closing = False
        # What every engine here reports between transitions, for the API's `progress` frames.
        self.progress = ProgressBoard()

    def engine(
        self, *, on_created: Callable[[Rollout], None] | None = None, adapters: Adapters | None = None
    ) -> Engine:
        return Engine(
            adapters=adapters or self.adapters, on_created=on_created, on_live=self.progress.publish
        )

    async def adapters_for(self, app: str) -> Adapters:
        """The adapters for a rollout of `app`: for a compose-backed app, with its service read through
        Compose again (the service read it at start-up; a promote deploys the file as it is now)."""
        if require_app(self.config, app).compose is None:
            return self.adapters
        config = await asyncio.to_thread(reread_app, self.config, app)  # Compose runs ~0.1 s: off the loop
        return dataclasses.replace(self.adapters, config=config)

    # ------------------------------------------------------------------ starting

    async def promote(
        self,
        *,
        app: str,
        image: str | None,
        steps: tuple[int, ...] | None = None,
        pause: float | None = None,
        resume: bool = True,
        hold_at: int | None = None,
    ) -> Rollout:
        """Start a promote, or resume the app's rollout that nobody drives; return it once recorded.

        LockedError when a rollout of the app runs (anywhere), or when one is interrupted and `resume` is
        False (a schedule deploys its own image; it does not take over another rollout). Without an image
        there must be such a rollout to resume, or the app must be compose-backed (its compose file names
        the image); UsageError otherwise. Unchanged when a compose-backed app runs that spec already.
        """
        if image is None:
            active = await self.store.active_rollout(app)
            if active is not None:
                image = active.to_image  # the engine resumes the rollout to this image (409 while it runs)
        adapters = await self.adapters_for(app)
        if image is None:
            spec = adapters.config.apps[app]
            if spec.compose is None:
                raise UsageError(f"no interrupted rollout of {app} to resume: name the image to promote")
            image = spec.image
        wanted = image
        return await self._start(
            app,
            lambda e: e.promote(app=app, image=wanted, steps=steps, pause=pause, hold_at=hold_at),
            what=f"promote {app}",
            resume=resume,
            adapters=adapters,
        )

    async def rollback(self, *, app: str, now: bool) -> Rollout:
        """Start a rollback; NothingToDo when the app has no earlier image (the engine's check)."""
        return await self._start(
            app,
            lambda e: e.rollback(app=app, now=now),
            what=f"rollback {app}",
            resume=False,
            adapters=await self.adapters_for(app),
        )

    async def abort(self, *, app: str, reason: str = "aborted through the API") -> Rollout:
        """Start an abort of the app's rollout (running anywhere, or interrupted); return that rollout."""
        if self._closing:
            raise ShuttingDown()
        active = await self.store.active_rollout(app)
        if active is None:
            raise NothingToDo(f"no rollout of {app} is in progress")
        if self._closing:
            raise ShuttingDown()  # closed while the store was read: start nothing
        engine = self.engine()
        task = asyncio.create_task(_closing(engine, engine.abort(app=app, reason=reason)))
        self._keep(task, engine, what=f"abort {app}")
        return active

    async def recover(self) -> list[Rollout]:
        """Abort every rollout left interrupted (no live process holds its lock); return them.

        A rollout nobody watched must not gain traffic: it goes back to the old colour (one already past the
        point of return, removing the old colour, is completed instead, as `abort` always does).
        """
        found = []
        for app, (_, active) in sorted((await self.store.overview(self.config.apps)).items()):
            if (
                active is not None
                and active.held is not None
                and not self.adapters.locks.lock(app).is_held_elsewhere()
            ):
                # Held: it gains no traffic while held, and an operator asked for it to stay. Driven again
                # (its health and analysis watched), it stays held until resumed.
                log.warning(
                    "rollout %s of %s was interrupted while held (%s): driving it, held",
                    active.id,
                    app,
                    active.held,
                )
                found.append(await self.promote(app=app, image=None))
            elif active is not None and not self.adapters.locks.lock(app).is_held_elsewhere():
                log.warning(
                    "rollout %s of %s was interrupted (%s): aborting it", active.id, app, active.phase
                )
                reason = "interrupted; aborted by the service at start-up"
                found.append(await self.abort(app=app, reason=reason))
        return found

    async def adopt(self, app: str) -> Rollout | None:
        """Drive the app's rollout when no process does (its CLI was killed): the resume path of `promote`,
        where a held rollout stays held. None when a process drives it already."""
        if self.adapters.locks.lock(app).holder() is LockRole.ROLLOUT:
            return None
        try:
            return await self.promote(app=app, image=None)
        except LockedError:
            return None  # taken up meanwhile (a CLI's `promote`): driven

    def running(self) -> int:
        return len(self._tasks)

    async def _start(
        self,
        app: str,
        action: Callable[[Engine], Coroutine[Any, Any, Rollout]],
        *,
        what: str,
        resume: bool,
        adapters: Adapters,
    ) -> Rollout:
        """Run `action` as a kept task; return its rollout once recorded, or raise why it was not."""
        if self._closing:
            raise ShuttingDown()
        await self._check_free(app, resume=resume)
        if self._closing:
            raise ShuttingDown()  # closed while the store was read: start nothing
        created: asyncio.Future[Rollout] = asyncio.get_running_loop().create_future()

        def on_created(rollout: Rollout) -> None:
            if not created.done():
                created.set_result(rollout)

        engine = self.engine(on_created=on_created, adapters=adapters)
        task = asyncio.create_task(_closing(engine, action(engine)))
        # Kept at once: should the caller be cancelled while it waits, the rollout still has an owner.
        self._keep(task, engine, what=what)
        await asyncio.wait({created, task}, return_when=asyncio.FIRST_COMPLETED)
        if created.done():
            return created.result()
        # It ended before recording anything: raise why (interrupted by the shutdown: say that).
        if self._closing and not task.cancelled() and isinstance(task.exception(), AbortRequested):
            raise ShuttingDown()
        return task.result()

    async def _check_free(self, app: str, *, resume: bool) -> None:
        require_app(self.config, app)
        # Held by the provider (one write of the file) is not a conflict: the engine waits that out. A
        # rollout in progress that nobody drives is no conflict for a promote either: the engine resumes it
        # (as `promote` does without a service, and as trafficshift's own advice after exit 5 says).
        if self.adapters.locks.lock(app).holder() is LockRole.ROLLOUT:
            raise LockedError(app)
        if not resume and await self.store.active_rollout(app) is not None:
            raise LockedError(app)

    def _keep(self, task: asyncio.Task[Rollout], engine: Engine, *, what: str) -> None:
        self._tasks[task] = engine
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Task[Rollout], what: str) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            log.warning("%s: cancelled; its record says where it stopped", what)
        elif isinstance(exc := task.exception(), (LockedError, UsageError, ShuttingDown, Unchanged)):
            log.info("%s: not started: %s", what, exc)  # the caller was told (409/400/503)
        elif isinstance(exc, AbortRequested | TrafficShiftError):
            log.error("%s: %s", what, exc)
        elif exc is not None:
            log.error("%s: failed unexpectedly", what, exc_info=exc)
        else:
            r = task.result()
            log.info("%s: rollout %s %s%s", what, r.id, r.outcome, f" ({r.reason})" if r.reason else "")

    # ------------------------------------------------------------------ stopping

    def close(self) -> None:
        """Refuse new starts and aborts from now on (ShuttingDown); what runs goes on until `stop`."""
        self._closing = True

    async def stop(self, *, timeout: float) -> None:  # noqa: ASYNC109
        """Close, ask every rollout to go back at its next safe point, and wait until none is left.

        What is still running after `timeout` is cancelled: like a crash, its record lets the next start-up
        finish it. Every task kept, also one started while this waits, is interrupted and awaited.
        """
        self.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            tasks = list(self._tasks)
            for task, engine in self._tasks.items():
                if engine.held is not None:
                    # A held rollout stays held: stopped here like a crash, driven again at the next start.
                    task.cancel()
                else:
                    engine.interrupt("the service is shutting down")
            left = deadline - loop.time()
            if left <= 0:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=5.0)
                return
            await asyncio.wait(tasks, timeout=left)


async def _closing(engine: Engine, work: Coroutine[Any, Any, Rollout]) -> Rollout:
    """Run a rollout, then let the engine's webhook deliveries in flight finish (bounded by their timeout)."""
    try:
        return await work
    finally:
        await engine.aclose()
