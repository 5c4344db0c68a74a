"""containers.py and readiness.py against the real Docker engine, with the tiny busybox images."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiodocker
import aiohttp
import pytest

from trafficshift.containers import LABEL_APP, LABEL_COLOUR, LABEL_IMAGE, Containers
from trafficshift.errors import ImageError, NotReady, UnreachableError
from trafficshift.models import AppSpec, Colour, ContainerInfo, HealthSpec, RolloutPolicy
from trafficshift.readiness import wait_ready

pytestmark = pytest.mark.docker

FAST = HealthSpec(path="/healthz", interval=0.2, timeout=1.0, healthy_threshold=2, start_timeout=10.0)


def make_app(prefix: str, image: str, **overrides: Any) -> AppSpec:
    fields: dict[str, Any] = {
        "name": f"{prefix}-web",
        "image": image,
        "port": 8080,
        "rule": "Host(`web.localhost`)",
        "publish": "127.0.0.1",
        "health": FAST,
        "rollout": RolloutPolicy(stop_timeout=2.0),
    }
    fields.update(overrides)
    return AppSpec(**fields)


@pytest.fixture
def containers(docker: aiodocker.Docker) -> Containers:
    return Containers(docker)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.text()


async def test_publish_mode_two_replicas_ready_and_serving(
    containers: Containers,
    docker: aiodocker.Docker,
    session: aiohttp.ClientSession,
    app_images: dict[str, str],
    prefix: str,
) -> None:
    app = make_app(
        prefix,
        app_images["v1"],
        replicas=2,
        environment={"GREETING": "hello"},
        labels={"team": "web"},
        command=("sh", "-c", "echo $GREETING > /www/greeting && exec sh /serve.sh"),
    )
    started = await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    assert [c.name for c in started] == [f"{app.name}-blue-1", f"{app.name}-blue-2"]

    seen: list[tuple[str, str]] = []
    t0 = time.monotonic()
    ready = await wait_ready(
        app=app,
        containers=containers,
        colour=Colour.BLUE,
        session=session,
        on_progress=lambda info, msg: seen.append((info.name, msg)),
    )
    print(f"readiness of 2 replicas: {time.monotonic() - t0:.2f}s")
    assert {name for name, _ in seen} == {c.name for c in started}
    assert any("GET /healthz: 200 (2/2)" in msg for _, msg in seen)
    for info in ready:
        assert info.running
        assert (info.app, info.colour, info.image) == (app.name, Colour.BLUE, app.image)
        assert info.url is not None
        assert info.url.startswith("http://127.0.0.1:")
        assert info.url == info.probe_url
        assert await get(session, info.url + "/") == (200, "v1\n")
        assert await get(session, info.url + "/greeting") == (200, "hello\n")  # env and command applied
        raw = await docker.containers.container(info.id).show()
        assert raw["Config"]["Labels"]["team"] == "web"
        assert raw["Config"]["Labels"][LABEL_APP] == app.name
        assert raw["Config"]["Labels"][LABEL_COLOUR] == "blue"
        assert raw["Config"]["Labels"][LABEL_IMAGE] == app.image
        assert raw["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert {c.id for c in await containers.list_all()} >= {c.id for c in ready}
    assert await containers.list(app=app.name, colour=Colour.GREEN) == []


async def test_start_colour_is_idempotent_and_replaces_other_images(
    containers: Containers, docker: aiodocker.Docker, app_images: dict[str, str], prefix: str
) -> None:
    app = make_app(prefix, app_images["v1"], replicas=2)
    first = await containers.start_colour(app=app, colour=Colour.GREEN, image=app_images["v1"])
    again = await containers.start_colour(app=app, colour=Colour.GREEN, image=app_images["v1"])
    assert [c.id for c in again] == [c.id for c in first]

    # A stopped replica is recreated, the running one reused.
    await containers.stop_and_remove(app=app.name, colour=Colour.BLUE, stop_timeout=1)  # other colour: no-op
    await docker.containers.container(first[1].id).stop(t=1)
    healed = await containers.start_colour(app=app, colour=Colour.GREEN, image=app_images["v1"])
    assert healed[0].id == first[0].id
    assert healed[1].id != first[1].id
    assert healed[1].running

    # Another image replaces every replica; fewer replicas removes the extra ones.
    smaller = make_app(prefix, app_images["v2"], replicas=1)
    replaced = await containers.start_colour(app=smaller, colour=Colour.GREEN, image=app_images["v2"])
    assert [c.name for c in replaced] == [f"{app.name}-green-1"]
    assert replaced[0].id != first[0].id
    assert replaced[0].image == app_images["v2"]
    assert [c.id for c in await containers.list(app=app.name)] == [replaced[0].id]


async def test_never_ready_fails_within_start_timeout(
    containers: Containers, session: aiohttp.ClientSession, app_images: dict[str, str], prefix: str
) -> None:
    health = HealthSpec(path="/healthz", interval=0.2, timeout=0.5, healthy_threshold=2, start_timeout=1.5)
    app = make_app(prefix, app_images["never_ready"], health=health)
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    t0 = time.monotonic()
    with pytest.raises(NotReady, match=r"not ready within 1.5s .*GET /healthz: 404"):
        await wait_ready(app=app, containers=containers, colour=Colour.BLUE, session=session)
    assert 1.4 < time.monotonic() - t0 < 3


async def test_dying_container_fails_fast_with_exit_code_and_logs(
    containers: Containers, session: aiohttp.ClientSession, app_images: dict[str, str], prefix: str
) -> None:
    app = make_app(
        prefix,
        app_images["v1"],
        replicas=2,
        # A long interval: the death must be noticed by Docker's wait, not by the next poll.
        health=HealthSpec(path="/healthz", interval=5.0, start_timeout=30.0),
        command=("sh", "-c", "echo booting; sleep 1; echo 'boom: no config' >&2; exit 3"),
    )
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    t0 = time.monotonic()
    with pytest.raises(NotReady, match=r"exited with code 3") as caught:
        await wait_ready(app=app, containers=containers, colour=Colour.BLUE, session=session)
    elapsed = time.monotonic() - t0
    print(f"death noticed after {elapsed:.2f}s")
    assert elapsed < 4.5  # well before the next poll (5 s) and start_timeout (30 s)
    assert "boom: no config" in str(caught.value)
    assert f"{app.name}-blue-" in str(caught.value)


async def test_docker_healthcheck_mode(
    containers: Containers, session: aiohttp.ClientSession, app_images: dict[str, str], prefix: str
) -> None:
    health = HealthSpec(path=None, interval=0.2, start_timeout=10.0)
    app = make_app(prefix, app_images["healthcheck"], health=health)
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    messages: list[str] = []
    (ready,) = await wait_ready(
        app=app,
        containers=containers,
        colour=Colour.BLUE,
        session=session,
        on_progress=lambda _info, msg: messages.append(msg),
    )
    assert ready.health == "healthy"
    assert messages[-1] == "docker health: healthy (1/1)"

    sick = make_app(
        prefix, app_images["unhealthy"], health=HealthSpec(path=None, interval=0.2, start_timeout=2)
    )
    await containers.start_colour(app=sick, colour=Colour.GREEN, image=sick.image)
    with pytest.raises(NotReady, match=r"docker health: (starting|unhealthy)"):
        await wait_ready(app=sick, containers=containers, colour=Colour.GREEN, session=session)


async def test_no_health_mode_needs_running_for_interval_times_threshold(
    containers: Containers, session: aiohttp.ClientSession, app_images: dict[str, str], prefix: str
) -> None:
    health = HealthSpec(path=None, interval=0.3, healthy_threshold=2, start_timeout=10.0)
    app = make_app(prefix, app_images["v1"], health=health)
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    t0 = time.monotonic()
    (ready,) = await wait_ready(app=app, containers=containers, colour=Colour.BLUE, session=session)
    assert ready.running
    assert ready.health is None
    assert time.monotonic() - t0 >= 0.6


async def test_network_mode_probes_the_container_ip(
    containers: Containers,
    session: aiohttp.ClientSession,
    app_images: dict[str, str],
    prefix: str,
    docker: aiodocker.Docker,
    docker_network: str,
) -> None:
    app = make_app(prefix, app_images["slow_start"], publish=None, network=docker_network)
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    t0 = time.monotonic()
    (ready,) = await wait_ready(app=app, containers=containers, colour=Colour.BLUE, session=session)
    assert time.monotonic() - t0 >= 1.4  # the image sleeps 1.5 s before it listens
    assert ready.url == f"http://{app.name}-blue-1:8080"
    assert ready.probe_url is not None
    # The container's own address on that network (Docker picks the subnet), not a published port.
    network = await docker.networks.get(docker_network)
    subnet = ipaddress.ip_network((await network.show())["IPAM"]["Config"][0]["Subnet"])
    host = urlsplit(ready.probe_url).hostname
    assert host is not None
    assert ipaddress.ip_address(host) in subnet
    assert await get(session, ready.probe_url + "/") == (200, "slow-start\n")


async def test_stop_and_remove_is_graceful_and_idempotent(
    containers: Containers, app_images: dict[str, str], prefix: str
) -> None:
    app = make_app(prefix, app_images["v1"], replicas=2)
    await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    await containers.start_colour(app=app, colour=Colour.GREEN, image=app.image)
    t0 = time.monotonic()
    await containers.stop_and_remove(app=app.name, colour=Colour.BLUE, stop_timeout=5)
    print(f"graceful stop and remove of 2 replicas: {time.monotonic() - t0:.2f}s")
    assert time.monotonic() - t0 < 4  # the image handles SIGTERM: no wait for SIGKILL
    remaining: list[ContainerInfo] = await containers.list(app=app.name)
    assert [c.colour for c in remaining] == [Colour.GREEN, Colour.GREEN]
    await containers.stop_and_remove(app=app.name, colour=Colour.BLUE, stop_timeout=5)
    assert await containers.inspect(name=f"{app.name}-blue-1") is None


async def test_missing_image_raises_image_error_quickly(containers: Containers, prefix: str) -> None:
    app = make_app(prefix, f"{prefix}/missing:1")
    t0 = time.monotonic()
    with pytest.raises(ImageError, match=f"{prefix}/missing:1"):
        await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    assert time.monotonic() - t0 < 10
    assert await containers.list(app=app.name) == []


async def test_unreachable_engine() -> None:
    client = aiodocker.Docker(url="unix:///nonexistent/docker.sock")
    try:
        with pytest.raises(UnreachableError):
            await Containers(client).ping()
    finally:
        await client.close()
