"""Step analysis end to end: the real CLI, Docker and Traefik; steps judged from Traefik's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

FIRST_STEP = 10
CONCURRENCY = 4
# Long enough that a verdict at the end of the step would be obvious; analysis must not wait for it.
LONG_PAUSE = "30s"


def _analysis(**overrides: Any) -> dict[str, Any]:
    defaults = {"max_error_rate": 0.05, "max_p95_latency": "500ms", "min_requests": 5, "interval": "1s"}
    return defaults | overrides


async def _deploy_judged(
    tmp_path: Path, traefik: TraefikProc, app: str, *, image: str, pause: str, **analysis: Any
) -> Path:
    """cli.first_deploy of an app whose steps (from FIRST_STEP) are judged by `_analysis(**analysis)`."""
    rollout = cli.rollout_policy(steps=[FIRST_STEP, 50, 100], pause=pause)
    return await cli.first_deploy(
        tmp_path, traefik, app, image=image, metrics=True, rollout=rollout, analysis=_analysis(**analysis)
    )


def _green_weights(result: cli.Result) -> set[int]:
    return {e["weights"]["green"] for e in result.events() if "green" in e["weights"]}


async def test_erroring_version_is_rolled_back_within_the_first_step(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await _deploy_judged(tmp_path, traefik, prefix, image=app_images["v1"], pause=LONG_PAUSE)
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=CONCURRENCY) as load:
        await load.wait_for(requests=50)
        result = await cli.run("promote", prefix, "--image", app_images["error_500"], "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 1, result.stderr
    assert "error rate" in result.stderr, result.stderr
    # Stopped at the first step: green never had more than its share, and never 50%.
    assert max(_green_weights(result)) == FIRST_STEP
    aborting = [e["message"] for e in result.events() if e["state"] == "aborting"]
    assert "analysis failed at step 1/3" in aborting[0], aborting
    print(f"\nreason: {aborting[0]}")
    assert " requests" in aborting[0]

    failed = [s for s in load.samples if s.failed]
    assert failed, "the 500s never reached the load: nothing was tested"
    assert all(s.status == 500 for s in failed), failed[:5]
    # Caught within seconds of the first 500, not at the end of the 30 s pause.
    first, last = failed[0].started, failed[-1].started
    detection = last - first
    assert detection < 8.0, detection
    # While green served, it had its step's share of the traffic and no more: the failures are bounded by it
    # (Traefik's weighted round robin is exact; the slack is one request in flight per worker at the edges).
    during = [s for s in load.samples if first <= s.started <= last]
    bound = math.ceil(len(during) * FIRST_STEP / 100) + CONCURRENCY
    assert len(failed) <= bound, (len(failed), len(during), detection)
    print(f"\ndetection {detection:.2f}s: {len(failed)} failed of {len(during)} (bound {bound})")

    assert load.share("v1", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"blue"}
    latest = (await cli.run_json("history", prefix, config=config))[0]
    assert latest["outcome"] == "failed"
    assert "error rate" in latest["reason"]


async def test_slow_version_trips_the_latency_threshold(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await _deploy_judged(
        tmp_path, traefik, prefix, image=app_images["v1"], pause=LONG_PAUSE, min_requests=3
    )
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=CONCURRENCY) as load:
        await load.wait_for(requests=50)
        result = await cli.run("promote", prefix, "--image", app_images["slow"], "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert result.code == 1, result.stderr
    assert "p95" in result.stderr, result.stderr
    assert max(_green_weights(result)) == FIRST_STEP
    assert load.summary().failed == 0
    assert load.share("v1", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"blue"}
    assert "p95" in (await cli.run_json("history", prefix, config=config))[0]["reason"]


async def test_good_version_passes_every_step(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await _deploy_judged(tmp_path, traefik, prefix, image=app_images["v1"], pause="3s")
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=CONCURRENCY) as load:
        await load.wait_for(requests=50)
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)

    assert result.code == 0, result.stderr
    assert load.summary().failed == 0
    judged = [e["message"] for e in result.events() if " judged: " in e["message"]]
    assert [m.split(" judged: ")[0] for m in judged] == [
        "step 1/3 (10% on green)",
        "step 2/3 (50% on green)",
        "drain (100% on green)",
    ]
    for message in judged:
        requests = int(message.split(" judged: ")[1].split(" requests")[0])
        assert requests >= 5, message  # judged on figures, not on health alone
        assert "5xx rate 0.000" in message, message
    assert load.share("v2", since=after) == 1.0
    assert set(await colours_of(docker, prefix)) == {"green"}


async def test_unreadable_metrics_exit_3_before_anything_changes(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(
        tmp_path, traefik, prefix, image=app_images["v1"], metrics=True, analysis=_analysis()
    )
    config.write_text(config.read_text().replace(traefik.metrics_url, traefik.api_url + "/nothing-here"))
    result = await cli.run("promote", prefix, config=config)
    assert result.code == 3, result.stderr
    assert "metrics" in result.stderr
    assert set(await colours_of(docker, prefix)) == set()
    assert not (traefik.dynamic_dir / f"{prefix}.yml").exists()
