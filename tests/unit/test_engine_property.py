"""A property of the engine over random fault sequences (in-memory fakes, the real store and lock files).

Whatever fails, and wherever the process dies: no weighted colour is ever published without a ready server,
the app's file is never removed while a colour serves, and every run ends done, aborted/failed with the old
colour serving alone (exit 1), or recorded and resumable (RolloutStuck, exit 5; or the process died), after
which one `abort` or `promote` of a fresh process converges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import trafficshift.engine as engine_module
from tests.support.checks import assert_invariants, assert_settled, deploy_blue
from tests.support.fakes import (
    APP,
    CONFIG_TEXT,
    CONFIRM,
    MIRROR,
    NOTIFY,
    START,
    STATE,
    STOP,
    WRITE,
    Behaviour,
    Killed,
    World,
    fresh_world,
    not_applied,
    with_mirror,
    write_failed,
)
from trafficshift.containers import ContainerError
from trafficshift.errors import RolloutStuck
from trafficshift.models import Colour, Outcome, Rollout
from trafficshift.plan import ABORTABLE

ERRORS = {
    START: lambda: ContainerError("container web-x-1: Conflict"),
    STOP: lambda: ContainerError("container web-x-1: cannot stop"),
    STATE: lambda: ContainerError("container web-x-1: inspect failed"),
    WRITE: write_failed,
    CONFIRM: not_applied,
    MIRROR: not_applied,
}
OPS = [START, STOP, STATE, WRITE, CONFIRM, MIRROR, NOTIFY]


@dataclass(frozen=True)
class Fault:
    op: str
    nth: int
    kind: str  # "error" (not for NOTIFY), "kill" (the process dies), "crash" (the new colour's containers)


faults = st.sampled_from(OPS).flatmap(
    lambda op: st.builds(
        Fault,
        op=st.just(op),
        nth=st.integers(min_value=1, max_value=8),
        kind=st.sampled_from(["kill", "crash"] if op == NOTIFY else ["error", "kill", "crash"]),
    )
)


@dataclass(frozen=True)
class Scenario:
    first_deploy: bool
    behaviour: Behaviour
    pause: float
    faults: tuple[Fault, ...]
    then: str  # what the next process runs after a run that did not end: "promote" or "abort"
    mirror: bool  # a mirror phase before step 1 (`rollout.mirror`)


scenarios = st.builds(
    Scenario,
    first_deploy=st.booleans(),
    behaviour=st.sampled_from([Behaviour.READY] * 4 + [Behaviour.NEVER_READY, Behaviour.CRASHES]),
    pause=st.sampled_from([0.0, 0.003]),
    faults=st.lists(faults, max_size=4).map(tuple),
    then=st.sampled_from(["promote", "abort"]),
    mirror=st.booleans(),
)


def assert_ended(world: World, ended: Rollout, *, old: tuple[Colour | None, str | None], new: Colour) -> None:
    """Done: the new colour serves alone. Aborted or failed: the old one does (exit 1), confirmed."""
    assert ended.outcome is not None
    if ended.outcome is Outcome.DONE:
        assert_settled(world, new, "web:2")
    else:
        assert_settled(world, *old)


async def run(world: World, scenario: Scenario) -> None:
    if not scenario.first_deploy:
        await deploy_blue(world)
    live = world.live()
    old, new = (live.colour, live.image), Colour.GREEN if live.colour else Colour.BLUE
    world.containers.behaviour["web:2"] = scenario.behaviour
    if scenario.behaviour is Behaviour.NEVER_READY:
        world.set_start_timeout(0.02)

    def crash_at(op: str) -> Callable[[], None]:
        def crash() -> None:
            # Only while the engine still looks: once it wrote the file without the old colour (or the
            # rollout ended) nothing it does can notice (`serve` does, from Docker's events).
            rollout = world.records.active_rollout(APP)  # a fault's action cannot await
            if rollout is None or (rollout.phase not in ABORTABLE and op in (WRITE, CONFIRM, STOP)):
                return
            world.containers.crash(new)

        return crash

    for f in scenario.faults:
        if f.kind == "crash":
            world.faults.at(f.op, f.nth, action=crash_at(f.op))
        else:
            world.faults.at(f.op, f.nth, error=Killed() if f.kind == "kill" else ERRORS[f.op]())

    ended: Rollout | None = None
    try:
        ended = await world.engine().promote(app=APP, image="web:2", pause=scenario.pause)
    except Killed:
        event("first run: killed")
    except RolloutStuck as stuck:
        exit_code = stuck.exit_code
        assert exit_code == 5
        event("first run: stuck (exit 5)")
    if ended is None and await world.store.active_rollout(APP) is None:
        ended = (await world.store.history(APP))[0]  # it died once the end was recorded: that end stands
        assert ended.to_image == "web:2"
    assert_invariants(world)
    if ended is not None:
        event(f"first run: {ended.outcome}")
        assert_ended(world, ended, old=old, new=new)
        return

    world.faults.clear()  # the operator fixed the cause
    engine = world.engine()
    ended = await (engine.promote(app=APP) if scenario.then == "promote" else engine.abort(app=APP))
    event(f"then {scenario.then}: {ended.outcome}")
    assert_ended(world, ended, old=old, new=new)
    assert_invariants(world)


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios)
def test_random_faults_never_route_an_unready_server_and_always_converge(scenario: Scenario) -> None:
    note(repr(scenario))
    config_text = with_mirror(duration="3ms") if scenario.mirror else CONFIG_TEXT
    with fresh_world(config_text=config_text) as world, mock.patch.object(engine_module, "POLL", 0.002):
        asyncio.run(run(world, scenario))
