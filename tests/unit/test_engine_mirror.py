"""The mirror phase over in-memory fakes: where it sits, what it writes, how it is judged, kills and faults.

The app mirrors 20% of GET and HEAD to the new colour before step 1 (`rollout.mirror`). The fake publisher
records every mirror file (tests.support.fakes.FakePublisher.mirror_log) and any mirror that names a colour
the app's file does not list (`dangling`, checked by assert_invariants).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import (
    EventMatch,
    assert_invariants,
    assert_settled,
    deploy_blue,
    phase_is,
    says,
)
from tests.support.fakes import (
    APP,
    MIRROR,
    Killed,
    World,
    make_world,
    not_applied,
    with_mirror,
)
from trafficshift.models import Colour, MirrorRoute, Outcome, Phase

MIRRORED = with_mirror()
ANALYSIS = "    analysis: {max_error_rate: 0.05, min_requests: 10, interval: 10ms}\n"
MIRROR_ROUTE = MirrorRoute(app=APP, colour=Colour.GREEN, percent=20, methods=("GET", "HEAD"))
BLUE, GREEN = Colour.BLUE, Colour.GREEN


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, config_text=MIRRORED)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def judged(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, extra=ANALYSIS, config_text=MIRRORED)
    try:
        yield w
    finally:
        w.close()


def green_weights(world: World) -> list[int]:
    """Green's weight in every routing asked for (0 where it was not listed)."""
    return [a.routing.weights().get(GREEN, 0) for a in world.publisher.asked]


async def test_the_mirror_runs_before_step_1_with_the_new_colour_at_weight_0(world: World) -> None:
    await deploy_blue(world)
    assert world.publisher.mirror_log == []  # a first deploy has no live traffic to copy
    asked = len(world.publisher.asked)
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.DONE
    assert await world.engine().current_mirror(APP) is None
    # Written (confirmed), then removed (confirmed) before any weight moved.
    assert world.publisher.mirror_log == [MIRROR_ROUTE, None]
    weights = [a.routing.weights() for a in world.publisher.asked[asked:]]
    assert weights[:2] == [{BLUE: 100, GREEN: 0}, {BLUE: 90, GREEN: 10}]
    phases = [e.phase for e in world.events if e.rollout_id == ended.id]
    assert phases.index(Phase.MIRRORING) < phases.index(Phase.SHIFTING)
    messages = [e.message for e in world.events if e.phase is Phase.MIRRORING]
    assert messages[0] == "mirroring 20% of GET, HEAD to green for 0.05s"
    assert messages[-1] == "removing the mirror to green"
    assert_settled(world, GREEN, "web:2")
    assert_invariants(world)


async def test_rollback_now_runs_no_mirror(world: World) -> None:
    await deploy_blue(world)
    assert (await world.engine().promote(app=APP, image="web:2")).outcome is Outcome.DONE
    logged = len(world.publisher.mirror_log)
    ended = await world.engine().rollback(app=APP, now=True)
    assert ended.outcome is Outcome.DONE
    assert world.publisher.mirror_log[logged:] == []
    assert_settled(world, BLUE, "web:1")


async def test_a_new_colour_failing_its_analysis_is_caught_in_the_mirror_phase(judged: World) -> None:
    world = judged
    await deploy_blue(world)
    world.metrics.error_rate[GREEN] = 1.0
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.FAILED
    assert ended.reason is not None
    assert "analysis failed at mirror (20% of GET/HEAD copied to green)" in ended.reason
    assert max(green_weights(world)) == 0  # it never took a client's request
    assert world.publisher.mirror_log[-1] is None
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


async def test_a_good_new_colour_is_judged_in_the_mirror_phase(judged: World) -> None:
    world = judged
    await deploy_blue(world)
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.DONE
    judgements = [e.message for e in world.events if " judged: " in e.message]
    assert judgements[0].startswith("mirror (20% of GET/HEAD copied to green) judged: ")
    assert_invariants(world)


async def test_a_new_colour_that_dies_in_the_mirror_phase_is_caught_on_health_alone(world: World) -> None:
    await deploy_blue(world)
    world.notifier.when(says(Phase.MIRRORING, "mirror confirmed"), lambda: world.containers.crash(GREEN))
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.FAILED
    assert max(green_weights(world)) == 0
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


async def test_traefik_not_showing_the_mirror_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(MIRROR, error=not_applied())
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.FAILED
    assert "Traefik did not apply" in (ended.reason or "")
    assert max(green_weights(world)) == 0
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


# A rollout killed (kill -9) in the mirror phase: a fresh process resumes it (the phase starts over) or
# aborts it; either way the mirror is gone at the end, and never named a colour the file did not list.
KILLS: dict[str, EventMatch] = {
    "mirroring recorded": phase_is(Phase.MIRRORING),
    "mirror confirmed": says(Phase.MIRRORING, "mirror confirmed"),
    "mirror removal recorded": says(Phase.MIRRORING, "removing the mirror"),
}


@pytest.mark.parametrize("kill", KILLS, ids=str)
@pytest.mark.parametrize("action", ["promote", "abort"])
async def test_a_rollout_killed_in_the_mirror_phase_resumes_or_aborts(
    world: World, kill: str, action: str
) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = KILLS[kill]
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    left = await world.store.active_rollout(APP)
    assert left is not None
    assert left.phase is Phase.MIRRORING
    engine = world.engine()
    assert await engine.current_mirror(APP) == MIRROR_ROUTE  # what `render` prints beside the app's file
    if action == "promote":
        ended = await engine.promote(app=APP)
        assert (ended.id, ended.outcome) == (left.id, Outcome.DONE)
        assert_settled(world, GREEN, "web:2")
        assert world.publisher.mirror_log[-2:] == [MIRROR_ROUTE, None]  # the phase ran again, whole
    else:
        ended = await engine.abort(app=APP)
        assert (ended.id, ended.outcome) == (left.id, Outcome.ABORTED)
        assert_settled(world, BLUE, "web:1")
        assert max(green_weights(world)) == 0
    assert_invariants(world)


async def test_a_kill_as_the_mirror_is_written_then_abort_leaves_none(world: World) -> None:
    await deploy_blue(world)

    def die() -> None:
        raise Killed("killed while writing the mirror")

    world.faults.at(MIRROR, action=die)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    world.faults.clear()
    ended = await world.engine().abort(app=APP)
    assert ended.outcome is Outcome.ABORTED
    assert world.publisher.mirror_log[-1] is None
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)
