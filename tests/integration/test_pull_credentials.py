"""Pulls with the credentials Docker itself uses, against a registry on 127.0.0.1 that wants them: the real
CLI, the real Docker engine (which does the pull), a credential helper answering from PATH."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.registry import Registry, run_registry
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

# A credential helper (docker-credential-helpers' protocol): `get`, the server on stdin, JSON out.
HELPER = """#!/bin/sh
[ "$1" = get ] || exit 1
server=$(cat)
if [ "$server" = "{host}" ]; then
  printf '{{"ServerURL": "%s", "Username": "{user}", "Secret": "{password}"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
"""


@pytest.fixture
async def registry(
    prefix: str, app_images: dict[str, str], docker: aiodocker.Docker
) -> AsyncIterator[Registry]:
    """The v1 test app served as `<prefix>/app:1`; the tags pulled from it are removed afterwards."""
    async with run_registry(image=app_images["v1"], name=f"{prefix}/app", tag="1") as served:
        try:
            yield served
        finally:
            for image in await docker.images.list(filters={"reference": [f"{served.host}/*/*"]}):
                for tag in image["RepoTags"] or []:
                    try:
                        await docker.images.delete(tag)
                    except aiodocker.DockerError as exc:
                        if exc.status not in (404, 409):
                            raise


def helper_env(tmp_path: Path, registry: Registry) -> dict[str, str]:
    """A DOCKER_CONFIG that names `docker-credential-tsfake` for the registry, and that helper on PATH."""
    folder = tmp_path / "helpers"
    folder.mkdir()
    helper = folder / "docker-credential-tsfake"
    helper.write_text(HELPER.format(host=registry.host, user=registry.user, password=registry.password))
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "tsfake"}}))
    return {"DOCKER_CONFIG": str(docker_config), "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


async def test_a_pull_uses_the_credential_helper_and_a_refusal_names_image_registry_and_answer(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, registry: Registry
) -> None:
    image = registry.image(f"{prefix}/app", "1")
    config = cli.app_config(tmp_path, traefik, prefix, image=image)
    env = helper_env(tmp_path, registry)

    deployed = await cli.run("promote", prefix, config=config, env=env)
    assert deployed.code == 0, deployed.stderr
    assert f"{registry.user}:{registry.password}" in registry.authorised()
    raw = await docker.containers.container(f"{prefix}-blue-1").show()
    assert raw["Config"]["Image"] == image

    missing = registry.image(f"{prefix}/app", "9")
    refused = await cli.run("promote", prefix, "--image", missing, config=config, env=env)
    assert refused.code == 1, refused.stderr
    assert (
        f"trafficshift: image {missing} is not on this host and pulling it from {registry.host} failed:"
        in refused.stderr
    )
    assert "manifest unknown" in refused.stderr  # the registry's own answer, as Docker relays it
    assert f"(credentials for {registry.host} from docker-credential-tsfake)" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_without_credentials_the_refusal_says_none_were_found(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, registry: Registry
) -> None:
    image = registry.image(f"{prefix}/app", "1")
    config = cli.app_config(tmp_path, traefik, prefix, image=image)
    nowhere = tmp_path / "no-docker-config"
    refused = await cli.run("promote", prefix, config=config, env={"DOCKER_CONFIG": str(nowhere)})
    assert refused.code == 1, refused.stderr
    assert f"image {image} is not on this host and pulling it from {registry.host} failed:" in refused.stderr
    assert "no basic auth credentials" in refused.stderr
    assert f"(no credentials: {nowhere / 'config.json'} does not exist)" in refused.stderr
    assert registry.authorised() == []
    assert await docker.containers.list(all=True, filters={"name": [prefix]}) == []
