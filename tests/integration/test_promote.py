"""`trafficshift promote` end to end: the real CLI, Docker engine and Traefik; load on 127.0.0.1."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app, summarize
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def test_first_deploy_then_gradual_promote_loses_no_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}

    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        assert load.share("v1") == 1.0
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 0, result.stderr
    summary = load.summary()
    assert summary.failed == 0, [s for s in load.samples if s.failed][:5]
    assert summary.requests > 200
    green_weights = [e["weights"].get("green") for e in result.events() if e["state"] == "shifting"]
    seen = [w for i, w in enumerate(green_weights) if w is not None and (i == 0 or w != green_weights[i - 1])]
    assert seen == [10, 50, 100]
    assert result.events()[-1]["state"] == "done"
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}
    assert load.share("v2", since=after) == 1.0

    history = await cli.run_json("history", prefix, config=config)
    outcomes = [(r["image"], r["outcome"]) for r in history]
    assert outcomes == [(app_images["v2"], "done"), (app_images["v1"], "done")]


async def test_never_ready_image_rolls_back_and_loses_no_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(
        tmp_path,
        traefik,
        prefix,
        image=app_images["v1"],
        health={"path": "/healthz", "interval": "200ms", "healthy_threshold": 2, "start_timeout": "3s"},
    )
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        result = await cli.run("promote", prefix, "--image", app_images["never_ready"], config=config)
        await load.wait_for(requests=load.total + 50)

    assert result.code == 1, result.stderr
    assert "ready" in result.stderr
    assert load.summary().failed == 0
    assert set(s.body for s in load.samples) == {"v1"}
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def test_missing_image_exits_1_and_changes_nothing(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    before = (traefik.dynamic_dir / f"{prefix}.yml").read_text()
    result = await cli.run("promote", prefix, "--image", f"{prefix}/absent:1", config=config)
    assert result.code == 1
    assert "absent" in result.stderr
    assert "Traceback" not in result.stderr
    assert (traefik.dynamic_dir / f"{prefix}.yml").read_text() == before
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def _kill_mid_shift(config: Path, app: str, image: str) -> None:
    """Start a promote and kill -9 it once it holds its first step (10% on the new colour)."""
    proc = await cli.start("promote", app, "--image", image, "--json", config=config)
    await cli.wait_for_line(proc, b"confirmed")
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()


@pytest.mark.parametrize("then", ["abort", "promote"])
async def test_kill_9_mid_shift_then_abort_or_resume(
    then: str,
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        await _kill_mid_shift(config, prefix, app_images["v2"])
        await load.wait_for(requests=load.total + 50)
        mid = summarize(load.recent(last=1.0)).by_body
        assert set(mid) <= {"v1", "v2"}, mid

        status = await cli.run("status", prefix, config=config)
        assert "INTERRUPTED" in status.stdout, status.stdout

        args = ["abort", prefix] if then == "abort" else ["promote", prefix, "--image", app_images["v2"]]
        result = await cli.run(*args, config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 0, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    want = "v1" if then == "abort" else "v2"
    assert load.share(want, since=after) == 1.0
    expected = {"blue": {app_images["v1"]}} if then == "abort" else {"green": {app_images["v2"]}}
    assert await colours_of(docker, prefix) == expected


async def test_second_promote_of_the_same_app_exits_4(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    first = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
    assert first.stdout is not None
    await first.stdout.readline()  # it holds the lock once it prints its first event
    second = await cli.run("promote", prefix, "--image", app_images["v2"], config=config, within=10)
    assert second.code == 4, second.stderr
    assert "in progress" in second.stderr
    assert (await cli.finish(first)).code == 0
