"""The Redis routing backend against a real redis-server and two real Traefik instances (Redis provider).

Backends are two tiny HTTP servers on loopback answering `blue` and `green`: what is under test is how the
keys reach Traefik, not containers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.factories import make_app
from tests.support.redis import RedisProc, run_redis
from tests.support.traefik import TraefikProc, free_port, run_traefik
from trafficshift.errors import UnreachableError
from trafficshift.models import Colour, ColourRoute, Routing
from trafficshift.traefik import kv
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.redis_routes import SENTINEL, RedisRoutes
from trafficshift.traefik.render import expected_document
from trafficshift.traefik.watch import RoutingWatcher

pytestmark = [pytest.mark.traefik]

APP = make_app("web")


@contextlib.asynccontextmanager
async def _backend(body: str) -> AsyncIterator[str]:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[RedisProc, list[TraefikProc], dict[Colour, str]]]:
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(run_redis(tmp_path / "redis"))
        traefiks = [
            await stack.enter_async_context(
                run_traefik(
                    dynamic_dir=tmp_path / f"dyn{i}", work_dir=tmp_path / f"t{i}", redis=redis.endpoint
                )
            )
            for i in range(2)
        ]
        servers = {c: await stack.enter_async_context(_backend(str(c))) for c in (Colour.BLUE, Colour.GREEN)}
        yield redis, traefiks, servers


def _routing(servers: dict[Colour, str], weights: dict[Colour, int]) -> Routing:
    return Routing(
        app=APP.name,
        routes=tuple(ColourRoute(colour=c, weight=w, servers=(servers[c],)) for c, w in weights.items()),
    )


def _doc(routing: Routing) -> dict[str, Any]:
    return expected_document(app=APP, routing=routing, entrypoints=["web"])


async def _confirm_everywhere(traefiks: list[TraefikProc], routing: Routing) -> None:
    async with aiohttp.ClientSession() as session:
        for t in traefiks:
            api = TraefikApi(api_url=t.api_url, session=session, provider="redis")
            await RoutingWatcher(api).wait_until_applied(routing, timeout=10)


async def _app_keys(routes: RedisRoutes) -> dict[str, str]:
    """Every key under the root but the sentinel, with its value."""
    keys = [str(k) for k in await routes.client.keys("traefik/*") if k != f"traefik/{SENTINEL}"]
    values = await routes.client.mget(keys) if keys else []
    return {k: str(v) for k, v in zip(keys, values, strict=True)}


async def _answers(traefik: TraefikProc, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(traefik.web_url + "/", headers={"Host": "web.localhost"}) as response:
                seen[(await response.text()) if response.status == 200 else f"HTTP {response.status}"] += 1
    return seen


async def test_one_transaction_routes_every_instance_alike(
    fleet: tuple[RedisProc, list[TraefikProc], dict[Colour, str]],
) -> None:
    redis, traefiks, servers = fleet
    routes = RedisRoutes(url=redis.url)
    try:
        routing = _routing(servers, {Colour.BLUE: 80, Colour.GREEN: 20})
        await routes.write(APP.name, _doc(routing))
        await _confirm_everywhere(traefiks, routing)
        for t in traefiks:  # weighted round robin: exact over whole rounds
            assert await _answers(t, 100) == {"blue": 80, "green": 20}
        assert await routes.document(APP.name) == _doc(routing)
    finally:
        await routes.aclose()


async def test_rapid_changes_are_never_served_half_written(
    fleet: tuple[RedisProc, list[TraefikProc], dict[Colour, str]],
) -> None:
    """Keys written one by one were served half-written (a weighted service before its child's servers: 404
    for everyone for ~2 s); one transaction per change leaves nothing in between."""
    redis, traefiks, servers = fleet
    routes = RedisRoutes(url=redis.url)
    shapes = [
        {Colour.BLUE: 100},
        {Colour.BLUE: 50, Colour.GREEN: 50},
        {Colour.GREEN: 100},
        {Colour.BLUE: 10, Colour.GREEN: 90},
    ]
    failures: Counter[str] = Counter()
    done = asyncio.Event()

    async def hammer(traefik: TraefikProc) -> None:
        async with aiohttp.ClientSession() as session:
            while not done.is_set():
                async with session.get(traefik.web_url + "/", headers={"Host": "web.localhost"}) as response:
                    if response.status != 200:
                        failures[f"HTTP {response.status}"] += 1

    try:
        first = _routing(servers, shapes[0])
        await routes.write(APP.name, _doc(first))
        await _confirm_everywhere(traefiks, first)
        clients = [asyncio.create_task(hammer(t)) for t in traefiks]
        for i in range(12):
            await routes.write(APP.name, _doc(_routing(servers, shapes[i % len(shapes)])))
            await asyncio.sleep(0.15)
        last = _routing(servers, shapes[11 % len(shapes)])
        await _confirm_everywhere(traefiks, last)
        done.set()
        await asyncio.gather(*clients)
    finally:
        done.set()
        await routes.aclose()
    assert failures == Counter()


async def test_removing_the_last_app_reaches_traefik(
    fleet: tuple[RedisProc, list[TraefikProc], dict[Colour, str]],
) -> None:
    """Traefik ignores a change that empties the root: the sentinel key keeps it non-empty."""
    redis, traefiks, servers = fleet
    routes = RedisRoutes(url=redis.url)
    try:
        routing = _routing(servers, {Colour.BLUE: 100})
        await routes.write(APP.name, _doc(routing))
        await _confirm_everywhere(traefiks, routing)
        change = await routes.write(APP.name, None)
        assert change.delete
        assert not change.set
        await _confirm_everywhere(traefiks, Routing(app=APP.name, routes=()))
        for t in traefiks:
            assert await _answers(t, 3) == {"HTTP 404": 3}
        assert await routes.document(APP.name) is None
        assert await _app_keys(routes) == {}
    finally:
        await routes.aclose()


async def test_two_writers_of_one_app_never_interleave(
    fleet: tuple[RedisProc, list[TraefikProc], dict[Colour, str]],
) -> None:
    redis, _, servers = fleet
    writers = [RedisRoutes(url=redis.url) for _ in range(2)]
    try:
        docs = [
            _doc(_routing(servers, {Colour.BLUE: 100})),
            _doc(_routing(servers, {Colour.BLUE: 30, Colour.GREEN: 70})),
        ]
        for _ in range(10):
            await asyncio.gather(*(w.write(APP.name, d) for w, d in zip(writers, docs, strict=True)))
            final = await writers[0].document(APP.name)
            assert final in docs
            assert final is not None
            assert await _app_keys(writers[0]) == kv.flatten(
                final, root="traefik"
            )  # exactly one writer's keys, nothing left over
    finally:
        for w in writers:
            await w.aclose()


async def test_notifications_off_are_refused_with_the_fix(tmp_path: Path) -> None:
    async with run_redis(tmp_path / "redis", notifications="") as redis:
        routes = RedisRoutes(url=redis.url)
        try:
            await routes.ping()
            with pytest.raises(UnreachableError, match="notify-keyspace-events KEA") as raised:
                await routes.check_notifications()
            assert raised.value.exit_code == 3
            await routes.client.config_set("notify-keyspace-events", "KEA")
            await routes.check_notifications()
        finally:
            await routes.aclose()


async def test_an_unreachable_redis_is_exit_3() -> None:
    routes = RedisRoutes(url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(UnreachableError, match="cannot reach Redis") as raised:
            await routes.ping()
        assert raised.value.exit_code == 3
    finally:
        await routes.aclose()
