"""Holds end to end: the real CLI and service, Docker engine and Traefik, load on 127.0.0.1.

A hold at 10% stays past the step's pause and `status` says so; `set-weight 30` shows 30 in Traefik's API;
the CLI that drives it killed -9 during the hold leaves it held, and `resume` drives it to its end; through
the API, bad input is a 400 naming the field, and a held rollout survives the service killed -9.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app
from tests.support.service import ServiceProc, run_service
from tests.support.traefik import TraefikProc
from trafficshift.models import Colour
from trafficshift.traefik.api import TraefikApi

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def traefik_weights(traefik: TraefikProc, app: str) -> dict[str, int]:
    """The weights Traefik's API runs for the app now."""
    async with aiohttp.ClientSession() as session:
        observed = await TraefikApi(api_url=traefik.api_url, session=session).read_routing(app)
    return {str(c): w for c, w in observed.routing().weights().items()}


async def test_a_hold_at_10_stays_set_weight_moves_it_and_resume_after_a_kill_finishes_it(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])  # pause 1s
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start(
            "promote", prefix, "--image", app_images["v2"], "--hold-at", "10", "--json", config=config
        )
        await cli.wait_for_line(promote, b"step 1/3 confirmed")
        await asyncio.sleep(2.5)  # past the step's 1 s pause: still at 10%
        status = await cli.run_json("status", prefix, config=config)
        rollout = status["rollout"]
        assert (rollout["state"], rollout["step"], rollout["held"]) == (
            "shifting",
            0,
            "step 1/3 holds until resumed",
        )
        assert (status["weights"], status["routed"]) == ({"blue": 90, "green": 10}, {"blue": 90, "green": 10})
        assert rollout["interrupted"] is False
        assert await traefik_weights(traefik, prefix) == {"blue": 90, "green": 10}
        text = await cli.run("status", prefix, config=config)
        assert "held:       at blue=90% green=10% (step 1/3 holds until resumed)" in text.stdout

        moved = await cli.run("set-weight", prefix, "30", config=config)
        assert moved.code == 0, moved.stderr
        assert "held: rollout" in moved.stdout
        assert "blue=70% green=30%" in moved.stdout
        assert await traefik_weights(traefik, prefix) == {"blue": 70, "green": 30}

        promote.kill()  # kill -9 of the CLI that drives it, while held
        await promote.wait()
        status = await cli.run_json("status", prefix, config=config)
        assert status["rollout"]["interrupted"] is True
        assert status["rollout"]["held"] == "set to 30% on green"
        assert status["weights"] == status["routed"] == {"blue": 70, "green": 30}
        assert await traefik_weights(traefik, prefix) == {"blue": 70, "green": 30}

        resumed = await cli.run("resume", prefix, "--json", config=config, within=60)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert resumed.code == 0, resumed.stderr
    weights = [e["weights"].get("green") for e in resumed.events() if e["state"] == "shifting"]
    assert 50 in weights
    assert weights[-1] == 100
    assert resumed.events()[-1]["state"] == "done"
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v2", since=after) == 1.0
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}


async def test_an_abort_of_a_held_rollout_loses_no_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        promote = await cli.start(
            "promote", prefix, "--image", app_images["v2"], "--hold-at", "50", "--json", config=config
        )
        await cli.wait_for_line(promote, b"step 1/3 confirmed")
        paused = await cli.run("pause", prefix, config=config)  # held at 10%, or at 50% already
        assert paused.code == 0, paused.stderr
        await load.wait_for(requests=load.total + 50)
        aborted = await cli.run("abort", prefix, config=config)
        result = await cli.finish(promote, within=30)
        after = Load.mark()
        await load.wait_for(requests=load.total + 30)

    assert aborted.code == 0, aborted.stderr
    assert result.code == 1  # the promote it held went back
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v1", since=after) == 1.0
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def wait_held(service: ServiceProc, traefik: TraefikProc, app: str, green: int) -> dict[str, object]:
    """The app's status once its rollout is held with `green`% on green, and Traefik's API runs that."""
    async with asyncio.timeout(30):
        while True:
            status, doc = await service.call("GET", f"/apps/{app}")
            assert status == 200, doc
            rollout = doc["rollout"]
            recorded = bool(
                rollout and rollout["held"] and doc["routed"] and doc["routed"].get("green") == green
            )
            if recorded and (await traefik_weights(traefik, app)).get("green") == green:
                return dict(doc)
            await asyncio.sleep(0.1)


