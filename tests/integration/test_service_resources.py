"""What `trafficshift serve` holds on to: connections that never send a request head cannot exhaust it.

The real service (a subprocess), often started with a low soft limit of open files (`ulimit -Sn 128`), as on
hosts whose default is small: half-open sockets (`GET / HTTP/1.1\\r\\nHost:` and nothing more) used to hold a
descriptor each until `/healthz` stopped answering and the engine's own writes failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app
from tests.support.service import ServiceProc, run_service
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker]

HALF_HEAD = b"GET / HTTP/1.1\r\nHost:"
# The CLI takes a service whose /healthz does not answer within 1 s for a dead one.
HEALTH_BOUND = 1.0
# Below what 200 half-open connections and the service's own files need together.
LOW_NOFILE = 128

Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _half_open(url: str) -> Socket:
    parts = urllib.parse.urlsplit(url)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(HALF_HEAD)
        await writer.drain()
    return reader, writer


async def _closed_by_server(socket: Socket, *, within: float) -> bool:
    """Whether the service closes the socket within `within` seconds (EOF or reset)."""
    try:
        async with asyncio.timeout(within):
            return await socket[0].read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def _close(sockets: list[Socket]) -> None:
    for _, writer in sockets:
        writer.close()


async def _healthz(url: str) -> float:
    """One `GET /healthz` on a new connection (as the CLI asks); its latency, or raise."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url + "/healthz") as response,
    ):
        assert response.status == 200
    return time.monotonic() - started


