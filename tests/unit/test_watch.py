"""The shared confirmation watcher: one poller of Traefik's service listing wakes every step it shows.

Traefik's API is stood in for by a small HTTP server on loopback that serves a listing the test changes
(paged as Traefik pages it), so the watcher's own requests are what is counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.traefik import free_port
from trafficshift.errors import StepNotApplied
from trafficshift.models import Colour, ColourRoute, Routing
from trafficshift.traefik.api import ObservedRouting, TraefikApi
from trafficshift.traefik.watch import RoutingWatcher

POLL = 0.02


@dataclass
class FakeTraefik:
    """What the listing shows (app -> routing), how many listings were asked for, and a gate on answers."""

    url: str
    shown: dict[str, Routing] = field(default_factory=dict)
    requests: int = 0
    down: bool = False
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def listing(self) -> list[dict[str, Any]]:
        services: list[dict[str, Any]] = [{"name": "api@internal", "status": "enabled"}]
        for app, routing in self.shown.items():
            children = [{"name": f"{app}-{r.colour}", "weight": r.weight} for r in routing.routes]
            services.append({"name": f"{app}@file", "status": "enabled", "weighted": {"services": children}})
            services += [
                {
                    "name": f"{app}-{r.colour}@file",
                    "status": "enabled",
                    "loadBalancer": {"servers": [{"url": u} for u in r.servers]},
                }
                for r in routing.routes
            ]
        return services


@pytest.fixture
async def traefik() -> AsyncIterator[FakeTraefik]:
    fake = FakeTraefik(url="")
    fake.gate.set()

    async def services(request: web.Request) -> web.Response:
        fake.requests += 1
        await fake.gate.wait()
        if fake.down:
            return web.Response(status=502, text="restarting")
        per_page, page = int(request.query["per_page"]), int(request.query["page"])
        everything = fake.listing()
        more = page * per_page < len(everything)
        return web.json_response(
            everything[(page - 1) * per_page : page * per_page],
            headers={"X-Next-Page": str(page + 1 if more else 1)},
        )

    app = web.Application()
    app.router.add_get("/api/http/services", services)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def routing(app: str, green: int) -> Routing:
    routes = [ColourRoute(Colour.BLUE, 100 - green, ("http://127.0.0.1:1",))]
    if green:
        routes.append(ColourRoute(Colour.GREEN, green, ("http://127.0.0.1:2",)))
    return Routing(app=app, routes=tuple(routes))


async def test_many_waiters_share_one_poller_and_each_wakes_when_its_routing_shows(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    apps = [f"app{n}" for n in range(40)]
    traefik.shown = {app: routing(app, 0) for app in apps}
    watcher = RoutingWatcher(TraefikApi(api_url=traefik.url, session=session), poll=POLL)
    waits = {
        app: asyncio.create_task(watcher.wait_until_applied(routing(app, 50), timeout=5)) for app in apps
    }
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waits.values())
    started = time.monotonic()
    for n, app in enumerate(apps):  # Traefik applies the apps' changes one by one
        traefik.shown[app] = routing(app, 50)
        if n % 10 == 9:
            await asyncio.sleep(0.05)
    took = await asyncio.gather(*waits.values())
    assert time.monotonic() - started < 1.0
    assert all(0.2 <= t < 1.5 for t in took), took
    # One poller: a listing per poll for the 40 of them, not a read per waiter and poll (40x as many).
    listings = watcher.listings
    assert traefik.requests == listings
    assert listings <= (time.monotonic() - started + 0.2) / POLL + 5
    # Nobody waits: the poller has stopped.
    await asyncio.sleep(5 * POLL)
    assert traefik.requests == listings


async def test_a_waiter_whose_routing_never_shows_times_out_alone(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    traefik.shown = {f"app{n}": routing(f"app{n}", 0) for n in range(10)}
    watcher = RoutingWatcher(TraefikApi(api_url=traefik.url, session=session), poll=POLL)
    lone = asyncio.create_task(watcher.wait_until_applied(routing("app0", 10), timeout=0.5))
    others = [
        asyncio.create_task(watcher.wait_until_applied(routing(f"app{n}", 10), timeout=5))
        for n in range(1, 10)
    ]
    await asyncio.sleep(0.1)
    for n in range(1, 10):
        traefik.shown[f"app{n}"] = routing(f"app{n}", 10)
    took = await asyncio.gather(*others)  # not held back by the one that never shows
    assert max(took) < 0.4, took
    assert not lone.done()
    with pytest.raises(StepNotApplied) as caught:
        await lone
    assert caught.value.service == "app0@file"
    observed = caught.value.observed
    assert isinstance(observed, ObservedRouting)
    assert observed.routing() == routing("app0", 0)  # what it last saw, for the error message
    # A later waiter of the same watcher is served as before.
    traefik.shown["app0"] = routing("app0", 10)
    assert await watcher.wait_until_applied(routing("app0", 10), timeout=1) < 0.5


async def test_a_listing_started_before_a_waiter_arrived_does_not_confirm_it(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    # The file is written, then the wait starts: a listing already under way may predate the write.
    traefik.shown = {"a": routing("a", 0), "b": routing("b", 0)}
    watcher = RoutingWatcher(TraefikApi(api_url=traefik.url, session=session), poll=POLL)
    first = asyncio.create_task(watcher.wait_until_applied(routing("a", 50), timeout=5))
    await asyncio.sleep(0.1)
    traefik.gate.clear()
    await asyncio.sleep(2 * POLL)  # a listing is now held at the gate
    held = watcher.listings
    second = asyncio.create_task(watcher.wait_until_applied(routing("b", 0), timeout=5))
    await asyncio.sleep(0)
    traefik.gate.set()
    await second
    assert watcher.listings > held  # confirmed by the next listing, not the held one
    traefik.shown["a"] = routing("a", 50)
    await first


async def test_an_unreachable_traefik_is_polled_on_until_the_deadline(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    traefik.down = True
    watcher = RoutingWatcher(TraefikApi(api_url=traefik.url, session=session), poll=POLL)
    with pytest.raises(StepNotApplied, match="502"):
        await watcher.wait_until_applied(routing("a", 0), timeout=0.2)
    wait = asyncio.create_task(watcher.wait_until_applied(routing("a", 0), timeout=5))
    await asyncio.sleep(0.1)
    traefik.down = False
    traefik.shown = {"a": routing("a", 0)}
    assert await wait < 1.0
    # A listing over several pages is read whole.
    traefik.shown = {f"p{n}": routing(f"p{n}", 0) for n in range(7)}
    listed = await TraefikApi(api_url=traefik.url, session=session).services(per_page=3)
    assert len(listed) == 1 + 7 * 2
