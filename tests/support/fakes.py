"""In-memory fakes of the engine's ports, for unit tests of its state machine (no Docker, no Traefik).

A `World` is what outlives a trafficshift process: the containers (Docker), the app's file and what Traefik
confirmed, the webhooks that were sent; with a real state store (SQLite in tmp_path, reached by the engine
through the real AsyncStateStore, as in production) and the real lock files.
`world.engine()` is a fresh process over it. `Faults` makes any call of a fake fail on demand, and `Killed`
is a process dying on the spot (kill -9): a BaseException, so no `except Exception` of the engine sees it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import errno
import itertools
import os
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import aiohttp

from trafficshift.config import parse_config_text
from trafficshift.containers import container_name, one_off_name
from trafficshift.engine import Engine, EventSink
from trafficshift.errors import ContainerError, RoutingRejected, StepNotApplied, UnreachableError
from trafficshift.models import (
    AppSpec,
    AppState,
    Bucket,
    Colour,
    Config,
    ConfirmSpec,
    ContainerEvent,
    ContainerInfo,
    ContainerState,
    Event,
    MetricsSnapshot,
    MirrorRoute,
    Rollout,
    Routing,
    ServiceMetrics,
)
from trafficshift.ports import Adapters
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.store.rollouts import StateStore
from trafficshift.webhooks import ConfirmDenied

# What each fake counts and can fail, one name per side effect (or read) of the outside world.
START = "start"  # Docker: create/start a colour's containers
STOP = "stop"  # Docker: stop and remove a colour's containers
STATE = "state"  # Docker: inspect one container (readiness, liveness)
LIST = "list"  # Docker: list an app's containers
IMAGE = "image"  # Docker: pull/inspect the image
DOCKER_PING = "docker-ping"
RUN_ONCE = "run-once"  # Docker: a one-off container (a pre_deploy hook) created and started
EXEC = "exec"  # Docker: a command exec'd in a container (pre_stop, post_deploy)
WRITE = "write"  # the app's dynamic file, written (or removed)
CONFIRM = "confirm"  # Traefik's API shows the file's routing
TRAEFIK_PING = "traefik-ping"
MIRROR = "mirror"  # the app's mirror file, written or removed, and confirmed
NOTIFY = "notify"  # a transition was committed to the store and is sent to the webhooks
GATE = "gate"  # the confirm gate is asked
SCRAPE = "scrape"  # Traefik's metrics are read

APP = "web"

# Every routing Traefik is asked to run is confirmed, or not (the fake's StepNotApplied).
CONFIG_TEXT = """\
traefik:
  dynamic_dir: ./dynamic
  metrics_url: http://127.0.0.1:8082/metrics
apps:
  web:
    image: web:1
    port: 8080
    rule: "Host(`web.localhost`)"
    publish: 127.0.0.1
    replicas: 2
    health: {interval: 1ms, start_timeout: 5s}
    rollout: {steps: [10, 50, 100], pause: 0s, drain: 0s, stop_timeout: 0s}
"""


class Killed(BaseException):
    """The process died here (kill -9): nothing after this point runs, and no `except Exception` sees it."""


class Faults:
    """Failures on demand: the Nth call of an operation from now raises an error, or runs an action first."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.log: list[str] = []
        self._planned: dict[tuple[str, int], list[BaseException | Callable[[], None]]] = {}

    def at(
        self,
        op: str,
        n: int = 1,
        *,
        error: BaseException | None = None,
        action: Callable[[], None] | None = None,
    ) -> None:
        """Make the `n`th call of `op` from now (1: the next one) run `action`, then raise `error`."""
        planned = self._planned.setdefault((op, self.calls[op] + n), [])
        if action is not None:
            planned.append(action)
        if error is not None:
            planned.append(error)

    def always(self, op: str, error: BaseException, *, times: int = 100) -> None:
        """The next `times` calls of `op` all raise `error`."""
        for n in range(1, times + 1):
            self.at(op, n, error=error)

    def clear(self) -> None:
        """No more failures (e.g. the operator fixed the cause)."""
        self._planned.clear()

    def hit(self, op: str) -> None:
        self.calls[op] += 1
        self.log.append(op)
        for fault in self._planned.pop((op, self.calls[op]), []):
            if isinstance(fault, BaseException):
                raise fault
            fault()


