"""The state store for code on an event loop (the engine, `serve`): every call on a thread of its own.

Each commit to `state.db` waits for an fsync (WAL, `synchronous=FULL`), and some reads scan the event log.
On the event loop they stall the API, the SSE streams, the Docker-event provider and every other rollout:
at 200 apps rolling at once, `benchmarks/store_loop.py` measured a p99 loop lag of 0.13-1.4 s and stalls of
up to 3.9 s with every call on the loop (docs/PERFORMANCE.md).

A sqlite3 connection belongs to the thread that opened it, so each connection here has ONE thread that opens
it, runs every call on it (each transaction whole, in the order the calls were made) and closes it.
AsyncStateStore has two: a writer, and a query-only reader, so that a long read (the first /metrics scrape
folding the event log, an SSE stream from the start) never holds up a rollout's commit. In WAL mode the
reader and the writer do not block each other, and a read started after a write has returned sees it.

A caller cancelled while its call runs does not stop it: a commit under way completes (as if the process had
stopped right after it, which every record already allows for); one still queued never starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, Generic, ParamSpec, Protocol, TypeVar

from trafficshift.compose.spec import SpecDoc
from trafficshift.models import AppState, Colour, Event, Outcome, Phase, Requests, Rollout
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import Schedule, ScheduleState, ScheduleStore

# What a store call raises when its disk fails (full, read-only, out of file descriptors): callers that can
# tell "nothing changed yet" from "a rollout is recorded" catch exactly these.
STORE_FAILURES: tuple[type[Exception], ...] = (sqlite3.Error, OSError)

P = ParamSpec("P")
R = TypeVar("R")


class _Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


class StoreThread(Generic[S]):
    """One thread that opens a store, runs every call on it and closes it: its connection never leaves it."""

    def __init__(self, open_store: Callable[[], S], *, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            # Blocks the caller while the file is opened (once, at start-up); its errors are raised here.
            self._store = self._pool.submit(open_store).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    async def run(self, fn: Callable[Concatenate[S, P], R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(store, *args, **kwargs)` on the store's thread, after every call queued before it."""
        call = functools.partial(fn, self._store, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def aclose(self) -> None:
        """Close the store once every call already queued has run; later calls raise RuntimeError."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._store.close)
        self._pool.shutdown(wait=False)  # idle by now: the thread ends at once

    def close(self) -> None:
        """`aclose` for code with no running loop (it blocks until the queued calls have run)."""
        self._pool.submit(self._store.close).result()
        self._pool.shutdown()


def _overview(store: StateStore, apps: tuple[str, ...]) -> dict[str, tuple[AppState, Rollout | None]]:
    return {app: (store.app_state(app), store.active_rollout(app)) for app in apps}


class AsyncStateStore:
    """StateStore's operations as coroutines: writes on the writer's thread, reads on the reader's."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._writer = StoreThread(lambda: StateStore(state_dir), name="state-writer")
        try:
            self._reader = StoreThread(lambda: StateStore(state_dir, read_only=True), name="state-reader")
        except BaseException:
            self._writer.close()
            raise

    async def aclose(self) -> None:
        """Close both connections once the calls already made have run (every commit queued lands)."""
        try:
            await self._writer.aclose()
        finally:
            await self._reader.aclose()

    def close(self) -> None:
        """`aclose` for code with no running loop (it blocks until the queued calls have run)."""
        try:
            self._writer.close()
        finally:
            self._reader.close()

    # -------------------------------------------------------------- writes: one thread, in call order

    async def create_rollout(
        self,
        *,
        app: str,
        from_state: AppState,
        to_colour: Colour,
        to_image: str,
        steps: tuple[int, ...],
        pause: float,
        spec: SpecDoc | None = None,
        pauses: tuple[float | None, ...] = (),
    ) -> Rollout:
        return await self._writer.run(
            StateStore.create_rollout,
            app=app,
            from_state=from_state,
            to_colour=to_colour,
            to_image=to_image,
            steps=steps,
            pause=pause,
            spec=spec,
            pauses=pauses,
        )

    async def advance(
        self,
        rollout: Rollout,
        *,
        message: str,
        phase: Phase | None = None,
        step: int | None = None,
        weights: Mapping[Colour, int] | None = None,
        hold: str | None = None,
    ) -> Rollout:
        return await self._writer.run(
            StateStore.advance, rollout, message=message, phase=phase, step=step, weights=weights, hold=hold
        )

    async def finish(
        self, rollout: Rollout, *, outcome: Outcome, reason: str | None, live: AppState
    ) -> Rollout:
        return await self._writer.run(StateStore.finish, rollout, outcome=outcome, reason=reason, live=live)

    async def request_abort(self, rollout_id: str, *, reason: str) -> None:
        await self._writer.run(StateStore.request_abort, rollout_id, reason=reason)

    # Holds (stepping.py): each checks the rollout's phase in the transaction that records it.

    async def hold(self, app: str, *, reason: str) -> Rollout:
        return await self._writer.run(StateStore.hold, app, reason=reason)

    async def release(self, app: str, *, reason: str) -> Rollout:
        return await self._writer.run(StateStore.release, app, reason=reason)

    async def request_weight(self, app: str, *, weight: int) -> Rollout:
        return await self._writer.run(StateStore.request_weight, app, weight=weight)

    async def set_weight(
        self,
        rollout: Rollout,
        *,
        steps: tuple[int, ...],
        pauses: tuple[float | None, ...],
        step: int,
        weights: Mapping[Colour, int],
        hold: str,
        message: str,
    ) -> Rollout:
        return await self._writer.run(
            StateStore.set_weight,
            rollout,
            steps=steps,
            pauses=pauses,
            step=step,
            weights=weights,
            hold=hold,
            message=message,
        )

    async def drop_weight_request(self, rollout: Rollout, *, message: str) -> None:
        await self._writer.run(StateStore.drop_weight_request, rollout, message=message)

    # -------------------------------------------------------------- reads: the query-only connection

    async def app_state(self, app: str) -> AppState:
        return await self._reader.run(StateStore.app_state, app)

    async def active_rollout(self, app: str) -> Rollout | None:
        return await self._reader.run(StateStore.active_rollout, app)

    async def overview(self, apps: Iterable[str]) -> dict[str, tuple[AppState, Rollout | None]]:
        """Each app's recorded state and active rollout, in one trip to the reader's thread."""
        return await self._reader.run(_overview, tuple(apps))

    async def rollout_of(self, *, app: str, image: str, since: float) -> Rollout | None:
        return await self._reader.run(StateStore.rollout_of, app=app, image=image, since=since)

    async def rollout(self, rollout_id: str) -> Rollout | None:
        return await self._reader.run(StateStore.rollout, rollout_id)

    async def history(self, app: str, *, limit: int = 100) -> list[Rollout]:
        return await self._reader.run(StateStore.history, app, limit=limit)

    async def outcome_counts(self) -> dict[tuple[str, str], int]:
        return await self._reader.run(StateStore.outcome_counts)

    async def abort_requested(self, rollout_id: str) -> str | None:
        return await self._reader.run(StateStore.abort_requested, rollout_id)

    async def requests(self, rollout_id: str) -> Requests:
        return await self._reader.run(StateStore.requests, rollout_id)

    async def last_event_seq(self) -> int:
        return await self._reader.run(StateStore.last_event_seq)

    async def events(self, *, after: int = 0, rollout_id: str | None = None, limit: int = -1) -> list[Event]:
        return await self._reader.run(StateStore.events, after=after, rollout_id=rollout_id, limit=limit)


class AsyncScheduleStore:
    """ScheduleStore's operations as coroutines, on one thread (few calls, all short)."""

    def __init__(self, state_dir: Path) -> None:
        self._thread = StoreThread(lambda: ScheduleStore(state_dir), name="schedules")

    async def aclose(self) -> None:
        await self._thread.aclose()

    async def add(self, *, app: str, image: str, at: dt.datetime) -> Schedule:
        return await self._thread.run(ScheduleStore.add, app=app, image=image, at=at)

    async def get(self, schedule_id: str) -> Schedule | None:
        return await self._thread.run(ScheduleStore.get, schedule_id)

    async def all(self) -> list[Schedule]:
        return await self._thread.run(ScheduleStore.all)

    async def pending(self) -> list[Schedule]:
        return await self._thread.run(ScheduleStore.pending)

    async def firing(self) -> list[Schedule]:
        return await self._thread.run(ScheduleStore.firing)

    async def claim(self, schedule_id: str) -> bool:
        return await self._thread.run(ScheduleStore.claim, schedule_id)

    async def unclaim(self, schedule_id: str, *, reason: str) -> bool:
        return await self._thread.run(ScheduleStore.unclaim, schedule_id, reason=reason)

    async def settle(
        self,
        schedule_id: str,
        *,
        state: ScheduleState,
        rollout_id: str | None = None,
        reason: str | None = None,
        was: ScheduleState = ScheduleState.PENDING,
    ) -> bool:
        return await self._thread.run(
            ScheduleStore.settle, schedule_id, state=state, rollout_id=rollout_id, reason=reason, was=was
        )
