"""Holds over the in-memory fakes: pause, resume and set-weight from each phase that allows them, refusals
(exit 2, HTTP 409) from the others, a held rollout that survives its driver's death, and one that goes bad.

Blue (web:1) serves; each promote goes to green (web:2) over 10, 50, 100 (pause 0s unless a test sets one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import trafficshift.engine as engine_module
import trafficshift.holding as holding_module
from tests.support.checks import (
    EventMatch,
    assert_invariants,
    assert_settled,
    deploy_blue,
    phase_is,
    says,
)
from tests.support.fakes import APP, CONFIRM, Killed, World, fresh_world, not_applied
from trafficshift import holding
from trafficshift.errors import NothingToDo, NotHoldable, UsageError
from trafficshift.models import Colour, Outcome, Phase, Rollout

BLUE, GREEN = Colour.BLUE, Colour.GREEN


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)
    monkeypatch.setattr(holding_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


async def active(world: World) -> Rollout:
    r = await world.store.active_rollout(APP)
    assert r is not None
    return r


async def until_held(world: World, task: asyncio.Task[Rollout], *, weight: int) -> Rollout:
    """Wait until the rollout is recorded held at `weight` on green and Traefik confirmed that weight."""
    for _ in range(2000):
        assert not task.done(), task.result().reason if not task.exception() else task.exception()
        r = await world.store.active_rollout(APP)
        confirmed = world.publisher.confirmed[-1].weights() if world.publisher.confirmed else {}
        if r is not None and r.held and r.weights.get(GREEN) == weight and confirmed.get(GREEN) == weight:
            return r
        await asyncio.sleep(0.005)
    raise AssertionError(f"never held at {weight}%")


async def kill_held(world: World, *, hold_at: int = 50) -> Rollout:
    """A promote held at `hold_at` whose process dies right after the held step is recorded."""
    world.notifier.kill_after = says(Phase.SHIFTING, "held until resumed")
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2", hold_at=hold_at)
    return await active(world)


async def test_a_hold_at_a_weight_stays_there_past_the_pause_until_resumed(world: World) -> None:
    await deploy_blue(world)
    task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", pause=0.05, hold_at=10))
    held = await until_held(world, task, weight=10)
    assert held.held == "step 1/3 holds until resumed"
    await asyncio.sleep(0.3)  # six times the pause: still there
    r = await active(world)
    assert (r.phase, r.step, r.weights) == (Phase.SHIFTING, 0, {BLUE: 90, GREEN: 10})
    assert world.publisher.file().weights() == {BLUE: 90, GREEN: 10}
    status = await world.engine().status(APP)
    assert status["rollout"]["held"] == "step 1/3 holds until resumed"
    assert status["rollout"]["interrupted"] is False
    assert status["routed"] == {"blue": 90, "green": 10}

    released, drove = await holding.resume(world.engine(), APP)
    assert (released.held, drove) == (None, False)  # its driver goes on
    done = await asyncio.wait_for(task, 5)
    assert done.outcome is Outcome.DONE, done.reason
    assert_settled(world, GREEN, "web:2")
    assert_invariants(world)
    # The hold and the resume reached the webhooks (sent by the driver), in order.
    messages = [e.message for e in world.notifier.events]
    assert any(m.startswith("resumed at 10% on green") for m in messages)


async def test_a_pause_holds_the_current_step_and_resume_goes_on(world: World) -> None:
    await deploy_blue(world)
    task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", pause=0.2))
    for _ in range(2000):
        if world.publisher.file().weights().get(GREEN) == 10:
            break
        await asyncio.sleep(0.005)
    paused = await holding.pause(world.engine(), APP)
    assert paused.held == holding.PAUSED
    await asyncio.sleep(0.5)  # more than twice the step's pause
    r = await active(world)
    assert (r.step, r.weights, r.held) == (0, {BLUE: 90, GREEN: 10}, holding.PAUSED)
    # A second pause changes nothing; the driver reported the hold to the webhooks.
    assert (await holding.pause(world.engine(), APP)).held == holding.PAUSED
    assert any(e.message == "held at 10% on green: paused by request" for e in world.notifier.events)
    await holding.resume(world.engine(), APP)
    assert (await asyncio.wait_for(task, 5)).outcome is Outcome.DONE
    assert_invariants(world)


async def test_set_weight_moves_a_held_rollout_and_resume_goes_on_above_it(world: World) -> None:
    await deploy_blue(world)
    task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", hold_at=10))
    await until_held(world, task, weight=10)
    before = len(world.publisher.confirmed)
    r = await holding.set_weight(world.engine(), APP, 30)
    assert (r.steps, r.step, r.weights, r.held) == (
        (10, 30, 50, 100),
        1,
        {BLUE: 70, GREEN: 30},
        "set to 30% on green",
    )
    assert world.publisher.confirmed[before].weights() == {BLUE: 70, GREEN: 30}
    await asyncio.sleep(0.1)
    assert (await active(world)).weights == {BLUE: 70, GREEN: 30}  # still held there
    # Down is allowed too: the steps keep rising (the resume goes on through every step above).
    r = await holding.set_weight(world.engine(), APP, 20)
    assert (r.steps, r.step) == ((10, 20, 30, 50, 100), 1)
    await holding.resume(world.engine(), APP)
    assert (await asyncio.wait_for(task, 5)).outcome is Outcome.DONE
    weights = [c.weights().get(GREEN) for c in world.publisher.confirmed[before:]]
    assert weights == [30, 20, 30, 50, 100, 100, 100]  # 20 held, then 30, 50, 100, the drain, green alone
    assert_invariants(world)


async def test_a_held_rollout_whose_driver_died_stays_held_and_resume_drives_it_to_the_end(
    world: World,
) -> None:
    await deploy_blue(world)
    left = await kill_held(world)
    assert (left.phase, left.step, left.held) == (Phase.SHIFTING, 1, "step 2/3 holds until resumed")
    status = await world.engine().status(APP)
    assert status["rollout"]["interrupted"] is True
    assert status["rollout"]["held"] == "step 2/3 holds until resumed"

    # `promote` resumes driving it, and it stays held (re-applied, then held).
    driver = asyncio.create_task(world.engine().promote(app=APP))
    await until_held(world, driver, weight=50)
    await asyncio.sleep(0.05)
    assert (await active(world)).step == 1
    driver.cancel()  # killed again
    with pytest.raises(asyncio.CancelledError):
        await driver

    ended, drove = await holding.resume(world.engine(), APP)
    assert drove
    assert (ended.id, ended.outcome) == (left.id, Outcome.DONE), ended.reason
    assert_settled(world, GREEN, "web:2")
    assert_invariants(world)


async def test_set_weight_of_a_rollout_nobody_drives_applies_it_and_leaves_it_held(world: World) -> None:
    await deploy_blue(world)
    await kill_held(world, hold_at=10)
    r = await holding.set_weight(world.engine(), APP, 40)
    assert (r.weights, r.held) == ({BLUE: 60, GREEN: 40}, "set to 40% on green")
    assert world.publisher.confirmed[-1].weights() == {BLUE: 60, GREEN: 40}
    assert not world.adapters().locks.lock(APP).is_held_elsewhere()  # left as found: nobody drives it
    ended, _ = await holding.resume(world.engine(), APP)
    assert ended.outcome is Outcome.DONE
    assert_invariants(world)


async def test_a_pause_before_the_first_step_holds_the_new_colour_at_zero(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.READY)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    await holding.pause(world.engine(), APP)
    driver = asyncio.create_task(world.engine().promote(app=APP))
    await asyncio.sleep(0.2)
    r = await active(world)
    assert (r.phase, r.weights, r.held) == (Phase.READY, {BLUE: 100}, holding.PAUSED)
    assert GREEN not in world.publisher.file().weights()
    await holding.set_weight(world.engine(), APP, 25)
    assert world.publisher.file().weights() == {BLUE: 75, GREEN: 25}
    await holding.resume(world.engine(), APP)
    assert (await asyncio.wait_for(driver, 5)).outcome is Outcome.DONE
    assert_invariants(world)


async def test_a_held_step_that_goes_bad_still_reverts(world: World) -> None:
    await deploy_blue(world)
    task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", hold_at=10))
    await until_held(world, task, weight=10)
    world.containers.crash(GREEN)  # the health watch of the hold sees it
    ended = await asyncio.wait_for(task, 5)
    assert ended.outcome is Outcome.FAILED
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


async def test_a_held_step_failing_its_analysis_reverts() -> None:
    extra = "    analysis: {max_error_rate: 0.05, min_requests: 10, interval: 1ms}\n"
    with fresh_world(extra=extra) as world:
        await deploy_blue(world)
        task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", hold_at=10))
        await until_held(world, task, weight=10)
        world.metrics.error_rate[GREEN] = 0.5
        ended = await asyncio.wait_for(task, 5)
        assert ended.outcome is Outcome.FAILED
        assert "analysis failed" in (ended.reason or "")
        assert_settled(world, BLUE, "web:1")


async def test_an_abort_of_a_held_rollout_goes_back(world: World) -> None:
    await deploy_blue(world)
    task = asyncio.create_task(world.engine().promote(app=APP, image="web:2", hold_at=50))
    await until_held(world, task, weight=50)
    aborted = await world.engine().abort(app=APP)
    assert (aborted.outcome, aborted.held) == (Outcome.ABORTED, None)
    assert (await asyncio.wait_for(task, 5)).outcome is Outcome.ABORTED
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


# ---------------------------------------------------------------- refusals


async def test_nothing_in_progress_is_refused_with_exit_2(world: World) -> None:
    await deploy_blue(world)
    for action in (
        holding.pause(world.engine(), APP),
        holding.resume(world.engine(), APP),
        holding.set_weight(world.engine(), APP, 30),
    ):
        with pytest.raises(NothingToDo) as raised:
            await action
        assert (raised.value.exit_code, raised.value.http_status) == (2, 409)


async def test_resume_of_a_rollout_that_is_not_held_is_refused(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.SHIFTING, step=0, confirmed=True)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    with pytest.raises(NotHoldable, match="is not held"):
        await holding.resume(world.engine(), APP)
    assert (await active(world)).held is None


@pytest.mark.parametrize("weight", [0, 101, -5])
async def test_set_weight_outside_1_to_100_is_refused_before_anything(world: World, weight: int) -> None:
    await deploy_blue(world)
    await kill_held(world)
    before = await world.store.last_event_seq()
    with pytest.raises(UsageError, match=r"1\.\.100") as raised:
        await holding.set_weight(world.engine(), APP, weight)
    assert raised.value.exit_code == 2
    assert await world.store.last_event_seq() == before


@pytest.mark.parametrize(
    ("kill", "fail_step", "pause_ok", "weight_ok"),
    [
        (phase_is(Phase.STARTING), None, True, True),
        (phase_is(Phase.READY), None, True, True),
        (phase_is(Phase.SHIFTING, step=1, confirmed=True), None, True, True),
        (phase_is(Phase.DRAINING), None, True, False),
        (phase_is(Phase.CLEANING), None, False, False),
        (says(Phase.ABORTING, "all traffic back"), 2, False, False),
    ],
    ids=["starting", "ready", "shifting", "draining", "cleaning", "aborting"],
)
async def test_what_each_phase_allows(
    world: World, kill: EventMatch, fail_step: int | None, pause_ok: bool, weight_ok: bool
) -> None:
    await deploy_blue(world)
    if fail_step is not None:  # its step's confirmation fails: the rollout goes back
        world.faults.at(CONFIRM, fail_step, error=not_applied())
    world.notifier.kill_after = kill
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    world.faults.clear()
    left = await active(world)
    before = await world.store.last_event_seq()
    if weight_ok:
        assert (await world.store.request_weight(APP, weight=30)).id == left.id
    else:
        with pytest.raises(NotHoldable) as raised:
            await world.store.request_weight(APP, weight=30)
        assert (raised.value.exit_code, raised.value.http_status) == (2, 409)
    if pause_ok:
        assert (await world.store.hold(APP, reason="x")).held == "x"
    else:
        with pytest.raises(NotHoldable, match=r"point of return|going back"):
            await world.store.hold(APP, reason="x")
        assert await world.store.last_event_seq() == before  # refused: nothing recorded
    # Whatever was asked, an abort still goes back (or completes past the point of return).
    ended = await world.engine().abort(app=APP)
    assert ended.outcome is (Outcome.DONE if left.phase is Phase.CLEANING else Outcome.ABORTED)
    assert ended.held is None
    assert_invariants(world)


async def test_set_weight_of_a_first_deploy_and_hold_at_on_one_are_refused(world: World) -> None:
    world.notifier.kill_after = phase_is(Phase.READY)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP)
    with pytest.raises(NotHoldable, match="first deploy"):
        await holding.set_weight(world.engine(), APP, 30)
    await world.engine().abort(app=APP)
    with pytest.raises(UsageError, match="first deploy"):
        await world.engine().promote(app=APP, hold_at=10)
    assert await world.store.active_rollout(APP) is None


# ---------------------------------------------------------------- the service's runner


async def test_the_service_drives_a_held_rollout_it_finds_and_leaves_it_held_when_it_stops(
    world: World,
) -> None:
    from trafficshift.service.runner import Runner

    await deploy_blue(world)
    left = await kill_held(world, hold_at=10)
    runner = Runner(adapters=world.adapters())
    found = await runner.recover()  # at start-up: not aborted, driven again (held, watched)
    assert [r.id for r in found] == [left.id]
    for _ in range(2000):
        if world.publisher.confirmed[-1].weights().get(GREEN) == 10 and runner.running():
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert world.adapters().locks.lock(APP).is_held_elsewhere()
    r = await active(world)
    assert (r.phase, r.step, r.held) == (Phase.SHIFTING, 0, "step 1/3 holds until resumed")
    await runner.stop(timeout=5)  # SIGTERM: a held rollout is left held, not sent back
    assert runner.running() == 0
    r = await active(world)
    assert (r.held, r.weights) == ("step 1/3 holds until resumed", {BLUE: 90, GREEN: 10})
    assert not world.adapters().locks.lock(APP).is_held_elsewhere()
    ended, drove = await holding.resume(world.engine(), APP)
    assert drove
    assert ended.outcome is Outcome.DONE
    assert_invariants(world)


async def test_a_pause_during_the_drain_keeps_the_old_colour_until_resumed(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.DRAINING)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    await holding.pause(world.engine(), APP)
    driver = asyncio.create_task(world.engine().promote(app=APP))
    await asyncio.sleep(0.2)  # the drain is 0s: held, not cleaning
    r = await active(world)
    assert (r.phase, r.held) == (Phase.DRAINING, holding.PAUSED)
    assert world.publisher.file().weights() == {BLUE: 0, GREEN: 100}
    assert world.containers.names(BLUE)  # still running
    await holding.resume(world.engine(), APP)
    assert (await asyncio.wait_for(driver, 5)).outcome is Outcome.DONE
    assert_invariants(world)


async def test_set_weight_while_starting_applies_once_ready(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.STARTING)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    r = await holding.set_weight(world.engine(), APP, 25)  # nobody drives it: driven here until confirmed
    assert (r.phase, r.steps, r.step, r.weights) == (
        Phase.SHIFTING,
        (10, 25, 50, 100),
        1,
        {BLUE: 75, GREEN: 25},
    )
    assert world.publisher.confirmed[-1].weights() == {BLUE: 75, GREEN: 25}
    ended, _ = await holding.resume(world.engine(), APP)
    assert ended.outcome is Outcome.DONE
    assert_invariants(world)


async def test_going_back_ends_the_hold_in_the_record(world: World) -> None:
    await deploy_blue(world)
    left = await kill_held(world)
    aborting = await world.store.advance(left, message="aborting: x", phase=Phase.ABORTING)
    assert aborting.held is None
    assert (await active(world)).held is None  # status shows it going back, not held


async def test_a_pause_while_the_gate_is_asked_holds_before_the_weight_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.fakes import GATE
    from trafficshift.store.rollouts import StateStore

    monkeypatch.setenv("TS_TEST_SECRET", "s3cret")
    with fresh_world(
        extra="    confirm: {url: http://gate.example/confirm, secret_env: TS_TEST_SECRET}\n"
    ) as world:
        await deploy_blue(world)
        writer = StateStore(world.config.state_dir)
        asked = world.notifier.gate_asked
        first = len(asked)  # the first deploy's
        try:
            # The gate is asked for step 2 (50%): a pause arrives while it answers yes.
            world.faults.at(GATE, 2, action=lambda: writer.hold(APP, reason="paused by request") and None)
            task = asyncio.create_task(world.engine().promote(app=APP, image="web:2"))
            held = await until_held(world, task, weight=10)
            await asyncio.sleep(0.1)
            assert (held.step, (await active(world)).weights) == (0, {BLUE: 90, GREEN: 10})
            assert asked[first:] == [{BLUE: 90, GREEN: 10}, {BLUE: 50, GREEN: 50}]
            await holding.resume(world.engine(), APP)
            assert (await asyncio.wait_for(task, 5)).outcome is Outcome.DONE
            # Asked again for 50% once resumed: a yes from before the hold does not carry over.
            assert asked[first + 2] == {BLUE: 50, GREEN: 50}
        finally:
            writer.close()
        assert_invariants(world)
