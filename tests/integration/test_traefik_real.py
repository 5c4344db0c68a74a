"""The real Traefik reads rendered files, the API adapter confirms them, and traffic follows the weights."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.traefik import TraefikProc, free_port
from trafficshift.errors import StepNotApplied, UnreachableError
from trafficshift.models import AppSpec, Colour, ColourRoute, HealthSpec, Routing
from trafficshift.traefik.api import TraefikApi, observe
from trafficshift.traefik.files import write_dynamic
from trafficshift.traefik.render import render_dynamic
from trafficshift.traefik.watch import RoutingWatcher

BLUE, GREEN = Colour.BLUE, Colour.GREEN
HOST = "web.localhost"
APPLY_TIMEOUT = 10.0


@pytest.fixture
async def backends() -> AsyncIterator[dict[Colour, str]]:
    """Two tiny HTTP servers on loopback that answer with their colour (and 200 on /healthz)."""
    runners: list[web.AppRunner] = []
    urls: dict[Colour, str] = {}
    for colour in Colour:

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def answer(_request: web.Request, colour: Colour = colour) -> web.Response:
            return web.Response(text=str(colour))

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls[colour] = f"http://127.0.0.1:{port}"
    try:
        yield urls
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def api(traefik: TraefikProc) -> AsyncIterator[TraefikApi]:
    async with aiohttp.ClientSession() as session:
        yield TraefikApi(api_url=traefik.api_url, session=session)


@pytest.fixture
def timings() -> Iterator[dict[str, float]]:
    measured: dict[str, float] = {}
    yield measured
    # Shown with -s (and in the report of the run): how long Traefik took from write to API.
    print({k: f"{v * 1000:.0f}ms" for k, v in measured.items()})


def make_app(health_path: str | None = None) -> AppSpec:
    return AppSpec(
        name="web",
        image="example/web:1.0",
        port=8080,
        rule=f"Host(`{HOST}`)",
        publish="127.0.0.1",
        health=HealthSpec(path=health_path, interval=0.5, timeout=0.25),
    )


def routing(urls: dict[Colour, str], **weights: int) -> Routing:
    return Routing(
        app="web",
        routes=tuple(
            ColourRoute(colour=Colour(c), weight=w, servers=(urls[Colour(c)],)) for c, w in weights.items()
        ),
    )


async def apply(traefik: TraefikProc, api: TraefikApi, app: AppSpec, target: Routing) -> float:
    """Write the file for `target` (or remove it) and return seconds from write to the API showing it."""
    text = render_dynamic(app=app, routing=target, entrypoints=["web"]) if target.routes else None
    started = time.monotonic()
    write_dynamic(dynamic_dir=traefik.dynamic_dir, app="web", text=text)
    await RoutingWatcher(api).wait_until_applied(target, timeout=APPLY_TIMEOUT)
    return time.monotonic() - started


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def send(traefik: TraefikProc, count: int) -> collections.Counter[str]:
    answers: collections.Counter[str] = collections.Counter()
    limit = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession) -> None:
        async with limit, session.get(traefik.web_url + "/", headers={"Host": HOST}) as response:
            answers[await response.text() if response.status == 200 else f"HTTP {response.status}"] += 1

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one(session))
    return answers


@pytest.mark.traefik
async def test_weights_route_traffic_and_changes_are_confirmed(
    traefik: TraefikProc, api: TraefikApi, backends: dict[Colour, str], timings: dict[str, float]
) -> None:
    app = make_app()

    timings["first file 90/10"] = await apply(traefik, api, app, routing(backends, blue=90, green=10))
    observed = await api.read_routing("web")
    assert observed.present
    assert [(r.service, r.weight, r.servers) for r in observed.routes] == [
        ("web-blue", 90, (backends[BLUE],)),
        ("web-green", 10, (backends[GREEN],)),
    ]
    assert observed.status == "enabled"
    # The listing of every service (the watcher's one request) shows the same, also one per page.
    assert observe(api.api_url, "web", await api.services()) == observed
    listed = await api.services(per_page=1)
    assert {"web@file", "web-blue@file", "web-green@file", "api@internal"} <= set(listed)
    assert observe(api.api_url, "web", listed) == observed
    answers = await send(traefik, 1000)
    assert sum(answers.values()) == 1000
    assert abs(answers["blue"] / 1000 - 0.90) <= 0.05, answers
    assert abs(answers["green"] / 1000 - 0.10) <= 0.05, answers

    timings["90/10 -> 0/100"] = await apply(traefik, api, app, routing(backends, blue=0, green=100))
    assert (await send(traefik, 100)) == {"green": 100}

    timings["blue removed"] = await apply(traefik, api, app, routing(backends, green=100))
    observed = await api.read_routing("web")
    assert [r.service for r in observed.routes] == ["web-green"]
    assert (await send(traefik, 50)) == {"green": 50}

    timings["file removed"] = await apply(traefik, api, app, Routing(app="web", routes=()))
    assert not (await api.read_routing("web")).present
    assert (await send(traefik, 10)) == {"HTTP 404": 10}


@pytest.mark.traefik
async def test_two_writes_in_a_row_are_both_confirmed(
    traefik: TraefikProc, api: TraefikApi, backends: dict[Colour, str], timings: dict[str, float]
) -> None:
    # The second change follows the first as soon as it is confirmed, so it falls inside the providers
    # throttle window that the first one opened: it must arrive all the same (later, by up to the throttle).
    app = make_app()
    await apply(traefik, api, app, routing(backends, blue=100))
    timings["change"] = await apply(traefik, api, app, routing(backends, blue=90, green=10))
    timings["change right after"] = await apply(traefik, api, app, routing(backends, blue=50, green=50))
    assert (await send(traefik, 100)) == {"blue": 50, "green": 50}


@pytest.mark.traefik
async def test_health_check_is_accepted(
    traefik: TraefikProc, api: TraefikApi, backends: dict[Colour, str]
) -> None:
    app = make_app(health_path="/healthz")
    await apply(traefik, api, app, routing(backends, blue=50, green=50))
    overview = await get_json(traefik.api_url + "/api/overview")
    for kind in ("routers", "services", "middlewares"):
        assert overview["http"][kind]["errors"] == 0, overview
        assert overview["http"][kind]["warnings"] == 0, overview
    assert (await get_json(traefik.api_url + "/api/http/services/web@file"))["weighted"]["healthCheck"] == {}
    observed = await api.read_routing("web")
    assert observed.status == "enabled"
    assert all(r.status == "enabled" for r in observed.routes)
    # Traefik's own checks run every 500ms here; both backends answer 200 on /healthz.
    deadline = time.monotonic() + 5
    while not all(set(r.server_status.values()) == {"UP"} for r in observed.routes):
        assert time.monotonic() < deadline, observed
        await asyncio.sleep(0.1)
        observed = await api.read_routing("web")
    assert (await send(traefik, 100)) == {"blue": 50, "green": 50}


@pytest.mark.traefik
async def test_wait_until_applied_times_out_with_what_it_saw(
    traefik: TraefikProc, api: TraefikApi, backends: dict[Colour, str]
) -> None:
    await apply(traefik, api, make_app(), routing(backends, blue=100))
    with pytest.raises(StepNotApplied) as caught:
        await RoutingWatcher(api).wait_until_applied(routing(backends, blue=50, green=50), timeout=0.3)
    assert caught.value.service == "web@file"
    assert "web-blue" in str(caught.value.observed)


async def test_unreachable_api_is_reported_with_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as session:
        api = TraefikApi(api_url=url, session=session)
        with pytest.raises(UnreachableError, match=url):
            await api.ping()
        with pytest.raises(StepNotApplied, match="unreachable"):
            await RoutingWatcher(api).wait_until_applied(Routing(app="web", routes=()), timeout=0.2)
