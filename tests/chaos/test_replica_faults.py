"""A new replica killed (`docker kill`) or frozen (`docker pause`) mid-step: the rollout goes back.

Real Docker, real Traefik, load on 127.0.0.1 through Traefik. The promote exits 1 (all traffic back on the
old colour, confirmed); what may fail is only what was in flight on that replica when it died or froze: at
most one request per load worker (each worker has one request in flight at a time).
"""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.chaos import assert_serves_alone
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.chaos, pytest.mark.docker, pytest.mark.traefik]

WORKERS = 4
REPLICAS = 2


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_a_new_replica_killed_or_paused_mid_step_sends_the_rollout_back(
    fault: str,
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    v1, v2 = app_images["v1"], app_images["v2"]
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=v1, replicas=REPLICAS, rollout=cli.rollout_policy(pause="30s")
    )
    async with load_app(web_url=traefik.web_url, app=prefix, concurrency=WORKERS) as load:
        await load.wait_for(requests=20)
        promote = await cli.start("promote", prefix, "--image", v2, "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")  # step 1: 10% on green, held for 30 s
        await load.wait_for(requests=load.total + 100)
        assert load.share("v2", last=1.0) > 0  # the victim's colour does take traffic
        victim = await docker.containers.get(f"{prefix}-green-1")
        hit = Load.mark()
        await (victim.kill() if fault == "kill" else victim.pause())
        result = await cli.finish(promote, within=60)
        back_in = Load.mark() - hit
        after = Load.mark()
        await load.wait_for(requests=load.total + 100)

    assert result.code == 1, result.stderr
    assert f"{prefix}-green-1" in result.stderr, result.stderr
    assert "all traffic is on blue" in result.stderr, result.stderr
    failed = [s for s in load.samples if s.failed]
    why = sorted({s.error or str(s.status) for s in failed})
    print(
        f"\ndocker {fault} of a new replica at 10%: back on blue in {back_in:.1f}s (exit {result.code});"
        f" {len(failed)} of {load.total} requests failed {why}; {result.stderr.strip().splitlines()[-1]}"
    )
    assert len(failed) <= WORKERS, failed
    assert all(s.started >= hit - 0.5 for s in failed), failed  # none before the fault
    assert load.share("v1", since=after) == 1.0
    await assert_serves_alone(
        config=config,
        docker=docker,
        dynamic_dir=traefik.dynamic_dir,
        api_url=traefik.api_url,
        app=prefix,
        colour="blue",
        image=v1,
    )
    history = await cli.run_json("history", prefix, config=config)
    assert (history[0]["image"], history[0]["outcome"]) == (v2, "failed"), history[0]
