"""HTTP readiness probes of many containers at once: Docker asked twice per container, not every interval.

The container's answers come from a small HTTP server on loopback; Docker is a stub that counts inspections.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.traefik import free_port
from trafficshift.errors import NotReady
from trafficshift.models import AppSpec, Colour, ContainerInfo, ContainerState, HealthSpec
from trafficshift.readiness import JITTER, Mode, cadence, wait_ready


class CountingDocker:
    """Containers `<app>-green-N` at `url`; counts `state` calls; `restarts` is what inspect reports."""

    def __init__(self, app: str, url: str, replicas: int) -> None:
        self.infos = [
            ContainerInfo(
                id=f"id{n}",
                name=f"{app}-green-{n}",
                app=app,
                colour=Colour.GREEN,
                image="web:2",
                running=True,
                health=None,
                url=url,
                probe_url=url,
            )
            for n in range(1, replicas + 1)
        ]
        self.inspections = 0
        self.restarts = 0

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        return list(self.infos)

    async def state(self, *, name: str) -> ContainerState | None:
        self.inspections += 1
        info = next(i for i in self.infos if i.name == name)
        return ContainerState(info=info, status="running", exit_code=0, restart_count=self.restarts, error="")

    async def wait_exit(self, *, name: str) -> int:
        await asyncio.Event().wait()  # never exits
        return 0

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        return []


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """An app that answers /healthz 503 for its first 5 probes, then 200."""
    probes = {"count": 0}

    async def healthz(_request: web.Request) -> web.Response:
        probes["count"] += 1
        return web.Response(status=200 if probes["count"] > 5 else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", probes
    finally:
        await runner.cleanup()


def spec(replicas: int) -> AppSpec:
    return AppSpec(
        name="web",
        image="web:2",
        port=8080,
        rule="Host(`web.localhost`)",
        replicas=replicas,
        health=HealthSpec(path="/healthz", interval=0.02, healthy_threshold=2, start_timeout=5),
    )


async def test_http_probes_ask_docker_only_at_the_start_and_the_end(
    server: tuple[str, dict[str, int]],
) -> None:
    url, probes = server
    docker = CountingDocker("web", url, replicas=4)
    async with aiohttp.ClientSession() as session:
        ready = await wait_ready(app=spec(4), containers=docker, colour=Colour.GREEN, session=session)
    assert [r.name for r in ready] == [f"web-green-{n}" for n in range(1, 5)]
    assert probes["count"] >= 5 + 4 * 2  # five failures shared out, then two in a row for each
    assert docker.inspections == 2 * 4


async def test_a_restart_seen_at_the_end_of_the_streak_is_not_ready(
    server: tuple[str, dict[str, int]],
) -> None:
    url, probes = server
    probes["count"] = 5  # healthy from the first probe
    docker = CountingDocker("web", url, replicas=1)

    async def restart_after_first_look() -> None:
        while docker.inspections == 0:  # noqa: ASYNC110 (the stub has no event to wait for)
            await asyncio.sleep(0)
        docker.restarts = 1

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        group.create_task(restart_after_first_look())
        with pytest.raises(NotReady, match="restarted by Docker"):
            await wait_ready(app=spec(1), containers=docker, colour=Colour.GREEN, session=session)


def test_http_probes_are_spread_and_dockers_samples_are_not() -> None:
    health = HealthSpec(interval=1.0)
    waits = {cadence(health=health, mode=Mode.HTTP) for _ in range(50)}
    assert len(waits) > 10
    assert all(1 - JITTER <= w <= 1 + JITTER for w in waits)
    assert cadence(health=health, mode=Mode.RUNNING) == 1.0
    assert cadence(health=health, mode=Mode.HEALTHCHECK) == 1.0


async def test_a_container_without_an_address_yet_is_asked_again(server: tuple[str, dict[str, int]]) -> None:
    url, probes = server
    probes["count"] = 5  # healthy from the first probe
    docker = CountingDocker("web", url, replicas=1)
    with_address = docker.infos[0]
    docker.infos[0] = dataclasses.replace(with_address, probe_url=None)

    async def address_after_first_look() -> None:
        while docker.inspections == 0:  # noqa: ASYNC110 (the stub has no event to wait for)
            await asyncio.sleep(0)
        docker.infos[0] = with_address

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        group.create_task(address_after_first_look())
        ready = await wait_ready(app=spec(1), containers=docker, colour=Colour.GREEN, session=session)
    assert ready[0].probe_url == url
