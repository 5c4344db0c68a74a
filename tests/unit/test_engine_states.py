"""The engine's state machine over in-memory fakes: a rollout recorded at every phase, resumed or aborted.

Each case kills the process (tests.support.fakes.Killed) right after the engine committed a transition and
before its side effect, then a fresh engine on the same store runs `promote` (resume) or `abort`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import EventMatch, assert_invariants, assert_settled, deploy_blue, phase_is, says
from tests.support.fakes import APP, CONFIRM, Killed, World, fresh_world, not_applied
from trafficshift.errors import UsageError
from trafficshift.models import Colour, Outcome, Phase


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


@dataclass(frozen=True)
class Case:
    """A rollout killed at `kill`; `fail_step` (1-based) makes that step's confirmation fail first."""

    name: str
    kill: EventMatch
    resumed: Outcome  # the end of `promote` on a fresh engine
    aborted: Outcome  # the end of `abort` on a fresh engine
    fail_step: int | None = None


DONE, ABORTED = Outcome.DONE, Outcome.ABORTED

# Blue (web:1) serves; the promote to green (web:2) goes 10, 50, 100.
CUTOVER = [
    Case("starting", phase_is(Phase.STARTING), DONE, ABORTED),
    Case("ready", phase_is(Phase.READY), DONE, ABORTED),
    Case("shifting 1/3 recorded", phase_is(Phase.SHIFTING, step=0, confirmed=False), DONE, ABORTED),
    Case("shifting 1/3 confirmed", phase_is(Phase.SHIFTING, step=0, confirmed=True), DONE, ABORTED),
    Case("shifting 2/3 recorded", phase_is(Phase.SHIFTING, step=1, confirmed=False), DONE, ABORTED),
    Case("shifting 3/3 recorded", phase_is(Phase.SHIFTING, step=2, confirmed=False), DONE, ABORTED),
    Case("shifting 3/3 confirmed", phase_is(Phase.SHIFTING, step=2, confirmed=True), DONE, ABORTED),
    Case("draining", phase_is(Phase.DRAINING), DONE, ABORTED),
    # Past the point of return: an abort completes it.
    Case("cleaning", phase_is(Phase.CLEANING), DONE, DONE),
    # Going back from step 2 (its confirmation failed): a resume goes on going back.
    Case("aborting", phase_is(Phase.ABORTING), ABORTED, ABORTED, fail_step=2),
    Case("aborting, back recorded", says(Phase.ABORTING, "all traffic back"), ABORTED, ABORTED, fail_step=2),
]  # fmt: skip

# Nothing serves; the first deploy starts blue (web:1) and routes it 100% in one step.
FIRST_DEPLOY = [
    Case("starting", phase_is(Phase.STARTING), DONE, ABORTED),
    Case("ready", phase_is(Phase.READY), DONE, ABORTED),
    Case("shifting recorded", phase_is(Phase.SHIFTING, confirmed=False), DONE, ABORTED),
    Case("shifting confirmed", phase_is(Phase.SHIFTING, confirmed=True), DONE, ABORTED),
    Case("aborting", phase_is(Phase.ABORTING), ABORTED, ABORTED, fail_step=1),
    Case("aborting, no traffic recorded", says(Phase.ABORTING, "no traffic"), ABORTED, ABORTED, fail_step=1),
]  # fmt: skip


async def kill_at(world: World, case: Case, *, image: str) -> str:
    """Run a promote until `case.kill`; return the id of the rollout left behind."""
    if case.fail_step is not None:
        world.faults.at(CONFIRM, case.fail_step, error=not_applied())
    world.notifier.kill_after = case.kill
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image=image)
    world.faults.clear()
    left = await world.store.active_rollout(APP)
    assert left is not None
    assert world.notifier.kill_after is None  # it did die there
    return left.id


@pytest.mark.parametrize("case", CUTOVER, ids=lambda c: c.name)
@pytest.mark.parametrize("action", ["promote", "abort"])
async def test_a_cutover_recorded_at_each_phase_resumes_or_aborts(
    world: World, case: Case, action: str
) -> None:
    await deploy_blue(world)
    rollout_id = await kill_at(world, case, image="web:2")
    engine = world.engine()
    if action == "promote":
        ended = await engine.promote(app=APP)
        expected = case.resumed
    else:
        ended = await engine.abort(app=APP)
        expected = case.aborted
    assert (ended.id, ended.outcome) == (rollout_id, expected), ended.reason
    if expected is DONE:
        assert_settled(world, Colour.GREEN, "web:2")
    else:
        assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


@pytest.mark.parametrize("case", FIRST_DEPLOY, ids=lambda c: c.name)
@pytest.mark.parametrize("action", ["promote", "abort"])
async def test_a_first_deploy_recorded_at_each_phase_resumes_or_aborts(
    world: World, case: Case, action: str
) -> None:
    rollout_id = await kill_at(world, case, image="web:1")
    engine = world.engine()
    if action == "promote":
        ended = await engine.promote(app=APP)
        expected = case.resumed
    else:
        ended = await engine.abort(app=APP)
        expected = case.aborted
    assert (ended.id, ended.outcome) == (rollout_id, expected), ended.reason
    if expected is DONE:
        assert_settled(world, Colour.BLUE, "web:1")
    else:
        assert_settled(world, None, None)
    assert_invariants(world)


async def test_a_resumed_rollout_picks_up_at_its_step(world: World) -> None:
    await deploy_blue(world)
    await kill_at(world, CUTOVER[4], image="web:2")  # step 2/3 recorded, not written
    before = len(world.publisher.asked)
    started = list(world.containers.started)
    await world.engine().promote(app=APP)
    weights = [a.routing.weights() for a in world.publisher.asked[before:]]
    # Step 2 again (its write never happened), step 3, the drain, then blue out of the file.
    assert weights == [
        {Colour.BLUE: 50, Colour.GREEN: 50},
        {Colour.BLUE: 0, Colour.GREEN: 100},
        {Colour.BLUE: 0, Colour.GREEN: 100},
        {Colour.GREEN: 100},
    ]
    assert world.containers.started == started  # the green containers taking traffic were kept, not restarted


async def test_an_abort_goes_back_through_weight_zero_before_removing_the_new_colour(world: World) -> None:
    await deploy_blue(world)
    await kill_at(world, CUTOVER[4], image="web:2")  # 50% recorded: the file may say so
    before = len(world.publisher.asked)
    await world.engine().abort(app=APP)
    assert [a.routing.weights() for a in world.publisher.asked[before:]] == [
        {Colour.BLUE: 100, Colour.GREEN: 0},
        {Colour.BLUE: 100},
    ]


async def test_a_promote_with_another_image_does_not_resume(world: World) -> None:
    await deploy_blue(world)
    rollout_id = await kill_at(world, CUTOVER[1], image="web:2")
    with pytest.raises(UsageError, match=r"was interrupted \(ready\)") as raised:
        await world.engine().promote(app=APP, image="web:3")
    assert raised.value.exit_code == 2
    active = await world.store.active_rollout(APP)
    assert active is not None
    assert active.id == rollout_id
