"""Dynamic config from Docker events: each app's file follows its containers between rollouts.

A replica that dies leaves the file at once; one that Docker restarts (with a new published port, or the same
address on a network) comes back only after trafficshift has probed it ready: invariant 1
(docs/ARCHITECTURE.md). The file is written under the app's lock, invariant 5 (docs/ARCHITECTURE.md), so
never while a rollout runs: the app stays marked and is retried after. What may be routed is decided
under that lock from the file as it is then (probes run without it, and a rollout may have rewritten the
file meanwhile); a routing that would leave a weighted colour without a server is never written:
invariant 7 (docs/ARCHITECTURE.md); nor one for an app whose weights nothing records (no state, both
colours up): the file is removed only when the store says the app is undeployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace

from trafficshift import plan, report
from trafficshift.models import Colour, ContainerEvent, ContainerInfo, LockRole, Routing
from trafficshift.ports import Adapters
from trafficshift.readiness import probe_ready

log = logging.getLogger("trafficshift.provider")

# While an app's lock is taken (a rollout runs), look again this often.
RETRY = 1.0
# After the event stream breaks (Docker restarting), connect again after this long, and reconcile everything.
RECONNECT = 2.0
EVENTS = ("start", "die", "health_status")

Allowed = set[tuple[str, str | None]]  # (container id, url) pairs that may be servers


class Provider:
    """Watches Docker for the managed containers and re-renders the affected app's dynamic file."""

    def __init__(self, *, adapters: Adapters) -> None:
        self.adapters = adapters
        config = self.config = adapters.config
        # Read off the loop; the file itself is written through the adapters (under the app's lock).
        self.store = adapters.store
        self.containers = adapters.containers
        self._dirty = {app: asyncio.Event() for app in config.apps}
        # Deaths seen per container id, and how many of them a successful probe has cleared since.
        self._died: dict[str, int] = {}
        self._cleared: dict[str, int] = {}
        # Last URL seen per container id: a dead replica's server is dropped without asking Docker, which
        # answers inspect only once its restart of the container is through (a second or two).
        self._urls: dict[str, str] = {}
        self._dead: dict[str, set[str]] = {app: set() for app in config.apps}
        # Ids of each app's containers as last listed: what the per-container dicts may keep.
        self._known: dict[str, set[str]] = {app: set() for app in config.apps}

    def mark(self, app: str) -> None:
        if app in self._dirty:
            self._dirty[app].set()

    async def run(self) -> None:
        """Reconcile every app (each by its worker, as after an event), then follow Docker events."""
        for app in self.config.apps:
            self.mark(app)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch())
            for app in sorted(self.config.apps):
                group.create_task(self._worker(app))

    # ------------------------------------------------------------------ events

    async def _watch(self) -> None:
        while True:
            async with contextlib.aclosing(self.containers.events(actions=EVENTS)) as events:
                async for event in events:
                    self._on_event(event)
            log.warning("the Docker event stream ended; reconnecting in %gs", RECONNECT)
            await asyncio.sleep(RECONNECT)
            for app in self.config.apps:
                self.mark(app)  # whatever happened meanwhile

    def _on_event(self, event: ContainerEvent) -> None:
        app, cid = event.app, event.id
        if app not in self._dirty:
            return
        if event.action == "die":
            self._died[cid] = self._died.get(cid, 0) + 1
            self._dead[app].add(cid)
        log.info("docker: %s %s (%s)", event.name or cid[:12], event.action, app)
        self.mark(app)

    # ------------------------------------------------------------------ reconciling

    async def _worker(self, app: str) -> None:
        dirty = self._dirty[app]
        waiting = False
        while True:
            await dirty.wait()
            dirty.clear()
            if await self._reconcile_logged(app):
                waiting = False
                continue
            if not waiting:
                log.info("%s: a rollout holds the app; its file is re-rendered after it", app)
                waiting = True
            await asyncio.sleep(RETRY)
            dirty.set()

    async def _reconcile_logged(self, app: str) -> bool:
        try:
            return await self.reconcile(app)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s: re-rendering the dynamic file failed: %s", app, exc, exc_info=exc)
            return True  # the next event tries again

    async def reconcile(self, app: str) -> bool:
        """Make the app's file match its live, ready containers; False when a rollout holds the app."""
        if not await self._drop_dead(app):
            return False
        # Removing needs no probe: the dead, unhealthy and restarted go at once.
        if not await self._write(app, probed=set()):
            return False
        containers = await self.containers.list(app=app)
        self._remember(app, containers)
        trusted = self._trusted(app, containers)
        new = [c for c in containers if plan.server_url(c) and (c.id, c.url) not in trusted]
        if not new:
            return True
        deaths = {c.id: self._died.get(c.id, 0) for c in new}
        results = await asyncio.gather(*(self._probe(app, c) for c in new))
        ready: Allowed = {(c.id, c.url) for c, ok in zip(new, results, strict=True) if ok}
        for c in new:
            if (c.id, c.url) in ready:
                self._cleared[c.id] = max(self._cleared.get(c.id, 0), deaths[c.id])
            else:
                log.info("%s: %s did not become ready; it stays out of the file", app, c.name)
        return await self._write(app, probed=ready)

    def _trusted(self, app: str, containers: list[ContainerInfo]) -> Allowed:
        """Containers that may stay routed without a probe: in the app's file now, and not died since."""
        in_file = self._file_routing(app)
        servers = plan.trusted_servers(containers, trusted=in_file.servers() if in_file else set())
        return {(c.id, c.url) for c in servers if not self._suspect(c.id)}

    def _remember(self, app: str, containers: list[ContainerInfo]) -> None:
        """Note each container's URL; forget ids Docker no longer lists (removed by a rollout, or by hand)."""
        listed = {c.id for c in containers}
        self._urls.update((c.id, c.url) for c in containers if c.url)
        for cid in self._known[app] - listed - self._dead[app]:
            for table in (self._died, self._cleared, self._urls):
                table.pop(cid, None)
        self._known[app] = listed

    async def _drop_dead(self, app: str) -> bool:
        """Take the servers of replicas that just died out of the file, from what it says now."""
        dead = {self._urls[cid] for cid in self._dead[app] if cid in self._urls}
        if not dead:
            self._dead[app].clear()
            return True
        with self._holding(app) as held:
            if not held:
                return False
            self._dead[app].clear()
            before = self._file_routing(app)
            if before is None or not before.servers() & dead:
                return True
            routes = []
            for route in before.routes:
                servers = tuple(s for s in route.servers if s not in dead)
                if servers:
                    routes.append(replace(route, servers=servers))
            # Pins are the rollout's to add and remove: keep those whose colour still has servers.
            kept = {r.colour for r in routes}
            routing = Routing(
                app=app, routes=tuple(routes), pins=tuple(p for p in before.pins if p.colour in kept)
            )
            if not await self._servable(app, routing, await self.containers.list(app=app)):
                return True
            took = await self._publish(app, routing)
            log.info("%s: dropped %s (died); confirmed in %.2fs", app, ", ".join(sorted(dead)), took)
            return True

    async def _probe(self, app: str, info: ContainerInfo) -> bool:
        log.info("%s: probing %s at %s before it gets traffic", app, info.name, info.url)
        return await probe_ready(
            app=self.config.apps[app], containers=self.containers, info=info, session=self.adapters.http
        )

    def _suspect(self, container_id: str) -> bool:
        return self._died.get(container_id, 0) > self._cleared.get(container_id, 0)

    @contextlib.contextmanager
    def _holding(self, app: str) -> Iterator[bool]:
        """Hold the app's lock while its file is written; yields False when a rollout holds it.

        The lock file names the provider as its holder: a rollout start waits for it rather than failing.
        """
        lock = self.adapters.locks.lock(app)
        if not lock.try_acquire(LockRole.PROVIDER):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    async def _weights(self, app: str, containers: list[ContainerInfo]) -> dict[Colour, int] | None:
        """What the app should route now; None (logged) when nothing tells: its file is then left alone.

        Read on the store's thread.
        """
        state, rollout = (await self.store.overview([app]))[app]
        weights = plan.known_weights(state, rollout, containers)
        # Never deployed (no record, nothing running) is not worth a warning: there is nothing to route.
        if weights is None and (colours := sorted({str(c.colour) for c in containers if c.running})):
            log.warning(
                "%s: not rewriting its file: the state has no record of it and %s run, so its weights are"
                " unknown",
                app,
                " and ".join(colours),
            )
        return weights

    async def _servable(self, app: str, routing: Routing, containers: list[ContainerInfo]) -> bool:
        """Whether `routing` serves every colour that should take traffic now; log why not."""
        weights = await self._weights(app, containers)
        if weights is None:
            return False
        if unserved := plan.unserved(weights, routing):
            log.warning(
                "%s: not rewriting its file: no ready %s container would serve its share (%s)",
                app,
                " or ".join(unserved),
                report.weights_text(weights),
            )
            return False
        return True

    async def _write(self, app: str, *, probed: Allowed) -> bool:
        """Route the app's containers that are in its file now (read under the lock) or were just probed."""
        with self._holding(app) as held:
            if not held:
                return False
            containers = await self.containers.list(app=app)
            allowed = self._trusted(app, containers) | probed
            usable = [c for c in containers if (c.id, c.url) in allowed and not self._suspect(c.id)]
            weights = await self._weights(app, containers)
            if weights is None:
                return True
            before = self._file_routing(app)
            # Pins are the rollout's to add and remove (an interrupted one keeps its canary): kept.
            pins = before.pins if before is not None else ()
            routing = plan.routing_for(app=app, weights=weights, containers=usable, pins=pins)
            unchanged = before is not None and before.canonical() == routing.canonical()
            if unchanged or not await self._servable(app, routing, containers):
                return True
            took = await self._publish(app, routing)
            log.info(
                "%s: dynamic file now routes %s (confirmed in %.2fs; was %s)",
                app,
                _describe(routing),
                took,
                _describe(before),
            )
            return True

    async def _publish(self, app: str, routing: Routing) -> float:
        return await self.adapters.routing.publish(spec=self.config.apps[app], routing=routing)

    def _file_routing(self, app: str) -> Routing | None:
        """What the app's file routes now (no routes when there is no file); None when it is unreadable."""
        routing = self.adapters.routing.read(app)
        if routing is None:
            log.warning("%s: cannot read its dynamic file; rewriting it", app)
        return routing


def _describe(routing: Routing | None) -> str:
    if routing is None:
        return "unreadable"
    if not routing.routes:
        return "nothing"
    return ", ".join(f"{r.colour} {r.weight}% {list(r.servers)}" for r in routing.routes)
