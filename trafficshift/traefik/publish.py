"""Publishing an app's routing: render, atomic write, then Traefik's confirmation that it runs it."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from trafficshift.models import AppSpec, Config, Routing
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.files import read_routing, write_dynamic
from trafficshift.traefik.render import render_dynamic
from trafficshift.traefik.watch import RoutingWatcher

# How long Traefik may take to show a written file through its API before the step counts as failed.
CONFIRM_TIMEOUT = 30.0
# Without an API to confirm through, wait this long after a write: Traefik's default throttle (2s) + margin.
UNCONFIRMED_WAIT = 3.0


async def publish_routing(
    *, config: Config, watcher: RoutingWatcher | None, spec: AppSpec, routing: Routing
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
    if watcher is not None:
        await watcher.wait_until_applied(routing, timeout=CONFIRM_TIMEOUT)
    else:
        await asyncio.sleep(UNCONFIRMED_WAIT)
    return time.monotonic() - started


class TraefikPublisher:
    """The live `ports.RoutingPublisher`: the file provider's folder, confirmed through Traefik's API."""

    def __init__(self, *, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        api_url = config.traefik.api_url
        self.api = TraefikApi(api_url=api_url, session=session) if api_url else None
        # One per Traefik API for every rollout of this process (the service's many at once): one poller.
        self.watcher = RoutingWatcher(self.api) if self.api is not None else None

    async def ping(self) -> None:
        if self.api is not None:
            await self.api.ping()

    def read(self, app: str) -> Routing | None:
        return read_routing(dynamic_dir=self.config.traefik.dynamic_dir, app=app)

    async def publish(self, *, spec: AppSpec, routing: Routing) -> float:
        return await publish_routing(config=self.config, watcher=self.watcher, spec=spec, routing=routing)
