"""Modelled Docker, Traefik and webhooks for running the real Engine at scale, without either (store_loop).

Every rollout's store calls are the engine's own (`Engine.promote`, with its `_advance`, `_emit`,
`_check_abort`); only the outside world is modelled: containers are ready at once, and each write of a
dynamic file takes `apply` seconds until "Traefik" confirms it (a sleep). The store the engines get can be
the service's AsyncStateStore, or a blocking StateStore called on the loop (the engine before it awaited the
async store), each with `_emit` reading only the engine's rollouts (now) or every app's events (before).
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import aiohttp

from trafficshift import plan
from trafficshift.models import (
    AppSpec,
    Colour,
    Config,
    ConfirmSpec,
    ContainerEvent,
    ContainerInfo,
    ContainerState,
    Event,
    MirrorRoute,
    Rollout,
    Routing,
)
from trafficshift.ports import Adapters
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.store.rollouts import StateStore

COMMITS = frozenset({"create_rollout", "advance", "finish", "request_abort"})


class Containers:
    """The `ports.ContainerRuntime`: every container runs and is healthy as soon as it is started."""

    def __init__(self) -> None:
        self._by_app: dict[str, builtins.list[ContainerInfo]] = {}
        self._ports = itertools.count(20000)

    async def ping(self) -> None:
        return None

    async def ensure_image(self, image: str) -> str:
        return image

    async def check_needs(self, *, app: AppSpec) -> None:
        return None

    async def start_colour(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        return self.run(app=app, colour=colour, image=image)

    def run(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        """Replace the colour's containers with `app.replicas` running, healthy ones."""
        kept = [c for c in self._by_app.get(app.name, []) if c.colour is not colour]
        started = []
        for n in range(1, app.replicas + 1):
            url = f"http://127.0.0.1:{next(self._ports)}"
            name = f"{app.name}-{colour}-{n}"
            started.append(
                ContainerInfo(
                    id=f"{name}-{url[-5:]}", name=name, app=app.name, colour=colour, image=image,
                    running=True, health="healthy", url=url, probe_url=url,
                )
            )  # fmt: skip
        self._by_app[app.name] = kept + started
        return started

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        return [c for c in self._by_app.get(app, []) if colour in (None, c.colour)]

    async def state(self, *, name: str) -> ContainerState | None:
        for infos in self._by_app.values():
            for c in infos:
                if name in (c.name, c.id):
                    return ContainerState(info=c, status="running", exit_code=0, restart_count=0, error="")
        return None

    async def wait_exit(self, *, name: str) -> int:
        await asyncio.Event().wait()  # they never exit
        return 0

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        return []

    async def stop_and_remove(self, *, app: str, colour: Colour, stop_timeout: float) -> None:
        self._by_app[app] = [c for c in self._by_app.get(app, []) if c.colour is not colour]

    async def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # never reached: no events

    # Release hooks: the benchmark's apps have none; a command (if one were set) prints nothing and exits 0.

    async def run_once(
        self,
        *,
        app: AppSpec,
        image: str,
        command: Sequence[str],
        purpose: str,
        on_output: Callable[[str], Awaitable[None]],
    ) -> int:
        return 0

    async def remove_one_offs(self, *, app: str) -> None:
        return None

    async def exec_command(
        self, *, name: str, command: Sequence[str], on_output: Callable[[str], Awaitable[None]]
    ) -> int:
        return 0


