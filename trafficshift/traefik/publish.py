"""Publishing an app's routing: write it where Traefik reads it, then every instance's confirmation.

Two backends (`traefik.provider`): `file`, the app's dynamic file written atomically, and `redis`, the same
document as Traefik's KV keys in one transaction (traefik/redis_routes.py). Either way a step counts only
once every Traefik API listed shows it (traefik/fleet.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from trafficshift.errors import RoutingRejected, UnreachableError, UsageError
from trafficshift.models import AppSpec, Config, MirrorRoute, Routing
from trafficshift.traefik import names
from trafficshift.traefik.files import read_options, read_routing, write_dynamic
from trafficshift.traefik.fleet import Fleet
from trafficshift.traefik.render import (
    expected_document,
    mirror_document,
    options_digest,
    options_of,
    parse_dynamic,
    render_dynamic,
    render_mirror,
    render_trial,
)

if TYPE_CHECKING:
    from trafficshift.store.redis_locks import RedisLocks
    from trafficshift.traefik.redis_routes import RedisRoutes

# How long Traefik may take to show a written file through its API before the step counts as failed.
CONFIRM_TIMEOUT = 30.0
# Without an API to confirm through, wait this long after a write: Traefik's default throttle (2s) + margin.
UNCONFIRMED_WAIT = 3.0
# `read` is synchronous (ports.RoutingPublisher) and runs on the event loop: a Redis that does not answer
# may hold the loop this long at most, and the routing then counts as unreadable (as a broken file does).
REDIS_READ_TIMEOUT = 1.0


async def confirm(fleet: Fleet | None, routing: Routing, *, timeout: float, back: bool) -> None:  # noqa: ASYNC109
    """Wait until every instance shows `routing`; without any API, a fixed wait instead."""
    if fleet is not None:
        await fleet.wait_until_applied(routing, timeout=timeout, back=back)
    else:
        await asyncio.sleep(UNCONFIRMED_WAIT)


def _fleet(config: Config, session: aiohttp.ClientSession) -> Fleet | None:
    # One watcher per Traefik API for every rollout of this process (the service's many at once).
    apis = config.traefik.apis
    return Fleet(api_urls=apis, session=session, provider=config.traefik.provider) if apis else None


async def views(fleet: Fleet | None, app: str) -> dict[str, dict[str, int] | str]:
    """Each instance's weights for `app` (`status`), or why they could not be read."""
    if fleet is None:
        return {}
    seen = await fleet.views(app)
    return {
        url: view if isinstance(view, str) else {str(r.colour): r.weight for r in view.routes if r.colour}
        for url, view in seen.items()
    }


async def publish_mirror(
    *, config: Config, traefik: Fleet | None, spec: AppSpec, mirror: MirrorRoute | None
) -> float:
    """Write the app's mirror file (None: remove it) and wait until Traefik runs it (or shows it gone).

    The same atomic write as the app's own file, beside it (`<app>.mirror.yml`); confirmed through the API:
    the mirror router and the mirroring service present, enabled and as written, or both gone.
    """
    started = time.monotonic()
    entrypoints = config.traefik.entrypoints
    text = render_mirror(app=spec, mirror=mirror, entrypoints=entrypoints) if mirror else None
    stem = names.mirror_file(spec.name)
    dynamic_dir = config.traefik.dynamic_dir
    assert dynamic_dir is not None, "a mirror needs provider: file (RedisPublisher refuses it)"
    changed = await asyncio.to_thread(write_dynamic, dynamic_dir=dynamic_dir, app=stem, text=text)
    if text is None and not changed and traefik is None:
        # No mirror file was there (every abort asks): nothing for Traefik to drop, so no blind wait.
        return time.monotonic() - started
    if traefik is not None:
        expected = mirror_document(app=spec, mirror=mirror, entrypoints=entrypoints) if mirror else None
        timeout = config.traefik.confirm_timeout
        # Every instance, as for the app's own file.
        await asyncio.gather(
            *(api.wait_until_mirrored(spec.name, expected, timeout=timeout) for api in traefik.apis)
        )
    else:
        await asyncio.sleep(UNCONFIRMED_WAIT)
    return time.monotonic() - started


