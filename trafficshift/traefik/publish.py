"""Publishing an app's routing: render, atomic write, then Traefik's confirmation that it runs it."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from trafficshift.errors import RoutingRejected
from trafficshift.models import AppSpec, Config, MirrorRoute, Routing
from trafficshift.traefik import names
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.files import read_options, read_routing, write_dynamic
from trafficshift.traefik.render import (
    mirror_document,
    options_digest,
    options_of,
    render_dynamic,
    render_mirror,
    render_trial,
)

# How long Traefik may take to show a written file through its API before the step counts as failed.
CONFIRM_TIMEOUT = 30.0
# Without an API to confirm through, wait this long after a write: Traefik's default throttle (2s) + margin.
UNCONFIRMED_WAIT = 3.0


async def publish_routing(
    *, config: Config, traefik: TraefikApi | None, spec: AppSpec, routing: Routing
) -> float:
    """Replace the app's dynamic file with `routing` and wait until Traefik shows it; return the seconds.

    Callers hold the app's lock: the file of an app has one writer at a time, invariant 5
    (docs/ARCHITECTURE.md).
    """
    started = time.monotonic()
    # No colour with servers left (the first deploy went back): no file, so the route answers 404.
    text = (
        render_dynamic(app=spec, routing=routing, entrypoints=config.traefik.entrypoints)
        if routing.routes
        else None
    )
    # Two fsyncs: off the event loop, where the service answers its API and drives other apps meanwhile.
    await asyncio.to_thread(write_dynamic, dynamic_dir=config.traefik.dynamic_dir, app=spec.name, text=text)
    if traefik is not None:
        await traefik.wait_until_applied(routing, timeout=CONFIRM_TIMEOUT)
    else:
        await asyncio.sleep(UNCONFIRMED_WAIT)
    return time.monotonic() - started


async def publish_mirror(
    *, config: Config, traefik: TraefikApi | None, spec: AppSpec, mirror: MirrorRoute | None
) -> float:
    """Write the app's mirror file (None: remove it) and wait until Traefik runs it (or shows it gone).

    The same atomic write as the app's own file, beside it (`<app>.mirror.yml`); confirmed through the API:
    the mirror router and the mirroring service present, enabled and as written, or both gone.
    """
    started = time.monotonic()
    entrypoints = config.traefik.entrypoints
    text = render_mirror(app=spec, mirror=mirror, entrypoints=entrypoints) if mirror else None
    stem = names.mirror_file(spec.name)
    changed = await asyncio.to_thread(
        write_dynamic, dynamic_dir=config.traefik.dynamic_dir, app=stem, text=text
    )
    if text is None and not changed and traefik is None:
        # No mirror file was there (every abort asks): nothing for Traefik to drop, so no blind wait.
        return time.monotonic() - started
    if traefik is not None:
        expected = mirror_document(app=spec, mirror=mirror, entrypoints=entrypoints) if mirror else None
        await traefik.wait_until_mirrored(spec.name, expected, timeout=CONFIRM_TIMEOUT)
    else:
        await asyncio.sleep(UNCONFIRMED_WAIT)
    return time.monotonic() - started


class TraefikPublisher:
    """The live `ports.RoutingPublisher`: the file provider's folder, confirmed through Traefik's API."""

    def __init__(self, *, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        api_url = config.traefik.api_url
        self.api = TraefikApi(api_url=api_url, session=session) if api_url else None
        # App -> digest of the router options Traefik accepted in a trial this process ran.
        self._accepted: dict[str, str] = {}

    async def ping(self) -> None:
        if self.api is not None:
            await self.api.ping()

    def read(self, app: str) -> Routing | None:
        return read_routing(dynamic_dir=self.config.traefik.dynamic_dir, app=app)

    async def check(self, *, spec: AppSpec) -> None:
        """Invariant 16 (docs/ARCHITECTURE.md): new router options are tried on a router no request matches,
        in a file of their own, and read back through the API before the app's file carries them."""
        entrypoints = self.config.traefik.entrypoints
        wanted = options_of(app=spec, entrypoints=entrypoints)
        digest = options_digest(wanted)
        if self.api is None or self._accepted.get(spec.name) == digest:
            return  # without an API nothing can be read back: Traefik's log tells
        dynamic_dir = self.config.traefik.dynamic_dir
        if await asyncio.to_thread(read_options, dynamic_dir=dynamic_dir, app=spec.name) == wanted:
            self._accepted[spec.name] = digest
            return
        router = names.trial_router(spec.name, digest)
        text = render_trial(app=spec, entrypoints=entrypoints, router=router)
        trial = names.trial_file(spec.name)
        await asyncio.to_thread(write_dynamic, dynamic_dir=dynamic_dir, app=trial, text=text)
        try:
            verdict = await self.api.wait_router_verdict(router, timeout=CONFIRM_TIMEOUT)
        finally:
            await asyncio.to_thread(write_dynamic, dynamic_dir=dynamic_dir, app=trial, text=None)
        if not verdict.serving:
            raise RoutingRejected(spec.name, names.qualified(router), verdict.errors)
        self._accepted[spec.name] = digest

    async def publish(self, *, spec: AppSpec, routing: Routing) -> float:
        if routing.routes:
            await self.check(spec=spec)
        return await publish_routing(config=self.config, traefik=self.api, spec=spec, routing=routing)

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        return await publish_mirror(config=self.config, traefik=self.api, spec=spec, mirror=mirror)
