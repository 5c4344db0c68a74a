"""Two Traefik instances fed through Redis, end to end: the real CLI, redis-server, Traefik and Docker.

`traefik.provider: redis` with both instances' APIs and metrics listed: a step counts once both show it,
analysis judges the sum of both instances' counts, and the app's lock is leased in Redis for controllers
that share nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
import redis.asyncio
import yaml

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app
from tests.support.redis import RedisProc, run_redis
from tests.support.traefik import TraefikProc, run_traefik, stop_traefik

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

Fleet = tuple[RedisProc, list[TraefikProc]]


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A Redis and two Traefik instances that read their routing from it (no dynamic file of ours)."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(run_redis(tmp_path / "redis"))
        traefiks = [
            await stack.enter_async_context(
                run_traefik(
                    dynamic_dir=tmp_path / f"dyn{i}", work_dir=tmp_path / f"t{i}", redis=store.endpoint
                )
            )
            for i in range(2)
        ]
        yield store, traefiks


def fleet_config(
    folder: Path,
    fleet: Fleet,
    app: str,
    *,
    image: str,
    metrics: bool = False,
    confirm_timeout: str | None = None,
    **spec: Any,
) -> Path:
    """cli.app_config's trafficshift.yml with the routing in Redis and both instances listed."""
    store, traefiks = fleet
    folder.mkdir(parents=True, exist_ok=True)
    path = cli.app_config(folder, traefiks[0], app, image=image, **spec)
    doc = yaml.safe_load(path.read_text())
    doc["traefik"] = {
        "provider": "redis",
        "redis": {"url": store.url},
        "api_urls": [t.api_url for t in traefiks],
    }
    if metrics:
        doc["traefik"]["metrics_urls"] = [t.metrics_url for t in traefiks]
    if confirm_timeout is not None:
        doc["traefik"]["confirm_timeout"] = confirm_timeout
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _first_deploy(folder: Path, fleet: Fleet, app: str, **kw: Any) -> Path:
    config = fleet_config(folder, fleet, app, **kw)
    first = await cli.run("promote", app, config=config)
    assert first.code == 0, first.stderr
    return config


async def test_promote_through_two_instances_loses_no_request_on_either(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    _, traefiks = fleet
    config = await _first_deploy(tmp_path, fleet, prefix, image=app_images["v1"])
    async with contextlib.AsyncExitStack() as stack:
        loads = [await stack.enter_async_context(load_app(web_url=t.web_url, app=prefix)) for t in traefiks]
        for load in loads:
            await load.wait_for(requests=30)
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        after = Load.mark()
        for load in loads:
            await load.wait_for(requests=load.total + 50)

    assert result.code == 0, result.stderr
    # Each step confirmed on BOTH instances: the seconds from the transaction to the slower one's API.
    confirmed = [e["message"] for e in result.events() if "confirmed in" in (e.get("message") or "")]
    print(f"\nconfirmations through two instances: {confirmed}")
    assert len(confirmed) >= 3, confirmed
    for load in loads:
        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
        assert load.share("v2", since=after) == 1.0
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}
    # `status` shows what each instance routes.
    status = await cli.run_json("status", prefix, "--json", config=config)
    views = status["traefik"]
    assert sorted(views) == sorted(t.api_url for t in traefiks)
    assert all(v == {"green": 100} for v in views.values()), views


