"""Does the state store stall `trafficshift serve`'s event loop? Its real operations timed, then 200 apps.

Part 1 times each real store operation (StateStore, ScheduleStore) on a store that already holds `--events`
events, and the store side of the API's reads at that size. Part 2 runs `--apps` rollouts at once, each
making the store calls the engine makes (every commit, the `_emit` read after each, the abort poll every
0.2 s while a step is held or a write confirmed) at the cadence of `--pause`, plus a few SSE streams, while
a probe measures the event loop's lag every 10 ms. It runs once per mode on copies of the same store: every
call on the loop (as the engine did), every call on one dedicated thread, and through the service's
AsyncStateStore (writer + reader thread); each also with the commits alone, and with an `_emit` that reads
only its own rollout's events. Then the real thing: `--apps` real Engines (`Engine.promote`, back to back,
one Engine per rollout over shared adapters, as `serve` runs them) over modelled Docker and Traefik
(benchmarks/engine_world.py), with the engines' store calls on the loop or through AsyncStateStore, and
`_emit` reading every app's events (as it did) or only its own rollouts'. No Docker, no Traefik: their time
is modelled as sleeps. The state folder lives in /tmp (the repo's filesystem here), as a real `state_dir`
would. The numbers and what they decided: docs/PERFORMANCE.md.

Run: `make bench-store` (or `.venv/bin/python -m benchmarks.store_loop [--seconds 30] [--apps 200]`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import engine_world
from trafficshift import report
from trafficshift.config import parse_config_text
from trafficshift.engine import Engine
from trafficshift.models import AppState, Colour, Config, Outcome, Phase, Rollout
from trafficshift.service.metrics import ServiceMetrics
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleState, ScheduleStore

STEPS = (10, 25, 50, 100)
POLL = 0.2  # the engine's abort poll (engine.POLL) and the SSE poll (routes.SSE_POLL)
PROBE = 0.010
SSE_BATCH = 500  # routes.SSE_BATCH
BLUE, GREEN = Colour.BLUE, Colour.GREEN


# ---------------------------------------------------------------------- numbers


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; nan when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def latency_row(name: str, samples: Sequence[float]) -> str:
    median = statistics.median(samples) if samples else math.nan
    top = max(samples) if samples else math.nan
    return f"| {name} | {len(samples)} | {ms(median)} | {ms(pct(samples, 0.99))} | {ms(top)} |"


@contextlib.contextmanager
def timed(into: list[float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)


# ---------------------------------------------------------------------- the store, at size


def app_names(n: int) -> list[str]:
    return [f"app-{i:03d}" for i in range(n)]


def seed(state_dir: Path, *, apps: int, events: int) -> None:
    """A store holding `events` events of finished rollouts (10 each) spread over `apps` apps.

    Written in one transaction by a plain connection (through the store it would be 100k fsyncs); the
    tables are the store's own, created by opening it first.
    """
    StateStore(state_dir).close()
    ScheduleStore(state_dir).close()
    db = sqlite3.connect(state_dir / "state.db", isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    names = app_names(apps)
    per_rollout = 10
    started = time.time() - events  # one event a second, in the past
    for n in range(events // per_rollout):
        app, rid, at = names[n % apps], uuid.uuid4().hex[:12], started + n * per_rollout
        to, old = (GREEN, BLUE) if (n // apps) % 2 else (BLUE, GREEN)
        db.execute(
            "INSERT INTO rollouts (id, app, from_colour, from_image, to_colour, to_image, steps, pause,"
            " phase, step, weights, outcome, reason, started_at, updated_at, ended_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rid,
                app,
                old,
                f"{app}:{n}",
                to,
                f"{app}:{n + 1}",
                json.dumps(list(STEPS)),
                2.0,
                "done",
                3,
                json.dumps({str(to): 100}),
                "done",
                None,
                at,
                at + 9,
                at + 9,
            ),
        )
        for k in range(per_rollout):
            db.execute(
                "INSERT INTO events (rollout_id, app, at, phase, step, weights, message)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    rid,
                    app,
                    at + k,
                    "shifting",
                    min(k, 3),
                    json.dumps({str(old): 50, str(to): 50}),
                    f"step {k}: a message of about the usual length",
                ),
            )
    for app in names:
        db.execute(
            "INSERT INTO apps (app, colour, image, updated_at) VALUES (?,?,?,?)",
            (app, str(BLUE), f"{app}:1", started),
        )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def copy_store(template: Path, into: Path) -> Path:
    into.mkdir()
    shutil.copy(template / "state.db", into / "state.db")
    return into


def fsync_latency(folder: Path, *, n: int = 200) -> list[float]:
    """Raw fsync of a 4 KiB append in `folder`: the floor of one durable commit here."""
    samples: list[float] = []
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            with timed(samples):
                os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return samples


def bench_config(state_dir: Path, apps: int, *, pause: float = 2.0, drain: float = 2.0) -> Config:
    lines = ["traefik:", "  dynamic_dir: ./dyn", f"state_dir: {state_dir}", "apps:"]
    steps = ", ".join(map(str, STEPS))
    for app in app_names(apps):
        lines += [f"  {app}:", f"    image: {app}:1", "    port: 80", f"    rule: Host(`{app}`)"]
        lines += ["    publish: 127.0.0.1", "    replicas: 1"]
        lines += [f"    rollout: {{steps: [{steps}], pause: {pause * 1000:g}ms, drain: {drain * 1000:g}ms}}"]
    return parse_config_text("\n".join(lines) + "\n", source="bench.yml", base_dir=state_dir)


# ---------------------------------------------------------------------- part 1: each operation


def op_latencies(state_dir: Path, *, apps: int, runs: int) -> dict[str, list[float]]:
    """Each store operation the service makes, `runs` times (the costly whole-log reads a few times)."""
    store, schedules = StateStore(state_dir), ScheduleStore(state_dir)
    names = app_names(apps)
    got: dict[str, list[float]] = {}

    def into(name: str) -> list[float]:
        return got.setdefault(name, [])

    try:
        for n in range(runs):
            app = names[n % apps]
            with timed(into("app_state")):
                state = store.app_state(app)
            with timed(into("create_rollout (commit)")):
                r = store.create_rollout(
                    app=app, from_state=state, to_colour=GREEN, to_image=f"{app}:x", steps=STEPS, pause=2.0
                )
            with timed(into("advance (commit)")):
                r = store.advance(
                    r, message="step 1/4: 10% on green", phase=Phase.SHIFTING, step=0, weights={BLUE: 90}
                )
            with timed(into("abort_requested (the engine's 0.2 s poll)")):
                store.abort_requested(r.id)
            with timed(into("active_rollout")):
                store.active_rollout(app)
            with timed(into("rollout(id)")):
                store.rollout(r.id)
            last = store.last_event_seq()
            with timed(into("events(after=last-2) (an _emit)")):
                store.events(after=last - 2)
            with timed(into("events(after=last, limit=500) (an idle SSE poll)")):
                store.events(after=last, limit=SSE_BATCH)
            with timed(into("history(app) (its 50 rollouts)")):
                store.history(app)
            live = AppState(app=app, colour=GREEN, image=r.to_image)
            with timed(into("finish (commit)")):
                store.finish(r, outcome=Outcome.DONE, reason=None, live=live)
            with timed(into("last_event_seq")):
                store.last_event_seq()
            added = schedules.add(app=app, image=f"{app}:y", at=dt.datetime.now(dt.UTC))
            with timed(into("schedules.pending()")):
                schedules.pending()
            with timed(into("schedules.claim (commit)")):
                schedules.claim(added.id)
            with timed(into("schedules.settle (commit)")):
                schedules.settle(
                    added.id, state=ScheduleState.STARTED, rollout_id=r.id, was=ScheduleState.FIRING
                )
        for _ in range(max(3, runs // 20)):
            with timed(into("events(after=0, limit=500) (an SSE batch from the start)")):
                store.events(after=0, limit=SSE_BATCH)
            with timed(into("outcome_counts (every /metrics scrape)")):
                store.outcome_counts()
        for _ in range(3):
            with timed(into("events(after=0) (all: the first /metrics scrape)")):
                store.events(after=0)
    finally:
        schedules.close()
        store.close()
    return got


def route_reads(state_dir: Path, *, apps: int, runs: int) -> dict[str, list[float]]:
    """The store side of the API's reads with every call on the loop: how long each held it (before)."""
    store = StateStore(state_dir)
    names = app_names(apps)
    got: dict[str, list[float]] = {}

    def into(name: str) -> list[float]:
        return got.setdefault(name, [])

    try:
        for n in range(runs):
            app = names[n % apps]
            with timed(into("GET /apps/{app} (Engine() + status: 3 reads)")):
                store.last_event_seq()
                store.app_state(app)
                store.active_rollout(app)
            with timed(into("GET /apps/{app}/history (read + JSON)")):
                json.dumps([report.rollout_dict(r) for r in store.history(app)])
            last = store.last_event_seq()
            with timed(into("GET /events, one idle poll")):
                for event in store.events(after=last, limit=SSE_BATCH):
                    json.dumps(report.event_dict(event))
        for _ in range(max(3, runs // 20)):
            with timed(into(f"GET /apps ({apps} apps: 2 reads each)")):
                store.last_event_seq()
                for app in names:
                    store.app_state(app)
                    store.active_rollout(app)
            with timed(into("GET /events?after=0, one batch of 500 (read + JSON)")):
                for event in store.events(after=0, limit=SSE_BATCH):
                    json.dumps(report.event_dict(event))
            with timed(into(f"GET /metrics, a later scrape (counts + {apps} apps)")):
                store.outcome_counts()
                for app in names:
                    store.app_state(app)
                    store.active_rollout(app)
        for _ in range(3):
            with timed(into("GET /metrics, first scrape (reads every event)")):
                store.events(after=0)
    finally:
        store.close()
    return got


async def _watched(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run `work`; return its wall time and the longest the loop was held meanwhile (1 ms probe)."""
    loop, worst, done = asyncio.get_running_loop(), 0.0, False

    async def watch() -> None:
        nonlocal worst
        while not done:
            started = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - started - 0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await work()
    wall = time.perf_counter() - started
    done = True
    await watcher
    return wall, worst


async def facade_reads(
    state_dir: Path, *, apps: int, runs: int
) -> dict[str, tuple[list[float], list[float]]]:
    """The same reads through AsyncStateStore and the real ServiceMetrics: wall time, and the loop's lag."""
    store = AsyncStateStore(state_dir)
    config = bench_config(state_dir, apps)
    names = app_names(apps)
    got: dict[str, tuple[list[float], list[float]]] = {}

    async def measure(name: str, work: Callable[[], Awaitable[Any]]) -> None:
        wall, lag = await _watched(work)
        walls, lags = got.setdefault(name, ([], []))
        walls.append(wall)
        lags.append(lag)

    async def history(app: str) -> None:
        json.dumps([report.rollout_dict(r) for r in await store.history(app)])

    async def events_batch() -> None:
        for event in await store.events(after=0, limit=SSE_BATCH):
            json.dumps(report.event_dict(event))

    try:
        for n in range(runs):
            app = names[n % apps]
            await measure("GET /apps/{app}/history (read + JSON)", functools.partial(history, app))
        for _ in range(max(3, runs // 20)):
            await measure("GET /events?after=0, one batch of 500 (read + JSON)", events_batch)
        for _ in range(3):
            metrics = ServiceMetrics(config=config, store=store)
            await measure("GET /metrics, first scrape (folds every event)", metrics.render)
            for _ in range(3):
                await measure(f"GET /metrics, a later scrape (counts + {apps} apps)", metrics.render)
    finally:
        await store.aclose()
    return got


# ---------------------------------------------------------------------- part 2: 200 apps at once


class Accounted:
    """Time spent inside each store method (on whichever thread runs it), and how many calls."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            name = fn.__name__
            self.busy[name] = self.busy.get(name, 0.0) + time.perf_counter() - started
            self.calls[name] = self.calls.get(name, 0) + 1


class OnLoop(Accounted):
    """Every store call on the event loop's thread: what the service does today."""

    name = "on the loop"

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.store = StateStore(state_dir)

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return self.run(fn, args, kwargs)

    def close(self) -> None:
        self.store.close()


class OffLoop(Accounted):
    """Every store call on one dedicated thread, which also opened the connection (they are thread-bound)."""

    name = "off the loop (1 thread)"

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-store")
        self.store = self._pool.submit(StateStore, state_dir).result()

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(self.run, fn, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.submit(self.store.close).result()
        self._pool.shutdown()


class Facade:
    """The store as the service reaches it: `store.aio.AsyncStateStore` (a writer and a reader thread)."""

    name = "off the loop (AsyncStateStore: writer + reader thread)"

    def __init__(self, state_dir: Path) -> None:
        self.aio = AsyncStateStore(state_dir)
        # Simulated names StateStore's methods; this mode calls the facade's method of the same name.
        self.store = _Names()
        self.busy: dict[str, float] = {}  # spent on the facade's threads: not measured from here
        self.calls: dict[str, int] = {}

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.aio, fn.__name__)(*args, **kwargs)

    def close(self) -> None:
        asyncio.run(self.aio.aclose())


class _Names:
    """Stands for a StateStore in Simulated: each attribute is a function that only carries its name."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def named() -> None:
            raise AssertionError("called through Facade only")

        named.__name__ = name
        return named


Mode = OnLoop | OffLoop | Facade


@dataclass
class Run:
    mode: str
    seconds: float = 0.0
    lags: list[float] = field(default_factory=list)
    commit_waits: list[float] = field(default_factory=list)
    read_waits: list[float] = field(default_factory=list)
    rollouts_done: int = 0
    steps_done: int = 0
    worst_at: float = 0.0  # seconds into the run of the longest lag
    busy: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


class Simulated:
    """One app's rollouts, back to back, making the engine's store calls in the engine's order."""

    def __init__(
        self,
        mode: Mode,
        run: Run,
        app: str,
        *,
        pause: float,
        apply: float,
        drain: float,
        reads: bool,
        own: bool,
    ) -> None:
        self.call, self.store, self.run = mode, mode.store, run
        self.app, self.pause, self.apply, self.drain = app, pause, apply, drain
        self.reads = reads  # False: the commits alone (no _emit read, no abort poll)
        self.own = own  # True: _emit reads only this rollout's events (a proposed engine change)
        self.seen = 0

    async def commit(self, fn: Callable[..., Rollout], /, *args: Any, **kwargs: Any) -> Rollout:
        started = time.perf_counter()
        result: Rollout = await self.call(fn, *args, **kwargs)
        self.run.commit_waits.append(time.perf_counter() - started)
        await self.emit(result)
        return result

    async def read(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await self.call(fn, *args, **kwargs)
        self.run.read_waits.append(time.perf_counter() - started)
        return result

    async def emit(self, r: Rollout) -> None:
        """Engine._emit: every event since the last seen (every app's), a rollout read for each of its own."""
        if not self.reads:
            return
        only = r.id if self.own else None
        for event in await self.read(self.store.events, after=self.seen, rollout_id=only):
            self.seen = event.seq
            if event.rollout_id == r.id:
                await self.read(self.store.rollout, r.id)  # hooks.notify(event, store.rollout(...))

    async def hold(self, r: Rollout, seconds: float) -> None:
        """Engine._hold: the abort poll every POLL (Docker's liveness check is not the store's)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.reads:
                await self.read(self.store.abort_requested, r.id)
            await asyncio.sleep(min(POLL, left))

    async def confirm(self, r: Rollout) -> None:
        """Engine._guarded(_apply): the write and Traefik's confirmation, polling for an abort meanwhile."""
        work = asyncio.ensure_future(asyncio.sleep(self.apply))
        while not (await asyncio.wait({work}, timeout=POLL))[0]:
            if self.reads:
                await self.read(self.store.abort_requested, r.id)

    async def forever(self) -> None:
        await asyncio.sleep(random.uniform(0, self.pause))  # started at different moments
        self.seen = await self.read(self.store.last_event_seq)  # Engine.__init__
        while True:
            await self.one()

    async def one(self) -> None:
        state: AppState = await self.read(self.store.app_state, self.app)
        await self.read(self.store.active_rollout, self.app)
        old = state.colour or BLUE
        new = GREEN if old is BLUE else BLUE
        r = await self.commit(
            self.store.create_rollout, app=self.app, from_state=state, to_colour=new,
            to_image=f"{self.app}:{time.time()}", steps=STEPS, pause=self.pause,
        )  # fmt: skip
        r = await self.commit(self.store.advance, r, phase=Phase.READY, message="1 container(s) ready")
        for index, percent in enumerate(STEPS):
            weights = {old: 100 - percent, new: percent}
            message = f"step {index + 1}/{len(STEPS)}: {percent}% on {new}"
            r = await self.commit(
                self.store.advance, r, phase=Phase.SHIFTING, step=index, weights=weights, message=message
            )
            await self.confirm(r)
            await self.commit(self.store.advance, r, message=f"step {index + 1} confirmed in 0.20s")
            self.run.steps_done += 1
            if percent < 100:
                await self.hold(r, self.pause)
        r = await self.commit(
            self.store.advance, r, phase=Phase.DRAINING, weights={old: 0, new: 100}, message=f"draining {old}"
        )
        await self.confirm(r)
        await self.hold(r, self.drain)
        r = await self.commit(
            self.store.advance, r, phase=Phase.CLEANING, weights={new: 100}, message="removing"
        )
        await self.confirm(r)
        live = AppState(app=self.app, colour=new, image=r.to_image)
        await self.commit(self.store.finish, r, outcome=Outcome.DONE, reason=None, live=live)
        self.run.rollouts_done += 1


async def sse_stream(mode: Mode) -> None:
    """routes.events: a read every SSE_POLL, each event sent as JSON."""
    cursor = await mode(mode.store.last_event_seq)
    while True:
        for event in await mode(mode.store.events, after=cursor, limit=SSE_BATCH):
            json.dumps(report.event_dict(event))
            cursor = event.seq
        await asyncio.sleep(POLL)


async def probe(run: Run) -> None:
    loop = asyncio.get_running_loop()
    first = loop.time()
    while True:
        started = loop.time()
        await asyncio.sleep(PROBE)
        lag = max(0.0, loop.time() - started - PROBE)
        if not run.lags or lag > max(run.lags):
            run.worst_at = started - first
        run.lags.append(lag)


async def simulate(
    mode: Mode,
    *,
    apps: int,
    seconds: float,
    pause: float,
    apply: float,
    drain: float,
    streams: int,
    reads: bool,
    own: bool,
) -> Run:
    run = Run(
        mode=mode.name + ("" if reads else ", commits only") + (", _emit of its own events" if own else "")
    )
    random.seed(1)
    tasks = [asyncio.create_task(probe(run))]
    tasks += [asyncio.create_task(sse_stream(mode)) for _ in range(streams if reads else 0)]
    tasks += [
        asyncio.create_task(
            Simulated(mode, run, app, pause=pause, apply=apply, drain=drain, reads=reads, own=own).forever()
        )
        for app in app_names(apps)
    ]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    run.seconds = time.monotonic() - started
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if errors := [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]:
        raise errors[0]
    run.busy, run.calls = dict(mode.busy), dict(mode.calls)
    return run


# ---------------------------------------------------------------------- part 2 with the real engine

ENGINE_MODES = {
    # key: (the engine's store calls on the loop, each _emit reading every app's events)
    "engine-on-all": (True, True),
    "engine-on": (True, False),
    "engine-all": (False, True),
    "engine": (False, False),
}


def engine_mode_name(*, on_loop: bool, every_event: bool) -> str:
    where = "a StateStore on the loop" if on_loop else "AsyncStateStore"
    emit = "every app's events" if every_event else "its own events"
    when = " (before)" if on_loop and every_event else " (now)" if not (on_loop or every_event) else ""
    return f"real engine over {where}, _emit of {emit}{when}"


async def simulate_engine(
    state_dir: Path,
    *,
    apps: int,
    seconds: float,
    pause: float,
    apply: float,
    drain: float,
    streams: int,
    on_loop: bool,
    every_event: bool,
) -> Run:
    """`apps` real Engines rolling at once, back to back, over modelled Docker and Traefik (engine_world).

    As in `serve`: one Engine per rollout over shared adapters, and SSE streams reading through the
    service's own AsyncStateStore. The engines' store is that same AsyncStateStore, or (on_loop) a blocking
    StateStore called on the loop, as the engine was before it awaited the async store.
    """
    run = Run(mode=engine_mode_name(on_loop=on_loop, every_event=every_event))
    config = bench_config(state_dir, apps, pause=pause, drain=drain)
    service_store = AsyncStateStore(state_dir)
    engines_store = engine_world.OnLoop(state_dir) if on_loop else service_store

    def step_done() -> None:
        run.steps_done += 1

    def rollout_done() -> None:
        run.rollouts_done += 1

    observed = engine_world.Observed(
        engines_store,
        every_event=every_event,
        commit_waits=run.commit_waits,
        read_waits=run.read_waits,
        on_step=step_done,
        on_done=rollout_done,
    )
    adapters = engine_world.adapters(config, observed, apply=apply, serving=BLUE)  # as seeded
    random.seed(1)

    async def rolling(app: str) -> None:
        await asyncio.sleep(random.uniform(0, pause))  # started at different moments
        for n in itertools.count(2):
            done = await Engine(adapters=adapters).promote(app=app, image=f"{app}:{n}")
            if done.outcome is not Outcome.DONE:
                raise AssertionError(f"rollout {done.id} of {app}: {done.outcome} ({done.reason})")

    async def sse() -> None:
        cursor = await service_store.last_event_seq()
        while True:
            for event in await service_store.events(after=cursor, limit=SSE_BATCH):
                json.dumps(report.event_dict(event))
                cursor = event.seq
            await asyncio.sleep(POLL)

    tasks = [asyncio.create_task(probe(run))]
    tasks += [asyncio.create_task(sse()) for _ in range(streams)]
    tasks += [asyncio.create_task(rolling(app)) for app in app_names(apps)]
    started = time.monotonic()
    try:
        await asyncio.sleep(seconds)
        run.seconds = time.monotonic() - started
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await service_store.aclose()
        if isinstance(engines_store, engine_world.OnLoop):
            run.busy, run.calls = dict(engines_store.busy), dict(engines_store.calls)
            engines_store.close()
    if errors := [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]:
        raise errors[0]
    return run


# ---------------------------------------------------------------------- the report


def print_table(title: str, rows: dict[str, list[float]]) -> None:
    print(f"\n{title}\n")
    print("| operation | n | median ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in rows.items():
        print(latency_row(name, samples))


def print_runs(runs: list[Run], *, apps: int, pause: float) -> None:
    print(f"\n{apps} apps rolling at once (steps {'/'.join(map(str, STEPS))}, pause {pause:g} s):\n")
    print(
        "| store calls | loop lag median | p99 | max | lag > 100 ms | commit wait median | p99 | max"
        " | commits/s | steps done | rollouts done |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        over = sum(1 for lag in run.lags if lag > 0.1)
        waits = run.commit_waits
        print(
            f"| {run.mode} | {ms(statistics.median(run.lags))} | {ms(pct(run.lags, 0.99))}"
            f" | {ms(max(run.lags))}"
            f" | {over} | {ms(statistics.median(waits))} | {ms(pct(waits, 0.99))} | {ms(max(waits))}"
            f" | {len(waits) / run.seconds:.0f} | {run.steps_done} | {run.rollouts_done} |"
        )
    print("\n(lag and waits in ms; a commit wait is what a rollout waits for its commit, queueing included)")
    for run in (r for r in runs if r.busy):
        print(f"\nWhere the store's time went, {run.mode} (longest lag {run.worst_at:.1f}s into the run):\n")
        print("| method | calls/s | ms per call (mean) | busy ms per second |")
        print("|---|---:|---:|---:|")
        for name, busy in sorted(run.busy.items(), key=lambda kv: -kv[1]):
            calls = run.calls[name]
            per_s = busy / run.seconds * 1000
            print(f"| {name} | {calls / run.seconds:.0f} | {busy / calls * 1000:.3f} | {per_s:.0f} |")
        total = sum(run.busy.values()) / run.seconds * 1000
        print(f"| all | {sum(run.calls.values()) / run.seconds:.0f} | | {total:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_loop", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--events", type=int, default=100_000, help="events already in the store")
    parser.add_argument("--runs", type=int, default=300, help="runs of each operation in part 1")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each part-2 run")
    parser.add_argument("--pause", type=float, default=2.0, help="rollout.pause of the simulated rollouts")
    parser.add_argument("--apply", type=float, default=0.2, help="modelled write + Traefik confirmation")
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--streams", type=int, default=3, help="SSE clients following /events")
    parser.add_argument(
        "--modes",
        default="on,off1,off,on-commits,off-commits,on-own,off-own,engine-on-all,engine-on,engine-all,engine",
        help="part-2 runs of the modelled engine: on (the loop), off1 (one thread), off (AsyncStateStore);"
        " -commits: no reads; -own: each _emit reads only its rollout's events. Of the real engine:"
        " engine (AsyncStateStore), engine-on (a StateStore on the loop); -all: each _emit reads every"
        " app's events, as it did before",
    )
    parser.add_argument("--skip-ops", action="store_true", help="part 2 only")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ts-bench-store-", dir="/tmp") as tmp:
        work = Path(tmp)
        fsyncs = fsync_latency(work)
        print(
            f"SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, {os.cpu_count()} CPUs,"
            f" load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; state folder {work}"
        )
        print(
            f"raw fsync of a 4 KiB append there: median {ms(statistics.median(fsyncs))} ms,"
            f" p99 {ms(pct(fsyncs, 0.99))} ms, max {ms(max(fsyncs))} ms"
        )
        template = work / "template"
        template.mkdir()
        started = time.monotonic()
        seed(template, apps=args.apps, events=args.events)
        print(f"seeded {args.events:,} events over {args.apps} apps in {time.monotonic() - started:.1f}s")

        if not args.skip_ops:
            ops = op_latencies(copy_store(template, work / "ops"), apps=args.apps, runs=args.runs)
            print_table(f"Part 1: store operations, on a store of {args.events:,} events:", ops)
            reads = route_reads(copy_store(template, work / "reads"), apps=args.apps, runs=args.runs)
            print_table(
                "The API's reads at that size, on the loop (the store's part; Docker's excluded):", reads
            )
            aio = asyncio.run(
                facade_reads(copy_store(template, work / "aio"), apps=args.apps, runs=args.runs)
            )
            print(
                "\nThe same through AsyncStateStore (and the real ServiceMetrics), with a 1 ms loop probe:\n"
            )
            print("| operation | n | wall median ms | wall max ms | loop lag meanwhile, median ms | max ms |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, (walls, lags) in aio.items():
                print(
                    f"| {name} | {len(walls)} | {ms(statistics.median(walls))} | {ms(max(walls))}"
                    f" | {ms(statistics.median(lags))} | {ms(max(lags))} |"
                )

        runs = []
        for key in (k.strip() for k in args.modes.split(",")):
            if key in ENGINE_MODES:
                on_loop, every_event = ENGINE_MODES[key]
                name = engine_mode_name(on_loop=on_loop, every_event=every_event)
                print(f"\nrunning {args.apps} apps, {name}, for {args.seconds:g}s ...", file=sys.stderr)
                runs.append(
                    asyncio.run(
                        simulate_engine(
                            copy_store(template, work / f"sim-{key}"),
                            apps=args.apps,
                            seconds=args.seconds,
                            pause=args.pause,
                            apply=args.apply,
                            drain=args.drain,
                            streams=args.streams,
                            on_loop=on_loop,
                            every_event=every_event,
                        )
                    )
                )
                continue
            where, _, only = key.partition("-")
            kind = {"on": OnLoop, "off1": OffLoop, "off": Facade}[where]
            mode = kind(copy_store(template, work / f"sim-{key}"))
            try:
                print(f"\nrunning {args.apps} apps {mode.name} for {args.seconds:g}s ...", file=sys.stderr)
                runs.append(
                    asyncio.run(
                        simulate(
                            mode,
                            apps=args.apps,
                            seconds=args.seconds,
                            pause=args.pause,
                            apply=args.apply,
                            drain=args.drain,
                            streams=args.streams,
                            reads=only != "commits",
                            own=only == "own",
                        )
                    )
                )
            finally:
                mode.close()
        print_runs(runs, apps=args.apps, pause=args.pause)
    return 0


if __name__ == "__main__":
    sys.exit(main())
