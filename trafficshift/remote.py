"""promote, abort and rollback through the running service of this config, followed to their end.

The service owns the app while it runs (`client.running_service`): the CLI asks it (POST, 202 with the
rollout id) and then follows that rollout in the shared state folder, as a local `abort` follows a rollout
another process drives: its events as they are recorded, its outcome when it ends. The service keeps
driving it whatever happens to the CLI, so the CLI's first signal asks the service to abort (as a local
promote goes back on a signal) and a second one exits at once. A rollout the service stops driving without
ending it (the service killed, or stuck) is reported with exit 5 once its lock has been free for
DRIVER_GRACE: `status` explains it, and `promote` or `abort` carries on.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from trafficshift import report
from trafficshift.client import Client
from trafficshift.errors import (
    Conflict,
    LockedError,
    NothingToDo,
    RolloutStuck,
    TrafficShiftError,
    Unchanged,
    UnreachableError,
)
from trafficshift.models import Config, Event, Rollout
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import AppLock

POLL = 0.2
# How long a rollout may stay active with nobody holding its app's lock before the CLI stops following it.
DRIVER_GRACE = 2.0
# A promote is answered once its rollout is recorded: after the image is pulled, which may take a while.
START_TIMEOUT = 900.0

Interrupt = Callable[[str], None]


async def run_in_service(
    config: Config,
    client: Client,
    *,
    command: str,
    app: str,
    body: dict[str, Any] | None,
    on_event: Callable[[Event], None],
    on_progress: Callable[[str], None],
    install_signals: Callable[[Interrupt], None],
) -> Rollout:
    """Start `command` (promote, abort, rollback) of `app` in the service; return the rollout as it ended."""
    # Off the loop, which also answers signals: a read waiting for SQLite's lock never holds that up.
    store = AsyncStateStore(config.state_dir)
    try:
        # No image given: resume the rollout in progress (the service refuses one that still runs), else
        # deploy the config's image, as a local promote does. A compose-backed app's image is the one its
        # compose file names when the service reads it again for this promote: none is sent.
        compose_backed = config.apps[app].compose is not None
        if command == "promote" and body is not None and "image" not in body and not compose_backed:
            body = body if await store.active_rollout(app) else {**body, "image": config.apps[app].image}
        cursor = await store.last_event_seq()  # this run's events only, as a local run prints them
        asked: list[str] = []  # a signal's reason, once the rollout was asked to go back
        started: list[str] = []
        aborts: list[asyncio.Task[None]] = []

        def interrupt(reason: str) -> None:
            asked.append(reason)
            if started and command != "abort":  # an abort goes back already
                aborts.append(asyncio.create_task(_ask_abort(client, app)))

        install_signals(interrupt)
        rollout_id = await _start(client, store, command=command, app=app, body=body, cursor=cursor)
        started.append(rollout_id)
        print(
            f"trafficshift: rollout {rollout_id} runs in the service at {client.url}; following it",
            file=sys.stderr,
            flush=True,
        )
        if asked and command != "abort":  # a signal while the service was starting it
            aborts.append(asyncio.create_task(_ask_abort(client, app)))
        rollout = await _follow(
            store,
            AppLock(config.state_dir, app),
            rollout_id,
            cursor=cursor,
            url=client.url,
            on_event=on_event,
            on_progress=on_progress,
        )
        await asyncio.gather(*aborts, return_exceptions=True)
        return rollout
    finally:
        await store.aclose()


async def _start(
    client: Client,
    store: AsyncStateStore,
    *,
    command: str,
    app: str,
    body: dict[str, Any] | None,
    cursor: int,
) -> str:
    """POST the command; its rollout id, or the error a local run would raise (409 told apart by state)."""
    path = f"/apps/{urllib.parse.quote(app, safe='')}/{command}"
    try:
        answer = await asyncio.to_thread(client.call, "POST", path, body, timeout=START_TIMEOUT)
    except UnreachableError:
        # The service died before it answered (killed -9 right after it recorded the rollout): not "nothing
        # changed" (exit 3) when a rollout of the app was recorded meanwhile. Follow it: nobody drives it,
        # so that is exit 5, and `status` explains it.
        if command != "abort":
            for event in await store.events(after=cursor):
                if event.app == app:
                    return event.rollout_id
        raise
    except Conflict as exc:
        # promote: always a rollout in the way; abort: nothing to abort; rollback: either, as the state says.
        busy = (
            await store.active_rollout(app) is not None or AppLock(store.state_dir, app).is_held_elsewhere()
        )
        if command == "promote" or (command == "rollback" and busy):
            raise LockedError(app) from None
        raise NothingToDo(str(exc)) from None
    if answer.get("unchanged"):  # 200: a compose-backed app that runs this spec already
        raise Unchanged(app, str(answer.get("message") or f"{app}: nothing changed"))
    return str(answer["id"])


async def _ask_abort(client: Client, app: str) -> None:
    path = f"/apps/{urllib.parse.quote(app, safe='')}/abort"
    try:
        await asyncio.to_thread(client.call, "POST", path)
    except Conflict:
        pass  # it has ended meanwhile: its outcome says how
    except TrafficShiftError as exc:
        print(f"trafficshift: could not ask the service to abort: {exc}", file=sys.stderr, flush=True)


async def _follow(
    store: AsyncStateStore,
    lock: AppLock,
    rollout_id: str,
    *,
    cursor: int,
    url: str,
    on_event: Callable[[Event], None],
    on_progress: Callable[[str], None],
) -> Rollout:
    """Print the rollout's events until it ends; RolloutStuck when nobody drives it any more."""
    unheld_since: float | None = None
    while True:
        rollout = await store.rollout(rollout_id)
        for event in await store.events(after=cursor, rollout_id=rollout_id):
            cursor = event.seq
            on_event(event)
        if rollout is None:
            raise TrafficShiftError(
                f"rollout {rollout_id} runs in the service at {url}, which keeps its state in another"
                f" folder than {store.state_dir}: follow it there (GET /rollouts/{rollout_id})"
            )
        if not rollout.active:
            return rollout
        if lock.is_held_elsewhere():
            unheld_since = None
        elif unheld_since is None:
            unheld_since = time.monotonic()
        elif time.monotonic() - unheld_since >= DRIVER_GRACE:
            raise RolloutStuck(
                f"rollout {rollout_id} of {rollout.app} stopped in {rollout.phase}: the service at {url}"
                f" no longer drives it (see its log); `trafficshift status {rollout.app}` explains it,"
                f" `trafficshift promote {rollout.app}` or `trafficshift abort {rollout.app}` carries on"
            )
        on_progress(f"{rollout.phase} {report.weights_text(rollout.weights)} (in the service)")
        await asyncio.sleep(POLL)
