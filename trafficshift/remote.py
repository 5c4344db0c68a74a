"""promote, abort and rollback through a running service (this host's or another's), followed to their end.

Everything goes through the service's API, so the CLI needs neither its state folder nor its host: the
CLI notes where the service's event stream stands (`GET /events` opens with that id), asks for the command
(POST, 202 with the rollout id), then follows that rollout's `GET /events?rollout=ID&progress=true` from
that id: its transitions as a local run prints them, its `progress` frames for the display and heartbeats,
and at its end `GET /rollouts/{id}` for the outcome. A stream that is cut is opened again with
`Last-Event-ID` (nothing missed, nothing twice) for up to RECONNECT_FOR; then exit 5 with what is known.

The service keeps driving the rollout whatever happens to the CLI, so the CLI's first signal asks it to
abort (as a local promote goes back on a signal) and a second one exits at once. While it follows, the CLI
asks `GET /apps/{app}` every DRIVER_CHECK whether the service still drives it: a rollout interrupted (its
lock free) for DRIVER_GRACE is exit 5, as is a service that cannot be reached any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trafficshift import report
from trafficshift.client import Client, Frame, SseParser
from trafficshift.errors import (
    Conflict,
    LockedError,
    NoAnswer,
    NothingToDo,
    RolloutStuck,
    TrafficShiftError,
    Unchanged,
    UnreachableError,
)
from trafficshift.models import Config, Event, Live, Rollout

# How long a lost connection is tried again (the stream, or the POST's answer) before exit 5.
RECONNECT_FOR = 10.0
RETRY_EVERY = 0.5
# The service sends a keep-alive every 15 s: a stream silent for longer is lost.
STREAM_TIMEOUT = 20.0
# How often the CLI asks whether the service still drives the rollout, and how long it may not.
DRIVER_CHECK = 1.0
DRIVER_GRACE = 2.0
# A promote is answered once its rollout is recorded: after the image is pulled, which may take a while.
START_TIMEOUT = 900.0
ENDED = frozenset({"done", "aborted", "failed"})

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
    on_live: Callable[[Live], None] = lambda live: None,
    install_signals: Callable[[Interrupt], None],
) -> Rollout:
    """Start `command` (promote, abort, rollback) of `app` in the service; return the rollout as it ended."""
    app_path = f"/apps/{urllib.parse.quote(app, safe='')}"
    # No image given: resume the rollout in progress (the service refuses one that still runs), else deploy
    # the config's image, as a local promote does. A compose-backed app's image is the one its compose
    # file names when the service reads it again for this promote: none is sent.
    compose_backed = config.apps[app].compose is not None
    if command == "promote" and body is not None and "image" not in body and not compose_backed:
        status = await asyncio.to_thread(client.call, "GET", app_path)
        body = body if status.get("rollout") else {**body, "image": config.apps[app].image}
    cursor = await asyncio.to_thread(_cursor, client)  # this run's events only, as a local run prints them
    asked: list[str] = []  # a signal's reason, once the rollout was asked to go back
    started: list[str] = []
    aborts: list[asyncio.Task[None]] = []

    def interrupt(reason: str) -> None:
        asked.append(reason)
        if started and command != "abort":  # an abort goes back already
            aborts.append(asyncio.create_task(_ask_abort(client, app_path)))

    install_signals(interrupt)
    rollout_id = await _start(client, command=command, app=app, app_path=app_path, body=body)
    started.append(rollout_id)
    print(
        f"trafficshift: rollout {rollout_id} runs in the service at {client.url}; following it",
        file=sys.stderr,
        flush=True,
    )
    if asked and command != "abort":  # a signal while the service was starting it
        aborts.append(asyncio.create_task(_ask_abort(client, app_path)))
    follower = _Follower(client, rollout_id=rollout_id, app=app, app_path=app_path, cursor=cursor)
    try:
        # Where it stands comes as the service's progress frames (on_live); on_progress has nothing to add.
        rollout = await follower.run(on_event=on_event, on_live=on_live)
    finally:
        follower.stop()
    await asyncio.gather(*aborts, return_exceptions=True)
    return rollout


def _cursor(client: Client) -> int | None:
    """The id of the last event the service has recorded (its stream opens with it)."""
    parser = SseParser()
    with contextlib.closing(client.stream("/events", last_id=None, timeout=STREAM_TIMEOUT)) as lines:
        for line in lines:
            parser.feed(line)
            if parser.last_id is not None or not line.strip():
                break
    return parser.last_id


async def _start(
    client: Client, *, command: str, app: str, app_path: str, body: dict[str, Any] | None
) -> str:
    """POST the command; its rollout id, or the error a local run would raise (409 told apart by state)."""
    try:
        answer = await asyncio.to_thread(
            client.call, "POST", f"{app_path}/{command}", body, timeout=START_TIMEOUT
        )
    except NoAnswer as exc:
        # It took the request and died (killed -9 right after it recorded the rollout, say): not "nothing
        # changed" (exit 3) when a rollout of the app is recorded now. Follow it: that says what became of it.
        if command == "abort":
            raise
        reached, active = await _active_rollout(client, app_path, until=time.monotonic() + RECONNECT_FOR)
        if active is not None:
            return active
        if not reached:
            raise RolloutStuck(
                f"the service at {client.url} took the {command} of {app} and stopped answering ({exc}):"
                f" whether it started a rollout is not known here (if it did, it no longer drives it);"
                f" `trafficshift status {app}` tells, `trafficshift abort {app}` goes back"
            ) from None
        raise  # it answers, and no rollout of the app is recorded: nothing changed
    except Conflict as exc:
        # promote: always a rollout in the way; abort: nothing to abort; rollback: either, as the state says.
        if command == "promote":
            raise LockedError(app) from None
        if command == "rollback":
            status = await asyncio.to_thread(client.call, "GET", app_path)
            if status.get("rollout"):
                raise LockedError(app) from None
        raise NothingToDo(str(exc)) from None
    if answer.get("unchanged"):  # 200: a compose-backed app that runs this spec already
        raise Unchanged(app, str(answer.get("message") or f"{app}: nothing changed"))
    return str(answer["id"])


async def _active_rollout(client: Client, app_path: str, *, until: float) -> tuple[bool, str | None]:
    """Whether the service answered (asked again until `until`), and the id of the app's active rollout."""
    while True:
        try:
            status = await asyncio.to_thread(client.call, "GET", app_path)
        except UnreachableError:
            if time.monotonic() >= until:
                return False, None
            await asyncio.sleep(RETRY_EVERY)
            continue
        rollout = status.get("rollout")
        return True, (None if not rollout else str(rollout["id"]))