async def test_analysis_judges_the_sum_of_both_instances(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    _, traefiks = fleet
    analysis = {"max_error_rate": 0.05, "min_requests": 5, "interval": "1s"}
    rollout = cli.rollout_policy(steps=[10, 50, 100], pause="20s")
    config = await _first_deploy(
        tmp_path, fleet, prefix, image=app_images["v1"], metrics=True, rollout=rollout, analysis=analysis
    )
    # Load through the second instance only: judged on the first instance alone, the step would see no
    # request and fail as "could not be judged" at its end instead of on the 500s within seconds.
    async with load_app(web_url=traefiks[1].web_url, app=prefix) as load:
        await load.wait_for(requests=30)
        result = await cli.run("promote", prefix, "--image", app_images["error_500"], "--json", config=config)
    assert result.code == 1, result.stderr
    assert "error rate" in result.stderr, result.stderr
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def test_keyspace_notifications_off_is_exit_3_before_anything(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    store, _ = fleet
    config = fleet_config(tmp_path, fleet, prefix, image=app_images["v1"])
    client = redis.asyncio.Redis.from_url(store.url)
    try:
        await client.config_set("notify-keyspace-events", "")
        result = await cli.run("promote", prefix, config=config)
    finally:
        await client.config_set("notify-keyspace-events", "KEA")
        await client.aclose()
    assert result.code == 3, result.stderr
    assert "notify-keyspace-events KEA" in result.stderr
    assert "Traceback" not in result.stderr
    assert await colours_of(docker, prefix) == {}


async def test_a_killed_pubsub_connection_recovers_and_the_rollout_completes(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    store, traefiks = fleet
    config = await _first_deploy(tmp_path, fleet, prefix, image=app_images["v1"])
    client = redis.asyncio.Redis.from_url(store.url)
    try:
        async with load_app(web_url=traefiks[0].web_url, app=prefix) as load:
            await load.wait_for(requests=20)
            promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
            await cli.wait_for_line(promote, b'"shifting"')
            killed = await client.client_kill_filter(_type="pubsub")
            result = await cli.finish(promote)
            await load.wait_for(requests=load.total + 30)
    finally:
        await client.aclose()
    assert killed == 2, killed  # one subscription per Traefik instance
    assert result.code == 0, result.stderr
    assert load.summary().failed == 0
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}


async def test_a_second_controller_on_the_same_redis_is_refused(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    slow = cli.rollout_policy(pause="3s")
    config = await _first_deploy(tmp_path / "a", fleet, prefix, image=app_images["v1"], rollout=slow)
    # Another machine: its own state folder and lock files; only Redis in common.
    other = fleet_config(tmp_path / "b", fleet, prefix, image=app_images["v1"], rollout=slow)
    first = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
    try:
        await cli.wait_for_line(first, b'"shifting"')
        second = await cli.run("promote", prefix, "--image", app_images["v2"], config=other)
    finally:
        done = await cli.finish(first)
    assert second.code == 4, second.stderr
    assert "in progress" in second.stderr
    assert done.code == 0, done.stderr


async def test_one_instance_stopped_mid_rollout_reverts_it_with_no_loss_on_the_other(
    tmp_path: Path, fleet: Fleet, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    _, (lost, kept) = fleet
    config = await _first_deploy(
        tmp_path,
        fleet,
        prefix,
        image=app_images["v1"],
        confirm_timeout="3s",
        rollout=cli.rollout_policy(pause="2s"),
    )
    async with load_app(web_url=kept.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(promote, b"step 1/3 confirmed")
        await stop_traefik(lost)  # during the first step's pause: the next step cannot be confirmed there
        result = await cli.finish(promote)
        await load.wait_for(requests=load.total + 30)

    assert result.code == 1, result.stderr
    assert lost.api_url in result.stderr, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}
    assert {s.body for s in load.recent(last=0.5)} == {"v1"}


@pytest.mark.parametrize("then", ["abort", "promote"])
async def test_kill_9_mid_shift_then_abort_or_resume_on_both_instances(
    then: str,
    tmp_path: Path,
    fleet: Fleet,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    _, traefiks = fleet
    config = await _first_deploy(tmp_path, fleet, prefix, image=app_images["v1"])
    async with contextlib.AsyncExitStack() as stack:
        loads = [await stack.enter_async_context(load_app(web_url=t.web_url, app=prefix)) for t in traefiks]
        for load in loads:
            await load.wait_for(requests=20)
        proc = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b"confirmed")
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        # The killed holder's lease is still in Redis: on this host its pid is seen gone, so no wait.
        args = ["abort", prefix] if then == "abort" else ["promote", prefix, "--image", app_images["v2"]]
        result = await cli.run(*args, config=config)
        after = Load.mark()
        for load in loads:
            await load.wait_for(requests=load.total + 50)

    assert result.code == 0, result.stderr
    want = "v1" if then == "abort" else "v2"
    for load in loads:
        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
        assert load.share(want, since=after) == 1.0
    expected = {"blue": {app_images["v1"]}} if then == "abort" else {"green": {app_images["v2"]}}
    assert await colours_of(docker, prefix) == expected