@dataclass
class Watch:
    """`/healthz` asked every 0.1 s: each latency, and what failed."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _watch_healthz(url: str) -> AsyncIterator[Watch]:
    watch = Watch()

    async def loop() -> None:
        while True:
            try:
                watch.latencies.append(await _healthz(url))
            except (aiohttp.ClientError, TimeoutError, AssertionError) as exc:
                watch.failures.append(repr(exc))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def _flood(url: str, count: int) -> AsyncIterator[list[int]]:
    """Keep `count` half-open connections to the service for as long as it runs (a closed one is replaced).

    Yields a one-item list: how many were opened in all.
    """
    opened = [0]

    async def hold() -> None:
        while True:
            try:
                socket = await _half_open(url)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            opened[0] += 1
            try:
                await socket[0].read()  # until the service closes it
            except ConnectionError:
                pass
            finally:
                socket[1].close()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    try:
        yield opened
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _open_files_limit(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-file limit in /proc")


def _config(tmp_path: Path, prefix: str, images: dict[str, str], **service: object) -> Path:
    extra = {"service": service} if service else None
    return cli.write_config(
        tmp_path / "trafficshift.yml", traefik=None, apps={prefix: {"image": images["v1"]}}, extra=extra
    )


async def test_half_open_connections_neither_starve_healthz_nor_stay_open(
    tmp_path: Path, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = _config(tmp_path, prefix, app_images)  # the defaults: head within 10s, at most 512 connections
    async with run_service(config, soft_nofile=LOW_NOFILE) as service:
        started = time.monotonic()
        sockets = list(await asyncio.gather(*(_half_open(service.url) for _ in range(300))))
        try:
            latencies = [await _healthz(service.url) for _ in range(10)]
            assert max(latencies) < HEALTH_BOUND, latencies
            # Each is closed once it has had its 10 s for a request head, not before.
            assert not any(await asyncio.gather(*(_closed_by_server(s, within=0.5) for s in sockets)))
            closed = await asyncio.gather(*(_closed_by_server(s, within=15) for s in sockets))
            took = time.monotonic() - started
        finally:
            _close(sockets)
        assert all(closed)
        assert 10.0 <= took < 14.0, took
        assert await _healthz(service.url) < HEALTH_BOUND
        soft, hard = _open_files_limit(service.process.pid)
        assert soft == hard  # raised at start-up
        log = service.log()
    assert "closed a connection that sent no complete request head in 10s" in log
    assert log.count("sent no complete request head") == 1  # the rest are counted, not logged one by one
    assert "Too many open files" not in log
    assert "Traceback" not in log


async def test_at_the_cap_a_half_open_connection_makes_room_and_requests_keep_theirs(
    tmp_path: Path, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = _config(tmp_path, prefix, app_images, max_connections=8, header_timeout="30s")
    async with run_service(config) as service:
        headers = {"Authorization": f"Bearer {service.token}"}
        timeout = aiohttp.ClientTimeout(total=None)
        async with contextlib.AsyncExitStack() as streams:
            first = await streams.enter_async_context(
                service.session.get(service.url + "/events", headers=headers, timeout=timeout)
            )
            assert first.status == 200
            await first.content.readuntil(b"\n\n")

            sockets = [await _half_open(service.url) for _ in range(200)]
            try:
                latencies = [await _healthz(service.url) for _ in range(10)]
                closed = await asyncio.gather(*(_closed_by_server(s, within=0.5) for s in sockets))
            finally:
                _close(sockets)
            assert max(latencies) < HEALTH_BOUND, latencies
            assert sum(closed) >= 200 - 8, sum(closed)  # the oldest half-open ones made room
            with pytest.raises(TimeoutError):  # the event stream is still open (a closed one reads b"")
                async with asyncio.timeout(0.5):
                    await first.content.read(1)

            # Every place taken by a request (event streams): a new connection is closed at once.
            for _ in range(7):
                stream = await streams.enter_async_context(
                    service.session.get(service.url + "/events", headers=headers, timeout=timeout)
                )
                assert stream.status == 200
            with pytest.raises(aiohttp.ClientError):
                await _healthz(service.url)
        async with asyncio.timeout(5):
            while True:  # the streams' connections are closed: room again
                with contextlib.suppress(aiohttp.ClientError):
                    assert await _healthz(service.url) < HEALTH_BOUND
                    break
                await asyncio.sleep(0.1)
        log = service.log()
    assert "8 connections open: closed the oldest that had not sent a request head" in log
    assert "8 connections open, each with a request: closed a new one" in log
    assert "Traceback" not in log


@pytest.mark.chaos  # the chaos suite's case of half-open connections (`make chaos` runs it too)
async def test_200_half_open_connections_during_an_api_promote_under_load(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    """The chaos case: the promote completes with 0 failed requests and /healthz answers throughout."""
    config = cli.write_config(
        tmp_path / "trafficshift.yml", traefik=traefik, apps={prefix: {"image": app_images["v1"]}}
    )
    async with run_service(config, soft_nofile=LOW_NOFILE) as service:
        await _deploy(service, prefix, app_images["v1"])
        async with (
            load_app(web_url=traefik.web_url, app=prefix) as load,
            _watch_healthz(service.url) as health,
            _flood(service.url, 200) as opened,
        ):
            await load.wait_for(requests=30)
            async with asyncio.timeout(10):
                while opened[0] < 200:  # noqa: ASYNC110 (counted by the flood's tasks)
                    await asyncio.sleep(0.05)
            rollout_id = await _promote(service, prefix, image=app_images["v2"], steps=[10, 50, 100])
            rollout = await service.wait_rollout(rollout_id, within=60)
            after = Load.mark()
            await load.wait_for(requests=load.total + 50)
        log = service.log()
    assert rollout["outcome"] == "done", rollout
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v2", since=after) == 1.0
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}
    assert not health.failures, health.failures[:5]
    assert len(health.latencies) > 20
    assert max(health.latencies) < HEALTH_BOUND, max(health.latencies)
    assert "Too many open files" not in log
    assert "Traceback" not in log


async def _promote(service: ServiceProc, app: str, **body: object) -> str:
    status, doc = await service.call("POST", f"/apps/{app}/promote", body)
    assert status == 202, doc
    return str(doc["id"])


async def _deploy(service: ServiceProc, app: str, image: str) -> None:
    rollout = await service.wait_rollout(await _promote(service, app, image=image))
    assert rollout["outcome"] == "done", rollout
