"""The dynamic folder made read-only, and a full disk, mid-rollout: exit 5, the truth in `status`, never 1.

Both folders are small tmpfs mounts (we are root in the test box), under a real Traefik and real Docker with
load through Traefik. The fault lands while the first step (10% on green) holds; the next write fails. The
rollout can then neither go on nor go back (going back is a write too): the promote exits 5, the record
keeps the rollout and `status` says it is interrupted and what to run; Traefik goes on routing what the
last complete file said, so no request fails. Once the disk takes writes again, `abort` converges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.chaos import assert_serves_alone, fill, leftovers, remount, tmpfs
from tests.support.docker_fixtures import colours_of
from tests.support.load import load_app
from tests.support.traefik import TraefikMissing, TraefikProc, run_traefik
from trafficshift.traefik.render import parse_dynamic

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_slow, pytest.mark.docker, pytest.mark.traefik]


@dataclass(frozen=True)
class Disks:
    traefik: TraefikProc
    dynamic_dir: Path  # a tmpfs of its own, watched by Traefik
    state_dir: Path  # a tmpfs of its own (0700)


@pytest.fixture
async def disks(tmp_path: Path) -> AsyncIterator[Disks]:
    """Traefik watching a 256 KiB tmpfs, and a 2 MiB tmpfs as the state folder (both mounted before use)."""
    with (
        tmpfs(tmp_path / "dynamic", size="256k", mode="0755") as dynamic_dir,
        tmpfs(tmp_path / "state", size="2m", mode="0700") as state_dir,
    ):
        try:
            async with run_traefik(dynamic_dir=dynamic_dir, work_dir=tmp_path / "traefik") as traefik:
                yield Disks(traefik=traefik, dynamic_dir=dynamic_dir, state_dir=state_dir)
        except TraefikMissing as exc:
            pytest.fail(str(exc))


def _routed(dynamic_dir: Path, app: str) -> dict[str, int]:
    routing = parse_dynamic((dynamic_dir / f"{app}.yml").read_text())
    return {str(r.colour): r.weight for r in routing.routes}


@pytest.mark.parametrize("fault", ["read-only", "full-dynamic", "full-state", "full-both"])
async def test_a_disk_fault_mid_rollout_is_exit_5_then_abort_converges(
    fault: str,
    tmp_path: Path,
    disks: Disks,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    v1, v2 = app_images["v1"], app_images["v2"]
    config = await cli.first_deploy(
        tmp_path, disks.traefik, prefix, image=v1, rollout=cli.rollout_policy(pause="2s")
    )
    fillers: list[Path] = []
    async with load_app(web_url=disks.traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=50)
        promote = await cli.start("promote", prefix, "--image", v2, "--json", config=config)
        await cli.wait_for_line(promote, b"confirmed")  # 10% on green, held for 2 s
        if fault == "read-only":
            remount(disks.dynamic_dir, read_only=True)
        if fault in ("full-dynamic", "full-both"):
            fillers.append(fill(disks.dynamic_dir))
        if fault in ("full-state", "full-both"):
            fillers.append(fill(disks.state_dir))
        try:
            stuck = await cli.finish(promote, within=60)
            await load.wait_for(requests=load.total + 100)
            status = await cli.run_json("status", prefix, config=config)
            told = await cli.run("status", prefix, config=config)
            routed_while_stuck = _routed(disks.dynamic_dir, prefix)
            # Still no room (what the promote freed as it exited, SQLite's WAL, taken too): another try is
            # stuck as well, and says so (never exit 1).
            for filler in list(fillers):
                fillers.append(fill(filler.parent, name="filler-2.bin"))
            again = await cli.run("abort", prefix, config=config)
        finally:
            if fault == "read-only":
                remount(disks.dynamic_dir, read_only=False)
            for filler in fillers:
                filler.unlink()
        aborted = await cli.run("abort", prefix, config=config)
        await load.wait_for(requests=load.total + 100)

    print(
        f"\n{fault}: promote exit {stuck.code} ({stuck.stderr.strip().splitlines()[-1]}); abort while still"
        f" broken exit {again.code}; abort once fixed exit {aborted.code}; routed while stuck"
        f" {routed_while_stuck}; {load.summary().failed} of {load.total} requests failed"
    )
    assert stuck.code == 5, stuck.stderr
    assert "Traceback" not in stuck.stderr
    assert f"trafficshift abort {prefix}" in stuck.stderr or f"trafficshift promote {prefix}" in stuck.stderr
    # The truth in `status`: the rollout is still there, nobody drives it, and what to run is said.
    assert status["rollout"] is not None, status
    assert status["rollout"]["interrupted"] is True, status
    assert status["rollout"]["image"] == v2, status
    assert "INTERRUPTED" in told.stdout, told.stdout
    assert f"trafficshift abort {prefix}" in told.stdout, told.stdout
    # Traefik kept the last complete file (the step before the fault), whose servers all still run.
    assert routed_while_stuck in ({"blue": 90, "green": 10}, {"blue": 100, "green": 0}), routed_while_stuck
    if fault in ("full-state", "full-both"):
        # With no room for SQLite's WAL the store does not open: nothing is changed, exit 2, saying where.
        assert again.code in (2, 5), again.stderr
        if again.code == 2:
            assert "cannot open the state store" in again.stderr, again.stderr
            assert "(state_dir)" in again.stderr, again.stderr
    else:
        assert again.code == 5, again.stderr
    assert "Traceback" not in again.stderr
    assert aborted.code == 0, aborted.stderr
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    await assert_serves_alone(
        config=config,
        docker=docker,
        dynamic_dir=disks.dynamic_dir,
        api_url=disks.traefik.api_url,
        app=prefix,
        colour="blue",
        image=v1,
    )
    assert await colours_of(docker, prefix) == {"blue": {v1}}
    assert not leftovers(disks.dynamic_dir, prefix)
    history = await cli.run_json("history", prefix, config=config)
    assert (history[0]["image"], history[0]["outcome"]) == (v2, "aborted"), history[0]
