"""The mirror phase end to end: the real CLI, Docker and Traefik, requests on 127.0.0.1.

The apps' images log every request they answer (`request <version> <METHOD> <URI> <status>`), and the load
numbers its requests (`/?n=<k>`): a request found in both colours' logs was served by the old colour and
copied to the new one.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.docker_fixtures import IMAGE_REPO, colours_of, requests_logged
from tests.support.images import build_app_image
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc
from trafficshift.traefik.scrape import parse_metrics

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

PERCENT = 20


@pytest.fixture(scope="module")
def logged() -> dict[str, str]:
    """Images that log each request they answer: v1, v2 and a version whose `/` answers 500."""

    def build(key: str, **kw: Any) -> str:
        return build_app_image(tag=f"{IMAGE_REPO}:{key}", log_requests=True, **kw)

    return {
        "v1": build("logged-v1", version="v1"),
        "v2": build("logged-v2", version="v2"),
        "error_500": build("logged-500", version="error-500", status_500=True),
    }


def _rollout(**mirror: Any) -> dict[str, Any]:
    return cli.rollout_policy(steps=[50, 100], pause="500ms", drain="500ms", mirror=mirror)


def _numbers(found: list[tuple[str, str, int]], method: str) -> set[int]:
    return {int(uri.split("n=")[1]) for m, uri, _ in found if m == method and "n=" in uri}


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


async def _api(traefik: TraefikProc, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(traefik.api_url + path) as response:
        return response.status


async def _green_requests(traefik: TraefikProc, app: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(traefik.metrics_url) as response:
        text = await response.text()
    return parse_metrics(text=text, taken_at=0.0).service(f"{app}-green@file").total


async def test_the_mirror_copies_its_share_of_gets_to_the_new_colour_and_no_post(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, logged: dict[str, str]
) -> None:
    rollout = _rollout(percent=PERCENT, duration="3s")
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=logged["v1"], metrics=True, rollout=rollout
    )
    gets = load_app(web_url=traefik.web_url, app=prefix, concurrency=3, numbered=True)
    posts = load_app(web_url=traefik.web_url, app=prefix, concurrency=1, method="POST", numbered=True)
    async with gets, posts:
        await gets.wait_for(requests=30)
        proc = await cli.start("promote", prefix, "--image", logged["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b"mirror confirmed")
        start, first_get, first_post = Load.mark(), gets.issued, posts.issued
        assert await _api(traefik, f"/api/http/services/{prefix}-mirror@file") == 200
        await cli.wait_for_line(proc, b"removing the mirror")
        end, last_get, last_post = Load.mark(), gets.issued, posts.issued
        # Before step 1 is written: the new colour has had copies only.
        blue = await requests_logged(docker, prefix, "blue")
        green = await requests_logged(docker, prefix, "green")
        counted = await _green_requests(traefik, prefix)
        result = await cli.finish(proc)

    assert result.code == 0, result.stderr
    during = [s for s in (*gets.samples, *posts.samples) if start <= s.started < end]
    assert len(during) > 100
    assert {(s.status, s.body) for s in during} == {(200, "v1")}  # every answer from v1, none failed

    window = set(range(first_get, last_get)) & _numbers(blue, "GET")
    copied = window & _numbers(green, "GET")
    share = len(copied) / len(window)
    print(f"\nmirrored {len(copied)} of {len(window)} GETs ({share:.1%}); Traefik counted {counted:g}")
    assert 0.15 <= share <= 0.25, (len(copied), len(window))
    assert set(range(first_post, last_post)) & _numbers(blue, "POST")  # POSTs went on, to v1
    assert not _numbers(green, "POST")  # and none was copied
    # Traefik's metrics count the copies under the new colour's service: what analysis judges.
    assert counted >= len(_numbers(green, "GET")) > 0

    # Gone once the phase ended, confirmed; the rollout went on.
    assert await _api(traefik, f"/api/http/services/{prefix}-mirror@file") == 404
    assert await _api(traefik, f"/api/http/routers/{prefix}-mirror@file") == 404
    assert not (traefik.dynamic_dir / f"{prefix}.mirror.yml").exists()
    assert set(await colours_of(docker, prefix)) == {"green"}


async def test_posts_are_copied_when_configured(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, logged: dict[str, str]
) -> None:
    rollout = _rollout(percent=50, duration="2s", methods=["POST"])
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=logged["v1"], rollout=rollout)
    gets = load_app(web_url=traefik.web_url, app=prefix, concurrency=1, numbered=True)
    posts = load_app(web_url=traefik.web_url, app=prefix, concurrency=2, method="POST", numbered=True)
    async with gets, posts:
        await posts.wait_for(requests=10)
        proc = await cli.start("promote", prefix, "--image", logged["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b"removing the mirror")
        green = await requests_logged(docker, prefix, "green")
        result = await cli.finish(proc)
    assert result.code == 0, result.stderr
    assert len(_numbers(green, "POST")) > 10
    assert not _numbers(green, "GET")


async def test_a_version_answering_500_is_caught_in_the_mirror_phase_with_no_failed_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, logged: dict[str, str]
) -> None:
    # A long phase: the verdict must come from the copies within seconds, not from its end.
    analysis = {"max_error_rate": 0.05, "min_requests": 5, "interval": "500ms"}
    config = await cli.first_deploy(
        tmp_path,
        traefik,
        prefix,
        image=logged["v1"],
        metrics=True,
        rollout=_rollout(percent=PERCENT, duration="30s"),
        analysis=analysis,
    )
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=3, numbered=True) as load:
        await load.wait_for(requests=30)
        started = Load.mark()
        result = await cli.run("promote", prefix, "--image", logged["error_500"], "--json", config=config)
        took = Load.mark() - started
        await load.wait_for(requests=load.total + 30)

    assert result.code == 1, result.stderr
    assert "analysis failed at mirror (20% of GET/HEAD copied to green)" in result.stderr, result.stderr
    assert "error rate 1 > 0.05" in result.stderr
    events = result.events()
    confirmed = next(_at(e) for e in events if e["message"].startswith("mirror confirmed"))
    detection = next(_at(e) for e in events if e["state"] == "aborting") - confirmed
    assert detection < 5, detection  # within a few analysis intervals of the copies, not at the end
    # The new colour never had a client's request: weight 0 throughout, and no request failed.
    assert max(e["weights"].get("green", 0) for e in events) == 0
    assert "shifting" not in {e["state"] for e in events}
    summary = load.summary()
    print(
        f"\ncaught {detection:.2f}s after the mirror was confirmed (promote took {took:.1f}s);"
        f" {summary.requests} requests, {summary.failed} failed"
    )
    assert summary.failed == 0
    assert summary.by_body == {"v1": summary.requests}
    assert set(await colours_of(docker, prefix)) == {"blue"}
    assert await _api(traefik, f"/api/http/routers/{prefix}-mirror@file") == 404
    latest = (await cli.run_json("history", prefix, config=config))[0]
    assert latest["outcome"] == "failed"
    assert "mirror" in latest["reason"]


async def test_a_new_colour_that_dies_in_the_mirror_phase_is_caught_on_health_alone(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, logged: dict[str, str]
) -> None:
    rollout = _rollout(percent=PERCENT, duration="30s")
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=logged["v1"], rollout=rollout)
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=3) as load:
        await load.wait_for(requests=30)
        proc = await cli.start("promote", prefix, "--image", logged["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b"mirror confirmed")
        killed = Load.mark()
        await (await docker.containers.get(f"{prefix}-green-1")).kill()
        result = await cli.finish(proc)
        took = Load.mark() - killed
        await load.wait_for(requests=load.total + 30)

    assert result.code == 1, result.stderr
    assert f"{prefix}-green-1" in result.stderr, result.stderr
    assert took < 10, took  # a health interval or two, then the way back: not the phase's 30 s
    assert max(e["weights"].get("green", 0) for e in result.events()) == 0
    summary = load.summary()
    print(
        f"\ncaught and back {took:.1f}s after the kill; {summary.requests} requests, {summary.failed} failed"
    )
    assert summary.failed == 0
    assert set(await colours_of(docker, prefix)) == {"blue"}
    assert await _api(traefik, f"/api/http/services/{prefix}-mirror@file") == 404


async def test_kill_9_in_the_mirror_phase_then_abort_removes_the_mirror(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, logged: dict[str, str]
) -> None:
    rollout = _rollout(percent=PERCENT, duration="30s")
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=logged["v1"], rollout=rollout)
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=3) as load:
        await load.wait_for(requests=30)
        proc = await cli.start("promote", prefix, "--image", logged["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b"mirror confirmed")
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        status = await cli.run_json("status", prefix, config=config)
        assert (status["rollout"]["state"], status["rollout"]["interrupted"]) == ("mirroring", True)
        assert (traefik.dynamic_dir / f"{prefix}.mirror.yml").exists()  # left as it was: still copying

        result = await cli.run("abort", prefix, config=config)
        await load.wait_for(requests=load.total + 30)

    assert result.code == 0, result.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.summary().by_body == {"v1": load.total}
    assert not (traefik.dynamic_dir / f"{prefix}.mirror.yml").exists()
    assert await _api(traefik, f"/api/http/routers/{prefix}-mirror@file") == 404
    assert await colours_of(docker, prefix) == {"blue": {logged["v1"]}}