async def test_the_api_holds_sets_and_resumes_and_a_held_rollout_survives_the_service_killed(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        for path, body, field in [
            ("weight", {}, "weight"),
            ("weight", {"weight": 0}, "weight"),
            ("weight", {"weight": "30"}, "weight"),
            ("weight", {"weight": 30, "x": 1}, "x"),
            ("pause", {"reason": "x"}, "reason"),
            ("resume", {"now": True}, "now"),
            ("promote", {"image": app_images["v2"], "hold_at": 101}, "hold_at"),
        ]:
            status, doc = await service.call("POST", f"/apps/{prefix}/{path}", body)
            assert (status, doc["field"]) == (400, field), doc
        status, doc = await service.call("POST", f"/apps/{prefix}/pause")
        assert status == 409, doc  # nothing in progress

        rollout_id = await service.promote(prefix, image=app_images["v2"], hold_at=10)
        await wait_held(service, traefik, prefix, 10)
        status, doc = await service.call("POST", f"/apps/{prefix}/weight", {"weight": 30})
        assert (status, doc["id"]) == (202, rollout_id)
        await wait_held(service, traefik, prefix, 30)
        assert await traefik_weights(traefik, prefix) == {"blue": 70, "green": 30}
        await service.stop(signal.SIGKILL)

    async with run_service(config, log_name="service2.log") as service:
        # Driven again at start-up, still held: not aborted.
        doc = await wait_held(service, traefik, prefix, 30)
        assert doc["rollout"]["id"] == rollout_id  # type: ignore[index]
        await asyncio.sleep(1.5)
        status, doc = await service.call("GET", f"/apps/{prefix}")
        assert (doc["rollout"]["held"], doc["routed"]) == ("set to 30% on green", {"blue": 70, "green": 30})
        status, doc = await service.call("POST", f"/apps/{prefix}/resume")
        assert (status, doc["id"]) == (202, rollout_id)
        ended = await service.wait_rollout(rollout_id, within=60)
        assert ended["outcome"] == "done", ended
        status, doc = await service.call("POST", f"/apps/{prefix}/resume")
        assert status == 409, doc
    assert await colours_of(docker, prefix) == {Colour.GREEN.value: {app_images["v2"]}}


async def test_the_cli_holds_sets_and_resumes_a_rollout_the_service_runs(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        env = service.cli_env
        promote = await cli.start(
            "promote",
            prefix,
            "--image",
            app_images["v2"],
            "--hold-at",
            "10",
            "--json",
            config=config,
            env=env,
        )
        await wait_held(service, traefik, prefix, 10)
        moved = await cli.run("set-weight", prefix, "30", config=config, env=env)
        assert moved.code == 0, moved.stderr
        assert f"in the service at {service.url}" in moved.stdout
        assert await traefik_weights(traefik, prefix) == {"blue": 70, "green": 30}
        paused = await cli.run("pause", prefix, "--json", config=config, env=env)
        assert paused.code == 0, paused.stderr
        assert json.loads(paused.stdout)["held"] == "set to 30% on green"  # held already: unchanged
        resumed = await cli.run("resume", prefix, config=config, env=env)
        assert resumed.code == 0, resumed.stderr
        assert resumed.stdout.startswith("resumed: rollout")
        followed = await cli.finish(promote, within=60)
        assert followed.code == 0, followed.stderr
        assert followed.events()[-1]["state"] == "done"
        again = await cli.run("resume", prefix, config=config, env=env)
        assert again.code == 2  # nothing in progress: nothing changed
        assert "no rollout" in again.stderr
