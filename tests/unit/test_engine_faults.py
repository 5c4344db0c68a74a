"""The engine's state machine over in-memory fakes: a fault at every side effect, and where it leaves the app.

Exit classes, as the CLI maps them: a rollout that ends `aborted`/`failed` is exit 1 (all traffic back on the
old colour, confirmed); RolloutStuck is exit 5 (recorded, resumable: `promote` or `abort` completes it);
errors before anything was recorded leave the app as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import assert_invariants, assert_settled, deploy_blue, phase_is
from tests.support.fakes import (
    APP,
    CONFIRM,
    DOCKER_PING,
    IMAGE,
    START,
    STOP,
    TRAEFIK_PING,
    WRITE,
    Behaviour,
    Killed,
    World,
    fresh_world,
    not_applied,
    write_failed,
)
from trafficshift.containers import ContainerError
from trafficshift.errors import ImageError, LockedError, RolloutStuck, TrafficShiftError, UnreachableError
from trafficshift.models import Colour, Outcome, Phase, Rollout
from trafficshift.plan import ABORTABLE
from trafficshift.webhooks import ConfirmDenied


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


def docker_refused() -> ContainerError:
    return ContainerError("container web-green-1: Conflict: the name is already in use")


def assert_went_back(world: World, ended: Rollout, outcome: Outcome, reason: str) -> None:
    """Exit 1: the rollout ended `outcome` with `reason`, and blue (web:1) serves alone, confirmed."""
    assert ended.outcome is outcome
    assert ended.reason is not None
    assert reason in ended.reason
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


async def promote(world: World, *, pause: float | None = None) -> Rollout:
    return await world.engine().promote(app=APP, image="web:2", pause=pause)


# ---------------------------------------------------------------- before anything changes


@pytest.mark.parametrize(
    ("op", "error", "exit_code"),
    [
        (DOCKER_PING, UnreachableError("the Docker engine is unreachable"), 3),
        (TRAEFIK_PING, UnreachableError("no Traefik API at http://127.0.0.1:8080"), 3),
        (IMAGE, ImageError("image web:2 is not on this host and pulling it failed"), 1),
    ],
)
async def test_a_failure_before_the_rollout_is_recorded_changes_nothing(
    world: World, op: str, error: TrafficShiftError, exit_code: int
) -> None:
    await deploy_blue(world)
    asked = len(world.publisher.asked)
    world.faults.at(op, error=error)
    with pytest.raises(type(error)) as raised:
        await promote(world)
    assert raised.value.exit_code == exit_code
    assert (await world.store.history(APP))[0].to_image == "web:1"  # no rollout of web:2 recorded
    assert len(world.publisher.asked) == asked
    assert_settled(world, Colour.BLUE, "web:1")


ANALYSIS = "    analysis: {max_error_rate: 0.05, min_requests: 10}\n"


async def test_unreadable_metrics_before_an_analysed_rollout_is_exit_3() -> None:
    with fresh_world(extra=ANALYSIS) as world:
        await deploy_blue(world)
        world.metrics.unreachable = True
        with pytest.raises(UnreachableError) as raised:
            await promote(world)
        assert raised.value.exit_code == 3
        assert_settled(world, Colour.BLUE, "web:1")


async def test_a_second_rollout_of_the_app_is_exit_4(world: World) -> None:
    await deploy_blue(world)
    second = asyncio.Event()
    world.faults.at(CONFIRM, action=second.set)
    first = asyncio.create_task(promote(world, pause=0.05))
    await second.wait()
    with pytest.raises(LockedError) as raised:
        await world.engine().promote(app=APP, image="web:3")
    assert raised.value.exit_code == 4
    assert (await first).outcome is Outcome.DONE


# ---------------------------------------------------------------- Docker


async def test_docker_failing_to_start_the_new_colour_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(START, error=docker_refused())
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "the name is already in use")


async def test_docker_failing_to_start_a_first_deploy_leaves_nothing(world: World) -> None:
    world.faults.at(START, error=docker_refused())
    ended = await world.engine().promote(app=APP)
    assert ended.outcome is Outcome.FAILED
    assert_settled(world, None, None)
    assert world.publisher.asked[-1].routing.routes == ()


async def test_a_new_colour_that_never_gets_ready_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.containers.behaviour["web:2"] = Behaviour.NEVER_READY
    world.set_start_timeout(0.03)
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "not ready within 0.03s")
    assert all(Colour.GREEN not in a.routing.weights() for a in world.publisher.asked)


async def test_a_new_colour_that_dies_before_it_is_ready_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.containers.behaviour["web:2"] = Behaviour.CRASHES
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "exited with code 1 before it was ready")
    assert all(Colour.GREEN not in a.routing.weights() for a in world.publisher.asked)


async def test_a_new_colour_that_dies_while_it_takes_traffic_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, action=lambda: world.containers.crash(Colour.GREEN))  # at 10%
    ended = await promote(world, pause=0.05)
    assert_went_back(world, ended, Outcome.FAILED, "was restarted by Docker while it was taking traffic")


async def test_a_new_colour_that_dies_during_the_drain_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, 4, action=lambda: world.containers.crash(Colour.GREEN))  # 100%, blue at 0
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "was restarted by Docker while it was taking traffic")


async def test_a_restarted_replica_is_never_routed_even_without_a_pause(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, action=lambda: world.containers.crash(Colour.GREEN))  # at 10%
    ended = await promote(world)  # pause 0: step 2 comes before any liveness check
    assert_went_back(world, ended, Outcome.FAILED, "no ready green container to take its share")


async def test_a_first_deploy_whose_replicas_crash_once_routed_goes_back(world: World) -> None:
    world.faults.at(CONFIRM, action=lambda: world.containers.crash(Colour.BLUE))  # while 100% is confirmed
    ended = await world.engine().promote(app=APP)
    assert ended.outcome is Outcome.FAILED
    assert ended.reason is not None
    assert "was restarted by Docker while it was taking traffic" in ended.reason
    assert_settled(world, None, None)
    assert_invariants(world)


@pytest.mark.parametrize("resumed", [False, True], ids=["same process", "next process"])
async def test_replicas_restarted_past_the_point_of_return_are_probed_then_routed(
    world: World, resumed: bool
) -> None:
    await deploy_blue(world)
    cleaning = phase_is(Phase.CLEANING)
    world.notifier.when(cleaning, lambda: world.containers.crash(Colour.GREEN))
    if resumed:
        world.notifier.kill_after = cleaning
        with pytest.raises(Killed):
            await promote(world)
        ended = await world.engine().promote(app=APP)
    else:
        ended = await promote(world)
    assert ended.outcome is Outcome.DONE
    assert_settled(world, Colour.GREEN, "web:2")  # routed on their new addresses
    assert_invariants(world)  # and only once they were healthy there


async def test_failing_to_stop_the_old_colour_is_stuck_then_completes(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(STOP, error=docker_refused())
    with pytest.raises(RolloutStuck, match="run `trafficshift promote web` to complete it") as raised:
        await promote(world)
    assert raised.value.exit_code == 5
    assert str(raised.value).count("trafficshift promote web") == 1  # said once, not wrapped twice
    stuck = await world.store.active_rollout(APP)
    assert stuck is not None
    assert stuck.phase is Phase.CLEANING
    assert world.publisher.file().weights() == {Colour.GREEN: 100}  # blue is out of the file already
    ended = await world.engine().abort(app=APP)  # past the point of return: completed
    assert (ended.id, ended.outcome) == (stuck.id, Outcome.DONE)
    assert_settled(world, Colour.GREEN, "web:2")


async def test_failing_to_stop_the_new_colour_when_going_back_is_stuck_then_aborts(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, 2, error=not_applied())
    world.faults.at(STOP, error=docker_refused())
    with pytest.raises(RolloutStuck, match="run `trafficshift abort web` again") as raised:
        await promote(world)
    assert raised.value.exit_code == 5
    stuck = await world.store.active_rollout(APP)
    assert stuck is not None
    assert stuck.phase is Phase.ABORTING
    assert world.publisher.file().weights() == {Colour.BLUE: 100}  # traffic is back already
    ended = await world.engine().promote(app=APP)
    assert (ended.id, ended.outcome) == (stuck.id, Outcome.ABORTED)
    assert_settled(world, Colour.BLUE, "web:1")


# ---------------------------------------------------------------- the file and Traefik


@pytest.mark.parametrize("step", [1, 2, 3])
async def test_traefik_not_confirming_a_step_goes_back(world: World, step: int) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, step, error=not_applied())
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "Traefik did not apply web@file")


@pytest.mark.parametrize("step", [1, 2, 3])
async def test_the_file_write_failing_at_a_step_goes_back(world: World, step: int) -> None:
    await deploy_blue(world)
    world.faults.at(WRITE, step, error=write_failed())
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "No space left on device")


async def test_traefik_not_confirming_the_drain_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, 4, error=not_applied())  # steps 10, 50, 100, then the drain's write
    ended = await promote(world)
    assert_went_back(world, ended, Outcome.FAILED, "Traefik did not apply")


@pytest.mark.parametrize(
    ("op", "error"), [(WRITE, write_failed()), (CONFIRM, not_applied())], ids=["write", "confirm"]
)
async def test_the_file_failing_when_removing_the_old_colour_is_stuck_then_completes(
    world: World, op: str, error: Exception
) -> None:
    await deploy_blue(world)
    world.faults.at(op, 5, error=error)  # 10, 50, 100, drain, then blue out of the file
    with pytest.raises(RolloutStuck) as raised:
        await promote(world)
    assert raised.value.exit_code == 5
    assert world.containers.names(Colour.BLUE)  # never stopped while the file may still route it
    ended = await world.engine().promote(app=APP)
    assert ended.outcome is Outcome.DONE
    assert_settled(world, Colour.GREEN, "web:2")
    assert_invariants(world)


@pytest.mark.parametrize(
    ("op", "error"), [(WRITE, write_failed()), (CONFIRM, not_applied())], ids=["write", "confirm"]
)
@pytest.mark.parametrize("nth", [1, 2], ids=["traffic back", "new colour out"])
async def test_the_file_failing_when_going_back_is_stuck_then_aborts(
    world: World, op: str, error: Exception, nth: int
) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, 2, error=not_applied())  # step 2 fails: going back
    world.faults.at(op, 2 + nth, error=error)
    with pytest.raises(RolloutStuck, match="could not go back to blue") as raised:
        await promote(world)
    assert raised.value.exit_code == 5
    stuck = await world.store.active_rollout(APP)
    assert stuck is not None
    assert stuck.phase is Phase.ABORTING
    assert world.containers.names(Colour.GREEN)  # not stopped: the file may still route it
    ended = await world.engine().abort(app=APP)
    assert_went_back(world, ended, Outcome.ABORTED, "aborted by request")


# ---------------------------------------------------------------- the process dies


# A cutover calls START once, WRITE and CONFIRM five times (three steps, the drain, the clean-up), STOP once.
KILLS = [(START, 1), *((WRITE, n) for n in range(1, 6)), *((CONFIRM, n) for n in range(1, 6)), (STOP, 1)]


@pytest.mark.parametrize(("op", "nth"), KILLS, ids=[f"{op}-{n}" for op, n in KILLS])
@pytest.mark.parametrize("then", ["promote", "abort"])
async def test_killed_at_a_side_effect_then_a_new_process_converges(
    world: World, op: str, nth: int, then: str
) -> None:
    await deploy_blue(world)
    world.faults.at(op, nth, error=Killed(f"{op} #{nth}"))
    with pytest.raises(Killed):
        await promote(world)
    left = await world.store.active_rollout(APP)
    assert left is not None  # recorded: the next process knows
    if then == "promote":
        ended = await world.engine().promote(app=APP)
        assert ended.outcome is Outcome.DONE
    else:
        ended = await world.engine().abort(app=APP)
        assert ended.outcome is (Outcome.ABORTED if left.phase in ABORTABLE else Outcome.DONE)
    assert ended.id == left.id
    if ended.outcome is Outcome.DONE:
        assert_settled(world, Colour.GREEN, "web:2")
    else:
        assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


# ---------------------------------------------------------------- decisions: gate, analysis, abort


GATE = "    confirm: {url: http://gate.example/confirm, secret_env: TS_TEST_SECRET}\n"


async def test_a_confirm_gate_that_says_no_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_TEST_SECRET", "s3cret")
    with fresh_world(extra=GATE) as world:
        await deploy_blue(world)
        world.notifier.gate_answer = ConfirmDenied(
            url="http://gate", detail="HTTP 403: change freeze", answered=True
        )
        ended = await promote(world)
        assert_went_back(world, ended, Outcome.ABORTED, "change freeze")
        assert world.notifier.gate_asked[-1] == {Colour.BLUE: 90, Colour.GREEN: 10}  # before anything moved
        assert all(Colour.GREEN not in a.routing.weights() for a in world.publisher.asked)


async def test_a_confirm_gate_that_cannot_be_reached_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_TEST_SECRET", "s3cret")
    with fresh_world(extra=GATE) as world:
        await deploy_blue(world)
        world.notifier.gate_answer = ConfirmDenied(
            url="http://gate", detail="no answer within 1s", answered=False
        )
        ended = await promote(world)
        assert_went_back(world, ended, Outcome.FAILED, "did not confirm")


async def test_a_new_colour_failing_its_analysis_goes_back() -> None:
    with fresh_world(extra=ANALYSIS) as world:
        await deploy_blue(world)
        world.metrics.error_rate[Colour.GREEN] = 0.5
        ended = await promote(world)
        assert_went_back(world, ended, Outcome.FAILED, "analysis failed at step 1/3 (10% on green)")


async def test_an_abort_from_another_process_goes_back(world: World) -> None:
    await deploy_blue(world)
    driver = world.engine()
    following = asyncio.Event()
    world.faults.at(CONFIRM, action=following.set)  # at 10%, held for 5 s
    running = asyncio.create_task(driver.promote(app=APP, image="web:2", pause=5.0))
    await following.wait()
    ended = await world.engine().abort(app=APP, reason="stop it")  # follows the driver until it is back
    assert_went_back(world, ended, Outcome.ABORTED, "stop it")
    assert (await running).id == ended.id


async def test_an_interrupt_goes_back_at_the_next_safe_point(world: World) -> None:
    await deploy_blue(world)
    engine = world.engine()
    world.faults.at(CONFIRM, 2, action=lambda: engine.interrupt("interrupted by SIGTERM"))
    # The safe points are the holds (and waits longer than POLL): a step held for a moment has one.
    ended = await engine.promote(app=APP, image="web:2", pause=0.02)
    assert_went_back(world, ended, Outcome.ABORTED, "interrupted by SIGTERM")