class TraefikPublisher:
    """The live `ports.RoutingPublisher` of `provider: file`: the file provider's folder."""

    def __init__(self, *, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.fleet = _fleet(config, session)
        # App -> digest of the router options Traefik accepted in a trial this process ran.
        self._accepted: dict[str, str] = {}

    @property
    def dynamic_dir(self) -> Path:
        folder = self.config.traefik.dynamic_dir
        assert folder is not None, "config requires dynamic_dir with provider: file"
        return folder

    async def ping(self) -> None:
        if self.fleet is not None:
            await self.fleet.ping()

    def read(self, app: str) -> Routing | None:
        return read_routing(dynamic_dir=self.dynamic_dir, app=app)

    async def check(self, *, spec: AppSpec) -> None:
        """Invariant 18 (docs/ARCHITECTURE.md): new router options are tried on a router no request matches,
        in a file of their own, and read back through the API before the app's file carries them."""
        entrypoints = self.config.traefik.entrypoints
        wanted = options_of(app=spec, entrypoints=entrypoints)
        digest = options_digest(wanted)
        if self.fleet is None or self._accepted.get(spec.name) == digest:
            return  # without an API nothing can be read back: Traefik's log tells
        dynamic_dir = self.dynamic_dir
        if await asyncio.to_thread(read_options, dynamic_dir=dynamic_dir, app=spec.name) == wanted:
            self._accepted[spec.name] = digest
            return
        router = names.trial_router(spec.name, digest)
        text = render_trial(app=spec, entrypoints=entrypoints, router=router)
        trial = names.trial_file(spec.name)
        await asyncio.to_thread(write_dynamic, dynamic_dir=dynamic_dir, app=trial, text=text)
        try:
            # Every instance: each reads the folder, and one that refuses would leave the app unrouted there.
            verdicts = await asyncio.gather(
                *(api.wait_router_verdict(router, timeout=CONFIRM_TIMEOUT) for api in self.fleet.apis)
            )
        finally:
            await asyncio.to_thread(write_dynamic, dynamic_dir=dynamic_dir, app=trial, text=None)
        for verdict in verdicts:
            if not verdict.serving:
                raise RoutingRejected(spec.name, names.qualified(router), verdict.errors)
        self._accepted[spec.name] = digest

    async def views(self, app: str) -> dict[str, dict[str, int] | str]:
        return await views(self.fleet, app)

    async def publish(self, *, spec: AppSpec, routing: Routing, back: bool = False) -> float:
        """Replace the app's file with `routing` and wait until Traefik shows it; return the seconds.

        Callers hold the app's lock: the file of an app has one writer at a time, invariant 5
        (docs/ARCHITECTURE.md).
        """
        if routing.routes:
            await self.check(spec=spec)
        started = time.monotonic()
        # No colour with servers left (the first deploy went back): no file, so the route answers 404.
        text = (
            render_dynamic(app=spec, routing=routing, entrypoints=self.config.traefik.entrypoints)
            if routing.routes
            else None
        )
        # Two fsyncs: off the event loop, where the service answers its API and drives other apps meanwhile.
        await asyncio.to_thread(write_dynamic, dynamic_dir=self.dynamic_dir, app=spec.name, text=text)
        await confirm(self.fleet, routing, timeout=self.config.traefik.confirm_timeout, back=back)
        return time.monotonic() - started

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        return await publish_mirror(config=self.config, traefik=self.fleet, spec=spec, mirror=mirror)


class RedisPublisher:
    """The live `ports.RoutingPublisher` of `provider: redis`: Traefik's Redis provider, a fleet reading it.

    `read` answers synchronously (the Protocol's, shared with the file backend, whose read is a small file
    on local disk): a plain redis-py client with a short timeout, one GET of the document last written,
    on a loopback or LAN Redis well under a millisecond. Making `read` async would touch the engine, the
    reconciler and the provider for that alone; the bound keeps a dead Redis from holding the loop long.
    """

    def __init__(
        self,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        routes: RedisRoutes | None = None,
        locks: RedisLocks | None = None,
    ) -> None:
        import redis

        from trafficshift.traefik.redis_routes import RedisRoutes

        spec = config.traefik.redis
        assert spec is not None, "config requires traefik.redis with provider: redis"
        self.config = config
        self.routes = routes or RedisRoutes(url=spec.url, root=spec.root_key)
        self.locks = locks  # the fencing token of each app this process holds, checked on every write
        self.fleet = _fleet(config, session)
        self._reader = redis.Redis.from_url(
            spec.url,
            socket_timeout=REDIS_READ_TIMEOUT,
            socket_connect_timeout=REDIS_READ_TIMEOUT,
            decode_responses=True,
        )

    async def aclose(self) -> None:
        self._reader.close()
        await self.routes.aclose()

    async def ping(self) -> None:
        """Redis answers, with keyspace notifications on (exit 3 with the fix), and every Traefik API."""
        await self.routes.ping()
        await self.routes.check_notifications()
        if self.fleet is not None:
            await self.fleet.ping()

    def read(self, app: str) -> Routing | None:
        import redis.exceptions

        try:
            text = self._reader.get(self.routes.doc_key(app))
        except (redis.exceptions.RedisError, OSError):
            return None
        if text is None:
            return Routing(app=app, routes=())
        try:
            # The stored document is JSON, which the YAML reader of the dynamic files reads as well.
            return parse_dynamic(str(text))
        except ValueError:
            return None

    async def views(self, app: str) -> dict[str, dict[str, int] | str]:
        return await views(self.fleet, app)

    async def check(self, *, spec: AppSpec) -> None:
        """No trial router with Redis yet: an unknown middleware shows as the app's router in error, and
        the step fails unconfirmed (the rollout goes back) instead of stopping before anything moved."""

    async def publish(self, *, spec: AppSpec, routing: Routing, back: bool = False) -> float:
        """Write the routing's document in one transaction (fenced by the app's lock), then confirm it."""
        started = time.monotonic()
        doc = (
            expected_document(app=spec, routing=routing, entrypoints=self.config.traefik.entrypoints)
            if routing.routes
            else None
        )
        fence = self.locks.fence(spec.name) if self.locks is not None else None
        try:
            await self.routes.write(spec.name, doc, fence=fence)
        except OSError as exc:
            raise UnreachableError(f"cannot write to Redis at {self.routes.url}: {exc}") from None
        await confirm(self.fleet, routing, timeout=self.config.traefik.confirm_timeout, back=back)
        return time.monotonic() - started

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        if mirror is None:
            return 0.0  # never written: nothing to remove (every abort asks)
        # The config refuses a mirror with provider: redis; this is the guard behind it.
        raise UsageError(
            f"{spec.name}: rollout.mirror needs traefik.provider: file (Redis gets no mirror yet)"
        )
