"""The service as a dynamic-config provider: a replica killed by hand leaves the file, and comes back (on its
new published port) only once Docker restarted it and trafficshift probed it ready."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.load import Load, load_app
from tests.support.service import run_service
from tests.support.traefik import TraefikProc
from trafficshift.traefik.render import parse_dynamic

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


def _servers(path: Path) -> set[str]:
    try:
        routing = parse_dynamic(path.read_text())
    except FileNotFoundError:
        return set()
    return {url for route in routing.routes for url in route.servers}


async def _until(predicate: object, *, within: float) -> float:
    """Poll `predicate()` until true; return the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            if predicate():  # type: ignore[operator]
                break
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_replica_killed_by_hand_is_routed_around_and_readded_once_ready(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"], replicas=2)
    file = traefik.dynamic_dir / f"{prefix}.yml"
    before = _servers(file)
    assert len(before) == 2

    async with (
        run_service(config) as service,
        load_app(web_url=traefik.web_url, app=prefix) as load,
    ):
        await load.wait_for(requests=50)
        victim = await docker.containers.get(f"{prefix}-blue-1")
        info = await victim.show()
        old_url = next(
            u for u in before if u.endswith(info["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        )
        killed = Load.mark()
        os.kill(info["State"]["Pid"], signal.SIGKILL)  # by hand: Docker restarts it (unless-stopped)

        removed = await _until(lambda: old_url not in _servers(file), within=10)
        routed_around = Load.mark()
        readded = await _until(lambda: len(_servers(file)) == 2, within=20)
        after = _servers(file)
        await load.wait_for(requests=load.total + 100)

        restarted = await victim.show()
        assert restarted["RestartCount"] == 1
        new_port = restarted["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        assert after == (before - {old_url}) | {f"http://127.0.0.1:{new_port}"}
        # The provider logs the write once Traefik confirmed it, a moment after the file changed on disk.
        await _until(lambda: "dynamic file now routes" in service.log(), within=10)
        log = service.log()
        assert log.index(f"probing {prefix}-blue-1") < log.rindex("dynamic file now routes")

    failed = [s for s in load.samples if s.failed]
    print(
        f"removed {removed:.2f}s after the kill, re-added {readded:.2f}s later; {len(failed)} requests failed"
    )
    # Requests that reach the dead replica fail until Traefik has applied the file without it (its throttle
    # is 200ms here); none after that, and none when the restarted replica comes back.
    assert all(killed - 0.5 <= s.started < routed_around + 1.0 for s in failed), failed[:5]
    assert removed < 2
    assert readded < 10


async def test_a_docker_restart_moves_every_replica_to_a_new_port_and_the_file_follows_once_probed(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    """Publish mode: `docker restart` (not a crash: Docker's restart count stays 0) gives each replica a new
    host port; with `serve` running the file follows, each replica routed only once probed there."""
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"], replicas=2)
    file = traefik.dynamic_dir / f"{prefix}.yml"
    before = _servers(file)

    async with (
        run_service(config) as service,
        load_app(web_url=traefik.web_url, app=prefix) as load,
    ):
        await load.wait_for(requests=50)
        restarting = Load.mark()
        new = set()
        for n in (1, 2):
            container = await docker.containers.get(f"{prefix}-blue-{n}")
            await container.restart(timeout=1)
            port = (await container.show())["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
            new.add(f"http://127.0.0.1:{port}")
        restarted = Load.mark()
        assert not new & before
        followed = await _until(lambda: _servers(file) == new, within=20)
        await _until(lambda: service.log().count("dynamic file now routes") >= 1, within=10)
        routed = Load.mark()
        await load.wait_for(requests=load.total + 200)
        status = await cli.run_json("status", prefix, config=config)

    assert status["file"]["in_sync"] is True
    log = service.log()
    for n in (1, 2):
        assert log.index(f"probing {prefix}-blue-{n}") < log.rindex("dynamic file now routes")
    failed = [s for s in load.samples if s.failed]
    print(f"file followed {followed:.2f}s after the restarts; {len(failed)} requests failed")
    # Requests fail while a replica is down (`docker restart` stops it first; here the second one goes down
    # before the first one's new port has been probed) and until Traefik runs the file with the new ports;
    # none once the provider's write is confirmed.
    assert all(restarting <= s.started < min(routed, restarted + 2.0) for s in failed), failed[:5]
    assert followed < 10
    assert restarted - restarting < 10