# ---------------------------------------------------------------- Docker


class Behaviour(enum.Enum):
    """How the containers of an image do once started."""

    READY = "ready"  # the image's HEALTHCHECK says healthy at once
    NEVER_READY = "never-ready"  # its HEALTHCHECK stays `starting`: readiness times out
    CRASHES = "crashes"  # it exits with code 1 right after it starts


@dataclass
class FakeContainer:
    id: str
    name: str
    app: str
    colour: Colour
    image: str
    port: int
    status: str = "running"
    health: str = "healthy"
    exit_code: int = 0
    restart_count: int = 0
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # After a restart: how many more inspections until its HEALTHCHECK says healthy again.
    warming: int = 0

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ready(self) -> bool:
        """What trafficshift may route to: running, and healthy at its current address.

        Invariant 1 (docs/ARCHITECTURE.md).
        """
        return self.running and self.health == "healthy"

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.running else None

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            app=self.app,
            colour=self.colour,
            image=self.image,
            running=self.running,
            health=self.health,
            url=self.url,
            probe_url=self.url,
        )


@dataclass(frozen=True)
class Script:
    """What a command does when a hook runs it: prints `lines`, then exits `exit_code` (None: never ends)."""

    lines: tuple[str, ...] = ()
    exit_code: int | None = 0


@dataclass(frozen=True)
class Ran:
    """One hook command run: where (a one-off's or a container's name), and what the file said then."""

    where: str
    command: tuple[str, ...]
    confirmed: Mapping[Colour, int] | None  # what Traefik last confirmed (None: nothing yet)
    names: tuple[str, ...]  # the app's colour containers at that moment


