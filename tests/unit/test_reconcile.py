"""`reconcile` and the engine over a fake Docker whose containers come back on new ports after a restart.

`containers.crash(colour)` is `docker restart` in publish mode: every replica of the colour is on a new host
port, and reports `starting` until its second inspection there (routed before that, it would be unready:
`assert_invariants` checks every routing asked for against the containers that were ready at that moment).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import assert_invariants, assert_settled, deploy_blue, phase_is
from tests.support.fakes import APP, STATE, WRITE, Killed, World, fresh_world
from trafficshift.errors import LockedError, NoReadyServer, UsageError
from trafficshift.models import Colour, Outcome, Phase
from trafficshift.reconcile import describe, reconcile_app, reconciled_dict
from trafficshift.store.locks import FileLocks

BLUE, GREEN = Colour.BLUE, Colour.GREEN


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


def restart(world: World, colour: Colour) -> tuple[str, ...]:
    """`docker restart` of the colour's containers; returns the servers the file still routes."""
    before = tuple(sorted(world.publisher.file().servers()))
    world.containers.crash(colour)
    assert not set(before) & set(world.containers.urls(colour))  # new ports
    return before


def never_ready_again(world: World, colour: Colour) -> None:
    """The colour's restarted containers stay `starting` (e.g. a database they need is gone)."""
    for c in world.containers.containers.values():
        if c.colour is colour:
            c.health, c.warming = "starting", 0
    world.set_start_timeout(0.05)


async def test_a_file_in_step_is_left_alone_without_a_probe(world: World) -> None:
    await deploy_blue(world)
    writes, probes = world.faults.calls[WRITE], world.faults.calls[STATE]
    done = await reconcile_app(adapters=world.adapters(), app=APP)
    assert not done.changed
    assert (world.faults.calls[WRITE], world.faults.calls[STATE]) == (writes, probes)
    assert "already routes blue=100% at" in describe(done)


async def test_the_restarted_replicas_are_probed_then_routed_where_they_are(world: World) -> None:
    await deploy_blue(world)
    old = restart(world, BLUE)
    status = await world.engine().status(APP)
    assert status["file"]["stale"] == list(old)
    assert [c["name"] for c in status["file"]["unrouted"]] == ["web-blue-1", "web-blue-2"]

    done = await reconcile_app(adapters=world.adapters(), app=APP)
    assert done.changed
    assert_settled(world, BLUE, "web:1")  # the file routes blue where it is now, confirmed
    assert_invariants(world)  # and only once each replica was healthy there
    assert reconciled_dict(done)["before"] == list(old)
    assert (await world.engine().status(APP))["file"]["in_sync"]
    # Again: nothing left to do.
    assert not (await reconcile_app(adapters=world.adapters(), app=APP)).changed


async def test_no_ready_container_for_a_colour_that_takes_traffic_exits_3_and_writes_nothing(
    world: World,
) -> None:
    await deploy_blue(world)
    old = restart(world, BLUE)
    never_ready_again(world, BLUE)
    writes = world.faults.calls[WRITE]
    with pytest.raises(NoReadyServer) as raised:
        await reconcile_app(adapters=world.adapters(), app=APP)
    assert raised.value.exit_code == 3
    assert "no ready blue container to take its share (blue=100%)" in str(raised.value)
    assert "web-blue-1 did not become ready at" in str(raised.value)
    assert world.faults.calls[WRITE] == writes
    assert tuple(sorted(world.publisher.file().servers())) == old


async def test_a_rollout_that_holds_the_app_exits_4(world: World) -> None:
    await deploy_blue(world)
    restart(world, BLUE)
    probes = world.faults.calls[STATE]
    held = FileLocks(world.config.state_dir).lock(APP)
    assert held.try_acquire()  # a rollout's lock (another open file: it conflicts in this process too)
    try:
        with pytest.raises(LockedError) as raised:
            await reconcile_app(adapters=world.adapters(), app=APP)
    finally:
        held.release()
    assert raised.value.exit_code == 4
    assert world.faults.calls[STATE] == probes  # nothing was probed


async def test_unknown_weights_exit_2_with_why(world: World) -> None:
    # No record (a lost state folder) and both colours run: nothing tells which one should serve.
    await world.containers.start_colour(app=world.spec, colour=BLUE, image="web:1")
    await world.containers.start_colour(app=world.spec, colour=GREEN, image="web:2")
    with pytest.raises(UsageError) as raised:
        await reconcile_app(adapters=world.adapters(), app=APP)
    assert raised.value.exit_code == 2
    assert "weights are unknown" in str(raised.value)
    assert "blue and green run" in str(raised.value)
    assert world.faults.calls[WRITE] == 0


async def test_an_app_never_deployed_is_in_step(world: World) -> None:
    done = await reconcile_app(adapters=world.adapters(), app=APP)
    assert not done.changed
    assert "already routes nothing" in describe(done)
    assert world.faults.calls[WRITE] == 0


async def test_an_interrupted_rollout_is_routed_as_its_last_step_says_then_aborts(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.SHIFTING, step=0, confirmed=True)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    restart(world, BLUE)
    restart(world, GREEN)

    done = await reconcile_app(adapters=world.adapters(), app=APP)
    assert done.weights == {BLUE: 90, GREEN: 10}
    assert world.publisher.file().servers() == set(world.containers.urls(BLUE) + world.containers.urls(GREEN))
    assert_invariants(world)
    ended = await world.engine().abort(app=APP)
    assert ended.outcome is Outcome.ABORTED
    assert_settled(world, BLUE, "web:1")
    assert_invariants(world)


# ---------------------------------------------------------------- the engine on such a file


async def test_promote_routes_the_live_colour_where_it_is_first(world: World) -> None:
    await deploy_blue(world)
    restart(world, BLUE)
    asked = len(world.publisher.asked)
    ended = await world.engine().promote(app=APP, image="web:2")
    assert ended.outcome is Outcome.DONE
    assert_settled(world, GREEN, "web:2")
    assert_invariants(world)
    first = world.publisher.asked[asked].routing  # before the rollout: blue alone, at its new ports
    assert [(r.colour, r.weight) for r in first.routes] == [(BLUE, 100)]


async def test_promote_refuses_with_exit_3_when_the_live_colour_is_not_ready(world: World) -> None:
    await deploy_blue(world)
    restart(world, BLUE)
    never_ready_again(world, BLUE)
    with pytest.raises(NoReadyServer) as raised:
        await world.engine().promote(app=APP, image="web:2")
    assert raised.value.exit_code == 3
    assert await world.store.active_rollout(APP) is None  # nothing recorded, nothing started
    assert world.containers.names(GREEN) == []
    assert len(await world.store.history(APP)) == 1


@pytest.mark.parametrize("then", ["abort", "promote"])
async def test_an_interrupted_rollout_resumes_or_aborts_with_the_old_colour_on_new_ports(
    world: World, then: str
) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.SHIFTING, step=0, confirmed=True)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    restart(world, BLUE)  # a reboot, say, before anyone runs `abort` or `promote`
    engine = world.engine()
    ended = await (engine.abort(app=APP) if then == "abort" else engine.promote(app=APP))
    if then == "abort":
        assert ended.outcome is Outcome.ABORTED
        assert_settled(world, BLUE, "web:1")
    else:
        assert ended.outcome is Outcome.DONE
        assert_settled(world, GREEN, "web:2")
    assert_invariants(world)