async def _ask_abort(client: Client, app_path: str) -> None:
    try:
        await asyncio.to_thread(client.call, "POST", f"{app_path}/abort")
    except Conflict:
        pass  # it has ended meanwhile: its outcome says how
    except TrafficShiftError as exc:
        print(f"trafficshift: could not ask the service to abort: {exc}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Lost:
    """The stream could not be opened again within RECONNECT_FOR (or was refused: `final`)."""

    error: TrafficShiftError
    final: bool = False


class _Follower:
    """Reads the rollout's stream on a thread of its own (urllib blocks), hands frames to the loop."""

    def __init__(
        self, client: Client, *, rollout_id: str, app: str, app_path: str, cursor: int | None
    ) -> None:
        self.client = client
        self.rollout_id = rollout_id
        self.app = app
        self.app_path = app_path
        self.cursor = cursor
        self.last: Event | None = None
        self._stopped = threading.Event()
        self._queue: asyncio.Queue[Frame | _Lost] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def stop(self) -> None:
        self._stopped.set()

    async def run(
        self,
        *,
        on_event: Callable[[Event], None],
        on_live: Callable[[Live], None],
    ) -> Rollout:
        # A daemon thread, not the loop's executor: a read blocked until the next keep-alive must not hold
        # up the CLI's exit.
        threading.Thread(target=self._read, name=f"events-{self.rollout_id}", daemon=True).start()
        interrupted_since: float | None = None
        next_check = time.monotonic() + DRIVER_CHECK
        ended = False
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_check - time.monotonic())):
                    item = await self._queue.get()
            except TimeoutError:
                item = None
            if isinstance(item, _Lost):
                raise self._lost(item)
            if isinstance(item, Frame) and item.event == "rollout":
                event = report.event_of(item.data)
                self.last = event
                on_event(event)
                ended = str(event.phase) in ENDED
            elif isinstance(item, Frame) and item.event == "progress":
                on_live(report.live_of(item.data))
            if ended:
                return await self._outcome()
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + DRIVER_CHECK
            try:
                status = await asyncio.to_thread(self.client.call, "GET", self.app_path)
            except UnreachableError:
                continue  # the stream's reconnects decide whether it is lost
            rollout = status.get("rollout")
            if not rollout or rollout.get("id") != self.rollout_id:
                # It ended: its last events are on their way (read them), or were missed by a reconnect.
                interrupted_since = None
                if (await self._outcome_or_none()) is not None:
                    next_check = time.monotonic() + DRIVER_GRACE  # the stream gets that long to catch up
                    ended_at = next_check
                    while time.monotonic() < ended_at:
                        try:
                            async with asyncio.timeout(ended_at - time.monotonic()):
                                item = await self._queue.get()
                        except TimeoutError:
                            break
                        if isinstance(item, Frame) and item.event == "rollout":
                            event = report.event_of(item.data)
                            on_event(event)
                            if str(event.phase) in ENDED:
                                break
                    return await self._outcome()
            elif rollout.get("interrupted"):
                if interrupted_since is None:
                    interrupted_since = time.monotonic()
                elif time.monotonic() - interrupted_since >= DRIVER_GRACE:
                    raise RolloutStuck(
                        f"rollout {self.rollout_id} of {self.app} stopped in {rollout.get('state')}: the"
                        f" service at {self.client.url} no longer drives it (see its log);"
                        f" `trafficshift status {self.app}` explains it, `trafficshift promote {self.app}` or"
                        f" `trafficshift abort {self.app}` carries on"
                    )
            else:
                interrupted_since = None

    async def _outcome_or_none(self) -> Rollout | None:
        doc = await asyncio.to_thread(self.client.call, "GET", f"/rollouts/{self.rollout_id}")
        rollout = report.rollout_of(doc)
        return None if rollout.active else rollout

    async def _outcome(self) -> Rollout:
        """The rollout's record once it has ended (asked again while the service cannot be reached)."""
        until = time.monotonic() + RECONNECT_FOR
        while True:
            try:
                doc = await asyncio.to_thread(self.client.call, "GET", f"/rollouts/{self.rollout_id}")
                return report.rollout_of(doc)
            except UnreachableError as exc:
                if time.monotonic() >= until:
                    raise self._lost(_Lost(exc)) from None
                await asyncio.sleep(RETRY_EVERY)

    def _lost(self, lost: _Lost) -> TrafficShiftError:
        if lost.final:
            return lost.error
        known = "nothing yet"
        if self.last is not None:
            weights = report.weights_text(self.last.weights)
            known = f"{self.last.phase}, {self.last.message}" + (f" ({weights})" if weights else "")
        return RolloutStuck(
            f"lost the service at {self.client.url} while following rollout {self.rollout_id} of {self.app}"
            f" (tried again for {RECONNECT_FOR:g}s: {lost.error}); last seen: {known}. If the service was"
            f" killed, it no longer drives it: `trafficshift status {self.app}` explains it,"
            f" `trafficshift promote {self.app}` or `trafficshift abort {self.app}` carries on"
        )

    def _read(self) -> None:
        """The stream, opened again after a cut from the last id seen, until stopped or lost for good."""
        query = urllib.parse.urlencode({"rollout": self.rollout_id, "progress": "true"})
        parser = SseParser(last_id=self.cursor)
        lost_since: float | None = None
        while not self._stopped.is_set():
            try:
                for line in self.client.stream(
                    f"/events?{query}", last_id=parser.last_id, timeout=STREAM_TIMEOUT
                ):
                    lost_since = None
                    if (frame := parser.feed(line)) is not None:
                        self._put(frame)
                    if self._stopped.is_set():
                        return
                error: TrafficShiftError = NoAnswer(f"the service at {self.client.url} closed the stream")
            except UnreachableError as exc:
                error = exc
            except TrafficShiftError as exc:  # refused (401, 400): asking again changes nothing
                self._put(_Lost(exc, final=True))
                return
            except ValueError as exc:  # not JSON: not a stream of this service
                self._put(_Lost(NoAnswer(f"the service at {self.client.url} sent {exc}"), final=True))
                return
            parser = SseParser(last_id=parser.last_id)  # a frame cut halfway is dropped
            now = time.monotonic()
            lost_since = lost_since if lost_since is not None else now
            if now - lost_since >= RECONNECT_FOR:
                self._put(_Lost(error))
                return
            self._stopped.wait(RETRY_EVERY)

    def _put(self, item: Frame | _Lost) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody follows any more
            self._stopped.set()