class FakeContainers:
    """The `ports.ContainerRuntime` of a fake Docker: containers with states, behaviours per image."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.containers: dict[str, FakeContainer] = {}
        self.behaviour: dict[str, Behaviour] = {}  # by image; READY when not set
        self.started: builtins.list[str] = []  # names, each time one was created
        # Told before a colour is stopped (World checks invariant 2 (docs/ARCHITECTURE.md) with it).
        self.before_stop: Callable[[str, Colour], None] | None = None
        # By command: what it prints and how it exits (an unlisted command prints nothing and exits 0).
        self.scripts: dict[tuple[str, ...], Script] = {}
        self.ran: builtins.list[Ran] = []  # every run_once and exec_command, in order
        self.one_offs: dict[str, str] = {}  # one-off containers there now: name -> app
        # What Traefik last confirmed, for Ran (World sets it).
        self.confirmed: Callable[[], Mapping[Colour, int] | None] = lambda: None
        self._ports = itertools.count(31001)
        self._ids = itertools.count(1)
        self._events: asyncio.Queue[ContainerEvent] = asyncio.Queue()

    # ------------------------------------------------------------ the port

    async def ping(self) -> None:
        self.faults.hit(DOCKER_PING)

    async def ensure_image(self, image: str) -> str:
        self.faults.hit(IMAGE)
        return f"sha256:{image}"

    async def check_needs(self, *, app: AppSpec) -> None:
        return None  # a compose-backed app's prerequisites are tested against real Docker

    async def start_colour(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        self.faults.hit(START)
        wanted = [container_name(app=app.name, colour=colour, n=n) for n in range(1, app.replicas + 1)]
        for c in self._of(app.name, colour):
            if c.name not in wanted:
                self._remove(c)
        started = []
        for name in wanted:
            existing = self.containers.get(name)
            if (
                existing is not None
                and existing.image == image
                and existing.running
                and not existing.restart_count
            ):
                started.append(existing.info())
                continue
            if existing is not None:
                self._remove(existing)
            started.append(self._create(app=app.name, colour=colour, image=image, name=name).info())
        return started

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        self.faults.hit(LIST)
        return [c.info() for c in self._of(app, colour)]

    async def state(self, *, name: str) -> ContainerState | None:
        self.faults.hit(STATE)
        c = self._find(name)
        if c is None:
            return None
        if c.warming:
            c.warming -= 1
            if not c.warming:
                c.health = "healthy"
        return ContainerState(
            info=c.info(), status=c.status, exit_code=c.exit_code, restart_count=c.restart_count, error=""
        )

    async def wait_exit(self, *, name: str) -> int:
        c = self._find(name)
        if c is None:
            return -1
        await c.exited.wait()
        return c.exit_code

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        return [f"{name}: the fake's last words"][-tail:]

    async def stop_and_remove(self, *, app: str, colour: Colour, stop_timeout: float) -> None:
        self.faults.hit(STOP)
        if self.before_stop is not None and self._of(app, colour):
            self.before_stop(app, colour)
        for c in self._of(app, colour):
            self._remove(c)

    async def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        while True:
            event = await self._events.get()
            if event.action in actions:
                yield event

    async def run_once(
        self,
        *,
        app: AppSpec,
        image: str,
        command: Sequence[str],
        purpose: str,
        on_output: Callable[[str], Awaitable[None]],
    ) -> int:
        name = one_off_name(app=app.name, purpose=purpose)
        self.one_offs[name] = app.name  # one a killed process left is replaced
        self._note(name, app.name, command)
        self.faults.hit(RUN_ONCE)  # a Killed here leaves it behind, as kill -9 would
        try:
            return await self._play(command, on_output)
        finally:
            self.one_offs.pop(name, None)

    async def remove_one_offs(self, *, app: str) -> None:
        for name in [n for n, a in self.one_offs.items() if a == app]:
            del self.one_offs[name]

    async def exec_command(
        self, *, name: str, command: Sequence[str], on_output: Callable[[str], Awaitable[None]]
    ) -> int:
        self.faults.hit(EXEC)
        c = self._find(name)
        if c is None or not c.running:
            raise ContainerError(f"container {name}: is not running")
        self._note(name, c.app, command)
        return await self._play(command, on_output)

    def _note(self, where: str, app: str, command: Sequence[str]) -> None:
        self.ran.append(Ran(where, tuple(command), self.confirmed(), tuple(self.names(app=app))))

    async def _play(self, command: Sequence[str], on_output: Callable[[str], Awaitable[None]]) -> int:
        script = self.scripts.get(tuple(command), Script())
        for line in script.lines:
            await on_output(line)
        if script.exit_code is None:
            await asyncio.Event().wait()  # until cancelled (its timeout, an abort)
        return script.exit_code or 0

    # ------------------------------------------------------------ for tests

    def crash(self, colour: Colour, *, app: str = APP) -> None:
        """Every container of the colour crashes and Docker restarts it on a new published port.

        Its HEALTHCHECK says `starting` until the second inspection after that: routed before then, it
        would be routed unready.
        """
        for c in self._of(app, colour):
            if not c.running:
                continue
            c.exit_code = 1
            c.exited.set()
            c.exited = asyncio.Event()
            c.restart_count += 1
            c.port = next(self._ports)
            if c.health == "healthy":
                c.health, c.warming = "starting", 2

    def names(self, colour: Colour | None = None, *, app: str = APP) -> builtins.list[str]:
        return [c.name for c in self._of(app, colour)]

    def urls(self, colour: Colour, *, app: str = APP) -> tuple[str, ...]:
        return tuple(sorted(c.url for c in self._of(app, colour) if c.url))

    def ready_urls(self, app: str = APP) -> frozenset[str]:
        return frozenset(c.url for c in self._of(app, None) if c.ready and c.url)

    def images(self, *, app: str = APP) -> set[str]:
        return {c.image for c in self._of(app, None)}

    # ------------------------------------------------------------ internals

    def _of(self, app: str, colour: Colour | None) -> builtins.list[FakeContainer]:
        found = [c for c in self.containers.values() if c.app == app and colour in (None, c.colour)]
        return sorted(found, key=lambda c: c.name)

    def _find(self, name: str) -> FakeContainer | None:
        return self.containers.get(name) or next((c for c in self.containers.values() if c.id == name), None)

    def _create(self, *, app: str, colour: Colour, image: str, name: str) -> FakeContainer:
        c = FakeContainer(
            id=f"c{next(self._ids):04d}",
            name=name,
            app=app,
            colour=colour,
            image=image,
            port=next(self._ports),
        )
        behaviour = self.behaviour.get(image, Behaviour.READY)
        if behaviour is Behaviour.NEVER_READY:
            c.health = "starting"
        elif behaviour is Behaviour.CRASHES:
            c.status, c.exit_code = "exited", 1
            c.exited.set()
        self.containers[name] = c
        self.started.append(name)
        return c

    def _remove(self, c: FakeContainer) -> None:
        c.status = "exited"
        c.exited.set()
        del self.containers[c.name]


# ---------------------------------------------------------------- Traefik


@dataclass(frozen=True)
class Asked:
    """One routing the publisher was asked to publish, with what was true of the world at that moment."""

    routing: Routing
    ready_urls: frozenset[str]  # servers that were running, healthy and never restarted
    live: Colour | None  # the colour the store said serves the app (no rollout: the only one)


class FakePublisher:
    """The `ports.RoutingPublisher` of a fake file provider and Traefik API: records every routing."""

    def __init__(
        self, faults: Faults, *, witness: Callable[[str], tuple[frozenset[str], Colour | None]]
    ) -> None:
        self.faults = faults
        self.files: dict[str, Routing] = {}  # what each app's file holds (absent: no file)
        self.asked: list[Asked] = []
        self.confirmed: list[Routing] = []  # what Traefik was seen to run, in order
        self.mirrors: dict[str, MirrorRoute] = {}  # each app's mirror file (absent: none)
        self.mirror_log: list[MirrorRoute | None] = []  # every mirror file written (None: removed)
        # A mirror naming a colour the app's file did not list, or a file dropping a mirrored colour: Traefik
        # would run a mirroring service in error.
        self.dangling: list[tuple[MirrorRoute, Routing]] = []
        self.checked: list[str] = []  # apps whose router options were tried
        self.rejects: RoutingRejected | None = None  # what the trial answers (None: accepted)
        self._witness = witness

    async def ping(self) -> None:
        self.faults.hit(TRAEFIK_PING)

    def read(self, app: str) -> Routing | None:
        return self.files.get(app, Routing(app=app, routes=()))

    async def check(self, *, spec: AppSpec) -> None:
        self.checked.append(spec.name)
        if self.rejects is not None:
            raise self.rejects

    async def publish(self, *, spec: AppSpec, routing: Routing) -> float:
        ready, live = self._witness(spec.name)
        self.asked.append(Asked(routing=routing, ready_urls=ready, live=live))
        self.faults.hit(WRITE)
        mirror = self.mirrors.get(spec.name)
        if mirror is not None and mirror.colour not in routing.weights():
            self.dangling.append((mirror, routing))
        if routing.routes:
            self.files[spec.name] = routing
        else:
            self.files.pop(spec.name, None)
        self.faults.hit(CONFIRM)
        self.confirmed.append(routing)
        return 0.0

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        self.faults.hit(MIRROR)
        if mirror is None:
            self.mirrors.pop(spec.name, None)
        else:
            if mirror.colour not in self.file(spec.name).weights():
                self.dangling.append((mirror, self.file(spec.name)))
            self.mirrors[spec.name] = mirror
        self.mirror_log.append(mirror)
        return 0.0

    def file(self, app: str = APP) -> Routing:
        return self.files.get(app, Routing(app=app, routes=()))


def write_failed() -> OSError:
    """What write_dynamic raises when the disk is full."""
    return OSError(errno.ENOSPC, "No space left on device")


def not_applied(routing: Routing | None = None) -> StepNotApplied:
    """What the Traefik API adapter raises when Traefik does not show the file in time."""
    return StepNotApplied(f"{APP}@file", routing, "the previous routing")


# ---------------------------------------------------------------- webhooks, metrics


class FakeNotifier:
    """The `ports.Notifier`: records every transition sent, answers the confirm gate as told."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.events: list[Event] = []
        self.gate_asked: list[Mapping[Colour, int]] = []
        self.gate_answer: ConfirmDenied | None = None  # None: approve
        # Die right after the first transition (committed to the store) this matches, before its side effect.
        self.kill_after: Callable[[Event], bool] | None = None
        self._when: list[tuple[Callable[[Event], bool], Callable[[], None]]] = []

    def when(self, match: Callable[[Event], bool], action: Callable[[], None]) -> None:
        """Run `action` right after the first transition that `match`es is committed, before its effect."""
        self._when.append((match, action))

    def notify(self, event: Event, rollout: Rollout | None) -> None:
        self.events.append(event)
        self.faults.hit(NOTIFY)
        for hook in [h for h in self._when if h[0](event)]:
            self._when.remove(hook)
            hook[1]()
        if self.kill_after is not None and self.kill_after(event):
            self.kill_after = None
            raise Killed(f"killed after {event.phase} {event.message!r}")

    async def confirm(
        self, *, gate: ConfirmSpec, rollout: Rollout, step: int, weights: Mapping[Colour, int]
    ) -> None:
        self.faults.hit(GATE)
        self.gate_asked.append(dict(weights))
        if self.gate_answer is not None:
            raise self.gate_answer

    async def aclose(self) -> None:
        pass


