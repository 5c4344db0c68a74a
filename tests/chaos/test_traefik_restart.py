"""Traefik killed (SIGKILL) mid-shift and started again with the same static config.

The promote waits for Traefik: a step written while it is down is confirmed once it is back (exit 0), or,
when it stays down past the confirmation timeout (30 s), the rollout goes back once Traefik can confirm that
(exit 1). Requests fail only while Traefik itself is down: from the kill until its API shows the app's routes
again, with a small margin either side (requests in flight at the kill; the entrypoint catching up with
the API).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.chaos import assert_serves_alone, failed_outside
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc, start_again, stop_traefik
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.publish import CONFIRM_TIMEOUT

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_slow, pytest.mark.docker, pytest.mark.traefik]

MARGIN = 0.5


async def _routed(traefik: TraefikProc, app: str) -> float:
    """Wait until Traefik's API shows the app's weighted service again; when that was (Load.mark's clock)."""
    async with aiohttp.ClientSession() as session:
        api = TraefikApi(api_url=traefik.api_url, session=session)
        async with asyncio.timeout(30):
            while not (await api.read_routing(app)).present:  # noqa: ASYNC110 (polled, as users would)
                await asyncio.sleep(0.02)
    return Load.mark()


@pytest.mark.parametrize(
    ("when", "down"),
    [("holding", 3.0), ("confirming", 3.0), ("confirming", CONFIRM_TIMEOUT + 3.0)],
    ids=["while-a-step-holds", "while-a-step-is-confirmed", "past-the-confirm-timeout"],
)
async def test_traefik_killed_and_restarted_mid_shift(
    when: str,
    down: float,
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    v1, v2 = app_images["v1"], app_images["v2"]
    config = await cli.first_deploy(
        tmp_path, traefik, prefix, image=v1, rollout=cli.rollout_policy(pause="2s")
    )
    back = down > CONFIRM_TIMEOUT
    colour, image = ("blue", v1) if back else ("green", v2)
    again: TraefikProc | None = None
    try:
        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=50)
            promote = await cli.start("promote", prefix, "--image", v2, "--json", config=config)
            # Held at 10% for 2 s (the next step is written while Traefik is down), or the 50% step
            # recorded and about to be written and confirmed.
            await cli.wait_for_line(promote, b"confirmed" if when == "holding" else b"step 2/3: 50% on")
            killed = Load.mark()
            traefik.process.kill()
            await asyncio.to_thread(traefik.process.wait)
            await asyncio.sleep(down)
            again = await start_again(traefik)
            routed = await _routed(again, prefix)
            result = await cli.finish(promote, within=CONFIRM_TIMEOUT * 3)
            after = Load.mark()
            await load.wait_for(requests=load.total + 100)
        await assert_serves_alone(
            config=config,
            docker=docker,
            dynamic_dir=traefik.dynamic_dir,
            api_url=again.api_url,
            app=prefix,
            colour=colour,
            image=image,
        )
    finally:
        if again is not None:
            await stop_traefik(again)

    window = (killed - MARGIN, routed + MARGIN)
    unexpected = failed_outside(load.samples, [window])
    inside = [s for s in load.samples if s.failed and window[0] <= s.started <= window[1]]
    print(
        f"\nTraefik killed {when}, down {down:.0f}s (routing again {routed - killed:.1f}s after the kill):"
        f" exit {result.code}; {len(inside)} requests failed while it was down,"
        f" {len(unexpected)} outside that window, of {load.total}"
    )
    assert result.code == (1 if back else 0), result.stderr
    if back:
        assert "all traffic is on blue" in result.stderr, result.stderr
    assert not unexpected, [(round(s.started - routed, 3), s.error, s.status) for s in unexpected[:5]]
    assert load.share(image.rsplit(":", 1)[1], since=after) == 1.0
