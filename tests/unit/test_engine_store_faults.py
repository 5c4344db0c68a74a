"""The state store failing mid-rollout (a full disk, no file descriptors left): exit 5, never exit 1.

Exit 1 says that all traffic is back on the old colour, confirmed, and recorded as such. A store that fails
while a rollout goes back, or when its end is recorded, leaves a rollout that is still active in the record:
that is RolloutStuck (exit 5; `status` shows it interrupted), and `abort` completes it once the store works
again. Over the engine's in-memory fakes (tests/support/fakes.py) with the real store, made to fail.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import assert_invariants, assert_settled, deploy_blue, phase_is
from tests.support.fakes import APP, CONFIRM, World, fresh_world, not_applied
from trafficshift.errors import RolloutStuck, StoreUnavailable
from trafficshift.models import Colour, Outcome, Phase, Rollout
from trafficshift.store.aio import AsyncStateStore

WRITES = ("advance", "finish", "create_rollout", "request_abort")
READS = ("rollout", "active_rollout", "events")

ERRORS = {
    "disk full": lambda: sqlite3.OperationalError("database or disk is full"),
    "no descriptors": lambda: OSError(errno.EMFILE, "Too many open files"),
}


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


class Broken:
    """Makes the world's store fail as a full disk does, from now on, until `fix()`."""

    def __init__(self, store: AsyncStateStore, error: Callable[[], Exception]) -> None:
        self.store = store
        self.error = error
        self.broken: list[str] = []

    def fail(self, *methods: str) -> None:
        for name in methods:
            if name in self.broken:
                continue

            async def failing(*args: Any, **kwargs: Any) -> Any:
                raise self.error()

            setattr(self.store, name, failing)  # the instance's attribute hides the class's method
            self.broken.append(name)

    def fix(self) -> None:
        for name in self.broken:
            delattr(self.store, name)
        self.broken.clear()


@pytest.fixture(params=sorted(ERRORS))
def broken(request: pytest.FixtureRequest, world: World) -> Iterator[Broken]:
    b = Broken(world.store, ERRORS[request.param])
    try:
        yield b
    finally:
        b.fix()


async def _promote(world: World) -> Rollout:
    return await world.engine().promote(app=APP, image="web:2", pause=0.05)


async def test_the_store_failing_once_traffic_is_back_is_stuck_then_abort_records_it(
    world: World, broken: Broken
) -> None:
    await deploy_blue(world)
    world.faults.at(CONFIRM, 2, error=not_applied())  # step 2 not confirmed: going back
    # The revert goes through; recording its end fails.
    removing = [False]

    def on_removing() -> None:
        removing[0] = True
        broken.fail("finish")

    world.notifier.when(lambda e: e.phase is Phase.ABORTING and "removing green" in e.message, on_removing)
    with pytest.raises(
        RolloutStuck, match="all traffic is back on blue, but its end could not be recorded"
    ) as raised:
        await _promote(world)
    assert removing[0]
    assert raised.value.exit_code == 5
    assert "run `trafficshift abort web`" in str(raised.value)
    stuck = await world.store.active_rollout(APP)
    assert stuck is not None
    assert stuck.phase is Phase.ABORTING  # the record says what `status` shows: an interrupted abort
    assert world.publisher.file().weights() == {Colour.BLUE: 100}
    assert world.containers.names(Colour.GREEN) == []

    broken.fix()
    ended = await world.engine().abort(app=APP)
    assert (ended.id, ended.outcome) == (stuck.id, Outcome.ABORTED)
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


@pytest.mark.parametrize("reads_too", [False, True], ids=["writes fail", "reads fail too"])
async def test_the_store_failing_mid_shift_is_stuck_then_abort_converges(
    world: World, broken: Broken, reads_too: bool
) -> None:
    await deploy_blue(world)
    # Once step 1 (10% on green) is confirmed, the disk is full: the next step cannot be recorded, nor can
    # going back.
    world.notifier.when(
        phase_is(Phase.SHIFTING, step=0, confirmed=True),
        lambda: broken.fail(*WRITES, *(READS if reads_too else ())),
    )
    with pytest.raises(RolloutStuck) as raised:
        await _promote(world)
    assert raised.value.exit_code == 5
    said = str(raised.value)
    assert "run `trafficshift abort web`" in said, said
    assert ("cannot be read" in said) == reads_too, said
    assert ("could not go back to blue" in said) == (not reads_too), said
    # Nothing was written after the fault: Traefik routes the last confirmed step, to servers that run.
    assert world.publisher.file().weights() == {Colour.BLUE: 90, Colour.GREEN: 10}
    assert world.containers.names(Colour.GREEN)

    broken.fix()
    stuck = await world.store.active_rollout(APP)
    assert stuck is not None
    ended = await world.engine().abort(app=APP)
    assert (ended.id, ended.outcome) == (stuck.id, Outcome.ABORTED)
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)


async def test_the_store_failing_to_record_the_end_of_a_done_rollout_is_stuck_then_promote_completes(
    world: World, broken: Broken
) -> None:
    await deploy_blue(world)
    world.notifier.when(phase_is(Phase.CLEANING), lambda: broken.fail("finish"))
    with pytest.raises(RolloutStuck, match="run `trafficshift promote web` to complete it") as raised:
        await _promote(world)
    assert raised.value.exit_code == 5
    broken.fix()
    ended = await world.engine().promote(app=APP)
    assert ended.outcome is Outcome.DONE
    assert_settled(world, Colour.GREEN, "web:2")
    assert_invariants(world)


async def test_the_store_failing_before_a_rollout_is_recorded_is_exit_3_and_nothing_changes(
    world: World, broken: Broken
) -> None:
    await deploy_blue(world)
    broken.fail("create_rollout")
    with pytest.raises(StoreUnavailable, match=r"failed before anything changed.*nothing changed") as raised:
        await _promote(world)
    assert raised.value.exit_code == 3  # was "internal error", exit 1: read as "traffic is back"
    assert world.containers.names(Colour.GREEN) == []
    assert world.publisher.file().weights() == {Colour.BLUE: 100}
    broken.fix()
    assert await world.store.active_rollout(APP) is None
    assert (await _promote(world)).outcome is Outcome.DONE


async def test_abort_whose_first_read_fails_is_exit_3_then_converges(world: World, broken: Broken) -> None:
    await deploy_blue(world)
    world.notifier.when(phase_is(Phase.SHIFTING, step=0, confirmed=True), lambda: broken.fail(*WRITES))
    with pytest.raises(RolloutStuck):
        await _promote(world)
    broken.fail(*READS)
    with pytest.raises(StoreUnavailable) as raised:
        await world.engine().abort(app=APP)
    assert raised.value.exit_code == 3
    assert world.publisher.file().weights() == {Colour.BLUE: 90, Colour.GREEN: 10}  # nothing moved
    broken.fix()
    ended = await world.engine().abort(app=APP)
    assert ended.outcome is Outcome.ABORTED
    assert_settled(world, Colour.BLUE, "web:1")
    assert_invariants(world)