class FakeMetrics:
    """The `ports.MetricsSource`: each scrape, `per_scrape` more requests on each colour's service."""

    def __init__(self, faults: Faults, *, app: str = APP) -> None:
        self.faults = faults
        self.app = app
        self.per_scrape = 100
        self.error_rate: dict[Colour, float] = {Colour.BLUE: 0.0, Colour.GREEN: 0.0}
        self.unreachable = False
        self._scrapes = 0

    async def scrape(self, services: Collection[str] | None = None) -> MetricsSnapshot:
        self.faults.hit(SCRAPE)
        if self.unreachable:
            raise UnreachableError("cannot read Traefik metrics at the fake")
        self._scrapes += 1
        found = {}
        for colour, rate in self.error_rate.items():
            total = float(self.per_scrape * self._scrapes)
            found[f"{self.app}-{colour}@file"] = ServiceMetrics(
                requests={"2xx": total * (1 - rate), "5xx": total * rate},
                buckets=(Bucket(le=0.01, count=total), Bucket(le=float("inf"), count=total)),
            )
        found = {name: m for name, m in found.items() if services is None or name in services}
        return MetricsSnapshot(taken_at=float(self._scrapes), services=found)


# ---------------------------------------------------------------- the world


@dataclass
class World:
    """Everything that outlives a trafficshift process, with the real store and lock files."""

    config: Config
    store: AsyncStateStore  # the engines': off the loop, as in production
    # A query-only connection on the test's own thread, for checks that cannot await (a fault's action,
    # the publisher's witness, the assertions of tests.support.checks). It sees every commit that returned.
    records: StateStore
    faults: Faults
    containers: FakeContainers
    publisher: FakePublisher
    notifier: FakeNotifier
    metrics: FakeMetrics
    events: list[Event] = field(default_factory=list)  # what every engine's on_event saw
    # Colours stopped while the app's file, or what Traefik last confirmed, still listed them: invariant 2
    # (docs/ARCHITECTURE.md).
    stopped_while_routed: list[Colour] = field(default_factory=list)

    def __post_init__(self) -> None:
        def before_stop(app: str, colour: Colour) -> None:
            confirmed = self.publisher.confirmed[-1] if self.publisher.confirmed else None
            if colour in self.publisher.file(app).weights() or (confirmed and colour in confirmed.weights()):
                self.stopped_while_routed.append(colour)

        self.containers.before_stop = before_stop
        self.containers.confirmed = lambda: (
            self.publisher.confirmed[-1].weights() if self.publisher.confirmed else None
        )

    @property
    def spec(self) -> AppSpec:
        return self.config.apps[APP]

    def adapters(self) -> Adapters:
        return Adapters(
            config=self.config,
            store=self.store,
            containers=self.containers,
            routing=self.publisher,
            locks=FileLocks(self.config.state_dir),
            notifier=self.notifier,
            metrics=self.metrics if self.config.traefik.metrics_url else None,
            # Only readiness probes of `health.path` use it: these configs have none.
            http=cast(aiohttp.ClientSession, None),
        )

    def set_start_timeout(self, seconds: float) -> None:
        """Give up on readiness after `seconds` in the engines made from now on.

        Ready fakes are ready at once, so the config's 5 s are never waited for, but a timeout of a few
        milliseconds could pass for a slow start on a busy machine: only tests of a colour that never gets
        ready shorten it, once what must get ready is.
        """
        spec = self.config.apps[APP]
        health = replace(spec.health, start_timeout=seconds)
        self.config = replace(self.config, apps={**self.config.apps, APP: replace(spec, health=health)})

    def engine(self, *, on_event: EventSink | None = None, **kwargs: Any) -> Engine:
        """A fresh engine over the world: a new trafficshift process."""
        return Engine(adapters=self.adapters(), on_event=on_event or self.events.append, **kwargs)

    def live(self) -> AppState:
        return self.records.app_state(APP)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.records.close()