class Publisher:
    """The `ports.RoutingPublisher`: the file in memory, confirmed by "Traefik" `apply` seconds later."""

    def __init__(self, *, apply: float) -> None:
        self.apply = apply
        self.files: dict[str, Routing] = {}
        self.mirrors: dict[str, MirrorRoute] = {}

    async def ping(self) -> None:
        return None

    def read(self, app: str) -> Routing | None:
        return self.files.get(app, Routing(app=app, routes=()))

    async def check(self, *, spec: AppSpec) -> None:
        return None  # the app's router options are accepted

    async def publish(self, *, spec: AppSpec, routing: Routing) -> float:
        self.files[spec.name] = routing
        await asyncio.sleep(self.apply)
        return self.apply

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        if mirror is None and spec.name not in self.mirrors:
            return 0.0  # no file to remove (the real one confirms through two API reads)
        if mirror is None:
            del self.mirrors[spec.name]
        else:
            self.mirrors[spec.name] = mirror
        await asyncio.sleep(self.apply)
        return self.apply


class Notifier:
    """The `ports.Notifier` without webhooks: counts the transitions it is told of."""

    def __init__(self) -> None:
        self.notified = 0

    def notify(self, event: Event, rollout: Rollout | None) -> None:
        self.notified += 1

    async def confirm(
        self, *, gate: ConfirmSpec, rollout: Rollout, step: int, weights: Mapping[Colour, int]
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None


class OnLoop:
    """AsyncStateStore's coroutines over a blocking StateStore, each call run on the loop: the engine before.

    `busy` and `calls` account the time each method held the loop.
    """

    def __init__(self, state_dir: Any) -> None:
        self.store = StateStore(state_dir)
        self.busy: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        fn = getattr(self.store, name)

        async def on_the_loop(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy[name] = self.busy.get(name, 0.0) + time.perf_counter() - started
                self.calls[name] = self.calls.get(name, 0) + 1

        return on_the_loop

    def close(self) -> None:
        self.store.close()


class Observed:
    """The store as the engines see it: waits timed, steps counted, `_emit`'s reads as before if asked.

    `every_event`: a read of one rollout's events reads every app's new ones and keeps that rollout's, as
    the engine's `_emit` did before it read by rollout (its cursor then was the last event it had read of
    any app, which is close to the last of its own: it read right after each of its commits).
    """

    def __init__(
        self,
        store: AsyncStateStore | OnLoop,
        *,
        every_event: bool,
        commit_waits: list[float],
        read_waits: list[float],
        on_step: Callable[[], None],
        on_done: Callable[[], None],
    ) -> None:
        self._store = store
        self._every_event = every_event
        self._commit_waits, self._read_waits = commit_waits, read_waits
        self._on_step, self._on_done = on_step, on_done

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        fn = getattr(self._store, name)
        waits = self._commit_waits if name in COMMITS else self._read_waits

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = await fn(*args, **kwargs)
            waits.append(time.perf_counter() - started)
            if name == "advance" and " confirmed in " in kwargs.get("message", ""):
                self._on_step()
            elif name == "finish":
                self._on_done()
            return result

        return timed

    async def events(self, *, after: int = 0, rollout_id: str | None = None, limit: int = -1) -> list[Event]:
        started = time.perf_counter()
        if self._every_event and rollout_id is not None:
            found = await self._store.events(after=after, limit=limit)
            found = [e for e in found if e.rollout_id == rollout_id]
        else:
            found = await self._store.events(after=after, rollout_id=rollout_id, limit=limit)
        self._read_waits.append(time.perf_counter() - started)
        return found


def adapters(config: Config, store: Observed, *, apply: float, serving: Colour) -> Adapters:
    """One bundle for every engine of the run, as the service shares its adapters.

    `serving` runs each app now (its config's image), routed alone by its file: what the store says.
    """
    containers, publisher = Containers(), Publisher(apply=apply)
    for app, spec in config.apps.items():
        running = containers.run(app=spec, colour=serving, image=spec.image)
        publisher.files[app] = plan.routing_for(app=app, weights={serving: 100}, containers=running)
    return Adapters(
        config=config,
        store=cast(AsyncStateStore, store),
        containers=containers,
        routing=publisher,
        locks=FileLocks(config.state_dir),
        notifier=Notifier(),
        metrics=None,
        http=cast(aiohttp.ClientSession, None),  # no `health.path`: no HTTP probes
    )
