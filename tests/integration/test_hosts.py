"""Containers on two Docker hosts: the local engine through its unix socket (host a) and through a TCP proxy
on 127.0.0.1 (host b, tests/support/docker_proxy.py), which the tests stop to lose the host. Real CLI and
Traefik."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.docker_proxy import DockerProxy, docker_proxy, local_socket
from tests.support.load import Load, load_app
from tests.support.service import run_service
from tests.support.traefik import TraefikProc
from trafficshift.traefik.render import parse_dynamic

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


@pytest.fixture
async def proxy() -> AsyncIterator[DockerProxy]:
    async with docker_proxy() as running:
        yield running


def _hosts(proxy: DockerProxy) -> dict[str, object]:
    return {
        "hosts": [
            {"name": "a", "docker": f"unix://{local_socket()}", "address": "127.0.0.1"},
            {"name": "b", "docker": proxy.url, "address": "127.0.0.1"},
        ]
    }


async def _deploy(tmp_path: Path, traefik: TraefikProc, app: str, image: str, proxy: DockerProxy) -> Path:
    """First deploy of `app`: two replicas, one on each host."""
    return await cli.first_deploy(tmp_path, traefik, app, image=image, replicas=2, extra=_hosts(proxy))


async def _placed(docker: aiodocker.Docker, app: str) -> dict[str, str]:
    """Container name -> its `trafficshift.host` label."""
    found = await docker.containers.list(all=True, filters={"label": [f"trafficshift.app={app}"]})
    return {c["Names"][0].lstrip("/"): c["Labels"].get("trafficshift.host", "") for c in found}


def _servers(path: Path) -> dict[str, set[str]]:
    """Colour -> the servers the app's dynamic file lists."""
    return {str(r.colour): set(r.servers) for r in parse_dynamic(path.read_text()).routes}


async def _url_of(docker: aiodocker.Docker, name: str) -> str:
    info = await (await docker.containers.get(name)).show()
    return f"http://127.0.0.1:{info['NetworkSettings']['Ports']['8080/tcp'][0]['HostPort']}"


async def test_replicas_spread_over_two_hosts_and_a_promote_loses_no_request(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    proxy: DockerProxy,
) -> None:
    config = await _deploy(tmp_path, traefik, prefix, app_images["v1"], proxy)
    assert await _placed(docker, prefix) == {f"{prefix}-blue-1": "a", f"{prefix}-blue-2": "b"}
    file = traefik.dynamic_dir / f"{prefix}.yml"
    assert _servers(file) == {
        "blue": {await _url_of(docker, f"{prefix}-blue-1"), await _url_of(docker, f"{prefix}-blue-2")}
    }

    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 0, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v2", since=after) == 1.0
    assert await _placed(docker, prefix) == {f"{prefix}-green-1": "a", f"{prefix}-green-2": "b"}
    status = await cli.run_json("status", prefix, config=config)
    assert sorted(c["name"] for c in status["containers"]) == [f"{prefix}-green-1", f"{prefix}-green-2"]


async def test_a_host_lost_mid_rollout_reverts_it_and_the_old_colour_on_the_other_host_serves(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    proxy: DockerProxy,
) -> None:
    config = await _deploy(tmp_path, traefik, prefix, app_images["v1"], proxy)
    survivor = await _url_of(docker, f"{prefix}-blue-1")  # on host a
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")  # step 1 holds: green takes 10%
        await proxy.stop()  # host b is lost
        result = await cli.finish(promote)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 1, result.stderr  # failed, and all traffic back on blue
    assert "host b" in result.stderr, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v1", since=after) == 1.0
    # The old colour's replica on host a serves alone; host b's containers are left where they are.
    assert _servers(traefik.dynamic_dir / f"{prefix}.yml") == {"blue": {survivor}}
    assert await _placed(docker, prefix) == {
        f"{prefix}-blue-1": "a",
        f"{prefix}-blue-2": "b",
        f"{prefix}-green-2": "b",
    }
    history = await cli.run_json("history", prefix, config=config)
    assert history[0]["outcome"] == "failed"


async def test_a_host_unreachable_before_the_rollout_is_exit_3_and_nothing_changes(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    proxy: DockerProxy,
) -> None:
    config = await _deploy(tmp_path, traefik, prefix, app_images["v1"], proxy)
    file = traefik.dynamic_dir / f"{prefix}.yml"
    before = file.read_text(), await _placed(docker, prefix)
    await proxy.stop()

    result = await cli.run("promote", prefix, "--image", app_images["v2"], config=config)

    assert result.code == 3, result.stderr
    assert f"host b ({proxy.url})" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (file.read_text(), await _placed(docker, prefix)) == before
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def _until(predicate: Callable[[], bool], *, within: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (a file on disk: nothing to wait on but time)
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_serve_follows_the_docker_events_of_every_host(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    proxy: DockerProxy,
) -> None:
    """A replica killed on host b (its events come through the proxy) leaves the file, and is back once
    Docker restarted it and it was probed ready."""
    config = await _deploy(tmp_path, traefik, prefix, app_images["v1"], proxy)
    file = traefik.dynamic_dir / f"{prefix}.yml"
    on_a, on_b = await _url_of(docker, f"{prefix}-blue-1"), await _url_of(docker, f"{prefix}-blue-2")
    assert _servers(file) == {"blue": {on_a, on_b}}
    async with run_service(config) as service:
        victim = await (await docker.containers.get(f"{prefix}-blue-2")).show()
        os.kill(victim["State"]["Pid"], signal.SIGKILL)  # by hand: Docker restarts it (unless-stopped)
        await _until(lambda: _servers(file) == {"blue": {on_a}}, within=10)
        await _until(lambda: len(_servers(file).get("blue", ())) == 2, within=20)
        assert _servers(file) == {"blue": {on_a, await _url_of(docker, f"{prefix}-blue-2")}}
        log = service.log()
    # Seen once: through host b's stream alone (host a's, on the same engine, filters on its own label).
    assert log.count(f"docker: {prefix}-blue-2 die") == 1, log
    assert f"probing {prefix}-blue-2" in log, log


async def test_doctor_checks_every_host_and_names_the_one_down(
    tmp_path: Path, traefik: TraefikProc, prefix: str, app_images: dict[str, str], proxy: DockerProxy
) -> None:
    config = cli.app_config(
        tmp_path, traefik, prefix, image=app_images["v1"], replicas=2, extra=_hosts(proxy)
    )
    await proxy.stop()

    result = await cli.run("doctor", config=config, within=30)

    assert result.code != 0, result.stdout
    lines = {line.split(": ")[0].split("  ")[-1].strip(): line for line in result.stdout.splitlines()}
    assert lines["docker a"].startswith("ok"), result.stdout
    assert lines["clock a"].startswith("ok"), result.stdout
    assert lines["docker b"].startswith("FAIL"), result.stdout
    assert "checks failed: docker b" in result.stdout, result.stdout