# Where `fresh_world` keeps its store and lock files: in memory (tmpfs) where there is one, as disk I/O is
# most of the time an engine test takes.
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None


@contextlib.contextmanager
def fresh_world(*, extra: str = "", config_text: str = CONFIG_TEXT) -> Iterator[World]:
    """A world in a temporary folder of its own (in memory where possible), closed and removed after."""
    with tempfile.TemporaryDirectory(dir=FAST_TMP, prefix="trafficshift-test-") as tmp:
        world = make_world(Path(tmp), extra=extra, config_text=config_text)
        try:
            yield world
        finally:
            world.close()


def make_world(tmp_path: Path, *, extra: str = "", config_text: str = CONFIG_TEXT) -> World:
    """A world for `config_text` (plus app-level keys in `extra`, indented by 4) under `tmp_path`."""
    config = parse_config_text(config_text + extra, source="trafficshift.yml", base_dir=tmp_path)
    store = AsyncStateStore(config.state_dir)
    _without_fsync(store)
    records = StateStore(config.state_dir, read_only=True)
    faults = Faults()
    containers = FakeContainers(faults)

    def witness(app: str) -> tuple[frozenset[str], Colour | None]:
        return containers.ready_urls(app), records.app_state(app).colour

    return World(
        config=config,
        store=store,
        records=records,
        faults=faults,
        containers=containers,
        publisher=FakePublisher(faults, witness=witness),
        notifier=FakeNotifier(faults),
        metrics=FakeMetrics(faults),
    )


def _without_fsync(store: AsyncStateStore) -> None:
    """Commit without waiting for an fsync, on the writer's own thread (its connection never leaves it).

    Durability across power loss is not under test here, and an fsync per commit is most of a test's time.
    Through private handles: production has no such switch.
    """
    writer = store._writer
    writer._pool.submit(lambda: writer._store._db.execute("PRAGMA synchronous=OFF")).result()


def with_mirror(config_text: str = CONFIG_TEXT, *, duration: str = "50ms") -> str:
    """`config_text` whose app mirrors 20% of GET and HEAD to the new colour before step 1."""
    mirrored = config_text.replace(
        "stop_timeout: 0s}", f"stop_timeout: 0s, mirror: {{percent: 20, duration: {duration}}}}}"
    )
    assert mirrored != config_text
    return mirrored
