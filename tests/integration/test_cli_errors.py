"""The CLI's failure modes a user meets first: clear one-line errors, the contract's exit codes, no change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.traefik import TraefikProc, free_port

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def test_bad_config_exits_2_with_file_and_line_and_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "trafficshift.yml"
    config.write_text("traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: a\n    port: 70000\n")
    for args in (["check"], ["promote", "web"], ["status"]):
        result = await cli.run(*args, config=config)
        assert result.code == 2, result
        assert "trafficshift.yml:6: apps.web.port: must be 1..65535, got 70000" in result.stderr
        assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == ["trafficshift.yml"]


async def test_unknown_app_and_bad_arguments_exit_2_and_create_nothing(
    tmp_path: Path, traefik: TraefikProc, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    unknown = await cli.run("promote", "nope", config=config)
    assert unknown.code == 2
    assert "unknown app 'nope'" in unknown.stderr
    steps = await cli.run("promote", prefix, "--steps", "50,10", config=config)
    assert steps.code == 2
    assert "rise strictly" in steps.stderr
    assert not (tmp_path / "state").exists()


async def test_unreachable_traefik_exits_3_before_anything_changes(
    tmp_path: Path, traefik: TraefikProc, docker: object, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    text = config.read_text().replace(traefik.api_url, f"http://127.0.0.1:{free_port()}")
    config.write_text(text)
    result = await cli.run("promote", prefix, config=config)
    assert result.code == 3, result.stderr
    assert "127.0.0.1" in result.stderr
    assert not (traefik.dynamic_dir / f"{prefix}.yml").exists()


async def test_unreachable_docker_exits_3(
    tmp_path: Path, traefik: TraefikProc, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image="a:1")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    result = await cli.run("promote", prefix, config=config)
    assert result.code == 3, result.stderr
    assert "Docker" in result.stderr
    assert "Traceback" not in result.stderr
