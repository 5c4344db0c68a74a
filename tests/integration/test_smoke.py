"""Smoke checks end to end: the real CLI, Docker and Traefik, requests on 127.0.0.1, no live traffic.

The checks go to the new colour through Traefik (a pinned router matched on `X-Trafficshift-Smoke`) before
any public weight: a version whose `/` answers 500 goes back with its weight never above 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.docker_fixtures import IMAGE_REPO, colours_of
from tests.support.images import build_app_image
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

SMOKE = [{"path": "/", "status": 200}, {"path": "/healthz", "status": "2xx", "count": 2}]


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return {
        "v1": build_app_image(tag=f"{IMAGE_REPO}:smoke-v1", version="v1"),
        "v2": build_app_image(tag=f"{IMAGE_REPO}:smoke-v2", version="v2"),
        "error_500": build_app_image(tag=f"{IMAGE_REPO}:smoke-500", version="error-500", status_500=True),
    }


def _rollout() -> dict[str, Any]:
    return cli.rollout_policy(steps=[50, 100], pause="200ms", drain="200ms")


async def _routers(traefik: TraefikProc, app: str) -> list[str]:
    url = f"{traefik.api_url}/api/http/routers?search={app}-pin-&per_page=100"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return [str(r["name"]) for r in await response.json()]


async def test_a_500_version_fails_its_smoke_checks_unrouted_and_a_good_one_rolls(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, images: dict[str, str]
) -> None:
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=images["v1"], rollout=_rollout(), smoke=SMOKE
    )
    live = await cli.run("smoke", prefix, config=config)
    assert live.code == 0, live.stderr
    assert "3 smoke request(s) passed" in live.stdout

    bad = await cli.run("promote", prefix, "--image", images["error_500"], "--json", config=config)
    assert bad.code == 1, bad.stderr
    assert "smoke check GET /: answered 500" in bad.stderr, bad.stderr
    assert "(expected 200)" in bad.stderr
    events = bad.events()
    # Nothing routed to it: green is in the file at weight 0 for the checks, never above.
    assert max(e["weights"].get("green", 0) for e in events) == 0
    assert "shifting" not in {e["state"] for e in events}
    assert any(e["message"].startswith("smoke checks: 3 request(s) to green") for e in events)
    assert await _routers(traefik, prefix) == []  # the smoke router is gone from Traefik
    assert set(await colours_of(docker, prefix)) == {"blue"}
    latest = (await cli.run_json("history", prefix, config=config))[0]
    assert latest["outcome"] == "failed"
    assert "500" in latest["reason"]

    good = await cli.run("promote", prefix, "--image", images["v2"], "--json", config=config)
    assert good.code == 0, good.stderr
    messages = [e["message"] for e in good.events()]
    assert "smoke checks passed: 3 request(s) to green" in messages
    assert await _routers(traefik, prefix) == []
    assert set(await colours_of(docker, prefix)) == {"green"}


async def test_smoke_on_demand_fails_against_a_broken_live_colour(
    tmp_path: Path, traefik: TraefikProc, prefix: str, images: dict[str, str]
) -> None:
    # A first deploy has no old colour to keep serving, so it runs no smoke checks: the 500 goes live.
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=images["error_500"], rollout=_rollout(), smoke=SMOKE
    )
    result = await cli.run("smoke", prefix, config=config)
    assert result.code == 1, result.stderr
    assert "smoke check GET /: answered 500" in result.stderr, result.stderr
