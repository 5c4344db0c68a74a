"""Release hooks in the engine's state machine, over the fakes: where each runs, what a failure, a timeout, an
abort or a kill does (invariant 14 (docs/ARCHITECTURE.md)). Against real Docker: tests/integration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import assert_invariants, assert_settled, deploy_blue
from tests.support.fakes import APP, EXEC, RUN_ONCE, START, STOP, Killed, Script, World, fresh_world
from trafficshift.models import Colour, Outcome, Phase, Rollout
from trafficshift.reconcile import reconcile_app

MIGRATE = ("./manage.py", "migrate")
FINISH_JOBS = ("finish-jobs",)
WARM = ("warm-cache",)
ONE_OFF = f"{APP}-pre_deploy"

HOOKS = """\
    hooks:
      pre_deploy: {command: ["./manage.py", "migrate"], timeout: 2s}
      pre_stop: {command: [finish-jobs], timeout: 2s}
      post_deploy: {command: [warm-cache], timeout: 2s}
"""


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world(extra=HOOKS) as w:
        yield w


async def promote(world: World) -> Rollout:
    return await world.engine().promote(app=APP, image="web:2")


def messages(world: World, rollout_id: str) -> list[str]:
    return [e.message for e in world.records.events(rollout_id=rollout_id)]


def ran(world: World, command: tuple[str, ...]) -> list[str]:
    return [r.where for r in world.containers.ran if r.command == command]


# ---------------------------------------------------------------- pre_deploy


async def test_pre_deploy_runs_to_its_end_in_a_one_off_before_any_new_container_starts(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[MIGRATE] = Script(lines=("applying 0042_users", "done"))
    world.faults.log.clear()
    done = await promote(world)

    assert done.outcome is Outcome.DONE
    (run,) = [r for r in world.containers.ran if r.command == MIGRATE][1:]  # the first was blue's deploy
    assert run.where == ONE_OFF
    # Before green existed, so before any weight on it: blue alone was there and confirmed.
    assert run.names == (f"{APP}-blue-1", f"{APP}-blue-2")
    assert run.confirmed == {Colour.BLUE: 100}
    assert world.faults.log.index(RUN_ONCE) < world.faults.log.index(START)
    said = messages(world, done.id)
    assert said.index("pre_deploy: applying 0042_users") < said.index("step 1/3: 10% on green")
    assert any(m.startswith("pre_deploy: exited 0 after") for m in said)
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.GREEN, "web:2")


async def test_a_failing_pre_deploy_goes_back_with_nothing_routed_and_its_output_in_the_reason(
    world: World,
) -> None:
    await deploy_blue(world)
    world.containers.scripts[MIGRATE] = Script(
        lines=("applying 0042_users", 'relation "users" already exists'), exit_code=3
    )
    asked, started = len(world.publisher.asked), world.faults.calls[START]
    failed = await promote(world)

    assert failed.outcome is Outcome.FAILED
    assert failed.reason is not None
    assert "pre_deploy exited 3" in failed.reason
    assert 'last output: applying 0042_users | relation "users" already exists' in failed.reason
    assert world.faults.calls[START] == started  # no green container was ever made
    assert all(Colour.GREEN not in a.routing.weights() for a in world.publisher.asked[asked:])
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


async def test_a_pre_deploy_past_its_timeout_is_removed_and_the_rollout_goes_back(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[MIGRATE] = Script(lines=("waiting for a lock",), exit_code=None)
    failed = await promote(world)

    assert failed.outcome is Outcome.FAILED
    assert failed.reason is not None
    assert "pre_deploy timed out after 2s; last output: waiting for a lock" in failed.reason
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.BLUE, "web:1")


async def test_an_abort_during_pre_deploy_removes_its_one_off(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[MIGRATE] = Script(exit_code=None)
    started = asyncio.Event()
    world.faults.at(RUN_ONCE, action=started.set)
    running = asyncio.create_task(promote(world))
    await started.wait()
    assert ONE_OFF in world.containers.one_offs
    aborted = await world.engine().abort(app=APP)  # from another process: asks the driver, follows it

    assert aborted.outcome is Outcome.ABORTED
    assert (await running).outcome is Outcome.ABORTED
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.BLUE, "web:1")


async def test_a_kill_during_pre_deploy_is_aborted_cleanly(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(RUN_ONCE, error=Killed("kill -9 during pre_deploy"))
    with pytest.raises(Killed):
        await promote(world)
    interrupted = world.records.active_rollout(APP)
    assert interrupted is not None
    assert interrupted.phase is Phase.STARTING
    assert ONE_OFF in world.containers.one_offs  # nobody removed it: the process died

    aborted = await world.engine().abort(app=APP)
    assert aborted.outcome is Outcome.ABORTED
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


async def test_reconcile_removes_the_one_off_a_kill_during_pre_deploy_left(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(RUN_ONCE, error=Killed("kill -9 during pre_deploy"))
    with pytest.raises(Killed):
        await promote(world)
    assert ONE_OFF in world.containers.one_offs

    await reconcile_app(adapters=world.adapters(), app=APP)
    assert world.containers.one_offs == {}


async def test_a_kill_during_pre_deploy_is_resumed_by_running_it_again(world: World) -> None:
    await deploy_blue(world)
    world.faults.at(RUN_ONCE, error=Killed("kill -9 during pre_deploy"))
    with pytest.raises(Killed):
        await promote(world)
    done = await world.engine().promote(app=APP)

    assert done.outcome is Outcome.DONE
    assert ran(world, MIGRATE) == [ONE_OFF] * 3  # blue's deploy, the killed run, the resumed one
    assert world.containers.one_offs == {}
    assert_settled(world, Colour.GREEN, "web:2")
    assert_invariants(world)


async def test_a_resume_past_starting_does_not_run_pre_deploy_again(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = lambda e: e.phase is Phase.READY
    with pytest.raises(Killed):
        await promote(world)
    done = await world.engine().promote(app=APP)

    assert done.outcome is Outcome.DONE
    assert ran(world, MIGRATE) == [ONE_OFF] * 2  # blue's deploy and green's, once


# ---------------------------------------------------------------- pre_stop


async def test_pre_stop_runs_in_each_old_container_once_it_is_out_of_the_file_and_before_it_stops(
    world: World,
) -> None:
    await deploy_blue(world)
    world.containers.scripts[FINISH_JOBS] = Script(lines=("3 jobs left", "queue empty"))
    world.faults.log.clear()
    done = await promote(world)

    assert done.outcome is Outcome.DONE
    runs = [r for r in world.containers.ran if r.command == FINISH_JOBS]
    assert sorted(r.where for r in runs) == [f"{APP}-blue-1", f"{APP}-blue-2"]
    for run in runs:
        assert run.confirmed == {Colour.GREEN: 100}  # blue's weight 0, then out of the file: confirmed
        assert f"{APP}-blue-1" in run.names  # not stopped yet
    log = world.faults.log
    assert log.index(EXEC) < log.index(STOP)
    said = messages(world, done.id)
    assert f"pre_stop in {APP}-blue-1: queue empty" in said
    assert said.index(f"pre_stop in {APP}-blue-2: queue empty") < said.index("done")
    assert_settled(world, Colour.GREEN, "web:2")
    assert_invariants(world)


async def test_a_failing_pre_stop_is_a_warning_and_the_old_colour_is_stopped_anyway(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[FINISH_JOBS] = Script(lines=("worker busy",), exit_code=None)
    done = await promote(world)

    assert done.outcome is Outcome.DONE
    said = messages(world, done.id)
    warning = f"warning: pre_stop in {APP}-blue-1 timed out after 2s; last output: worker busy;"
    assert any(m.startswith(warning) for m in said), said
    assert_settled(world, Colour.GREEN, "web:2")


async def test_a_resume_in_cleaning_runs_pre_stop_in_the_old_containers_left(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = lambda e: e.phase is Phase.CLEANING
    with pytest.raises(Killed):
        await promote(world)
    assert ran(world, FINISH_JOBS) == []  # recorded, not acted on
    done = await world.engine().abort(app=APP)  # past the point of return: completes it

    assert done.outcome is Outcome.DONE
    assert sorted(ran(world, FINISH_JOBS)) == [f"{APP}-blue-1", f"{APP}-blue-2"]
    assert_settled(world, Colour.GREEN, "web:2")


# ---------------------------------------------------------------- post_deploy


async def test_post_deploy_runs_in_one_new_container_after_done(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[WARM] = Script(lines=("warmed 12 pages",))
    done = await promote(world)

    assert done.outcome is Outcome.DONE
    assert ran(world, WARM)[-1] == f"{APP}-green-1"
    events = world.records.events(rollout_id=done.id)
    said = [e.message for e in events]
    assert said.index("done") < said.index(f"post_deploy in {APP}-green-1: warmed 12 pages")
    assert all(e.phase is Phase.DONE for e in events[said.index("done") :])


async def test_a_failing_post_deploy_is_a_warning_and_the_rollout_stays_done(world: World) -> None:
    await deploy_blue(world)
    world.containers.scripts[WARM] = Script(lines=("cache unreachable",), exit_code=1)
    seen: list[str] = []
    done = await world.engine(on_event=lambda e: seen.append(e.message)).promote(app=APP, image="web:2")

    assert done.outcome is Outcome.DONE
    warning = (
        f"warning: post_deploy in {APP}-green-1 exited 1 after 0.0s; last output: cache unreachable;"
        " the rollout stays done"
    )
    assert warning in seen  # told to the CLI's output (and --json) as the event it is
    recorded = world.records.rollout(done.id)  # not reverted, no reason
    assert recorded is not None
    assert (recorded.outcome, recorded.phase, recorded.reason) == (Outcome.DONE, Phase.DONE, None)
    assert_settled(world, Colour.GREEN, "web:2")


async def test_no_hooks_no_runs() -> None:
    with fresh_world() as world:
        await deploy_blue(world)
        assert (await promote(world)).outcome is Outcome.DONE
        assert world.containers.ran == []
