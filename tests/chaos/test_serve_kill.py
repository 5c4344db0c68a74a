"""`trafficshift serve` killed -9 at every phase boundary of a rollout it drives, then started again.

The kill lands right after the service recorded the phase (the store is watched every 5 ms): while it starts
the new colour, once it is ready, when it shifts the first step, when it drains the old colour, and once it
removes the old colour (past the point of return). The CLI that asked for the promote and follows it says
the service no longer drives it (exit 5), `status` shows the rollout interrupted, and the restarted service
converges on its own: it aborts what it finds before the point of return and completes what is past it.
Under load through Traefik, no request fails: serve is not in the request path, and every file it wrote
was complete and routed only to running containers.
"""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.chaos import assert_serves_alone, last_phase, last_seq, wait_for_phase
from tests.support.load import Load, load_app
from tests.support.service import run_service
from tests.support.traefik import TraefikProc
from trafficshift.models import Phase

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_slow, pytest.mark.docker, pytest.mark.traefik]

PHASES = [Phase.STARTING, Phase.READY, Phase.SHIFTING, Phase.DRAINING, Phase.CLEANING]


@pytest.mark.parametrize("phase", PHASES, ids=str)
async def test_serve_killed_at_a_phase_boundary_then_restarted_converges(
    phase: Phase,
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    v1, v2 = app_images["v1"], app_images["v2"]
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=v1, rollout=cli.rollout_policy(pause="1s", drain="2s")
    )
    state_dir = tmp_path / "state"
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=30)
        async with run_service(config, log_name="killed.log") as service:
            seen = last_seq(state_dir)
            follower = await cli.start(
                "promote", prefix, "--image", v2, "--json", config=config, env=service.cli_env
            )
            rollout_id, _ = await wait_for_phase(state_dir, prefix, phase, after=seen)
            service.process.kill()
            await service.process.wait()
            killed = Load.mark()
        killed_in, said = last_phase(state_dir, rollout_id)
        followed = await cli.finish(follower, within=30)
        status = await cli.run_json("status", prefix, config=config)
        told = await cli.run("status", prefix, config=config)
        async with run_service(config, log_name="restarted.log") as service:
            ended = await service.wait_rollout(rollout_id, within=60)
            converged = Load.mark()
            after = Load.mark()
            await load.wait_for(requests=load.total + 100)
            code, _ = await service.stop()
        log = service.log()

    past_the_point_of_return = phase is Phase.CLEANING
    print(
        f"\nserve killed -9 at {phase} (last recorded: {killed_in}, {said!r}): the CLI following it exit"
        f" {followed.code}; restarted, the rollout ended {ended['outcome']} {converged - killed:.1f}s after"
        f" the kill; {load.summary().failed} of {load.total} requests failed"
    )
    assert followed.code == 5, followed.stderr
    assert "no longer drives it" in followed.stderr, followed.stderr
    assert status["rollout"] is not None, status
    assert (status["rollout"]["id"], status["rollout"]["interrupted"]) == (rollout_id, True), status
    assert "INTERRUPTED" in told.stdout, told.stdout
    assert ended["outcome"] == ("done" if past_the_point_of_return else "aborted"), ended
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    colour, image = ("green", v2) if past_the_point_of_return else ("blue", v1)
    assert load.share(image.rsplit(":", 1)[1], since=after) == 1.0
    await assert_serves_alone(
        config=config,
        docker=docker,
        dynamic_dir=traefik.dynamic_dir,
        api_url=traefik.api_url,
        app=prefix,
        colour=colour,
        image=image,
    )
    assert code == 0, log
    assert "Traceback" not in log
