"""What an engine reports: the events of the rollouts it drives or follows, from its first use on.

The store holds every process's events (the service runs many rollouts at once). An engine reads only those
of its own rollouts, by rollout: reading every app's after each commit costs O(apps²) on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import trafficshift.engine as engine_module
from tests.support.checks import deploy_blue, phase_is
from tests.support.fakes import APP, CONFIRM, Killed, World, fresh_world
from trafficshift.models import AppState, Colour, Event, Live, Outcome, Phase


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world() as w:
        yield w


async def _another_apps_rollout(world: World) -> str:
    """Another app's rollout, recorded by another engine meanwhile: three events of its own."""
    other = await world.store.create_rollout(
        app="api",
        from_state=AppState(app="api"),
        to_colour=Colour.BLUE,
        to_image="api:1",
        steps=(100,),
        pause=0,
    )
    other = await world.store.advance(other, message="api ready", phase=Phase.READY)
    await world.store.advance(other, message="api at 100%", phase=Phase.SHIFTING, step=0)
    return other.id


async def test_only_its_own_rollouts_events_are_reported_each_read_by_rollout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deploy_blue(world)
    reads: list[dict[str, Any]] = []
    read_events = world.store.events

    async def events(**kwargs: Any) -> list[Event]:
        reads.append(kwargs)
        return await read_events(**kwargs)

    monkeypatch.setattr(world.store, "events", events)
    shifting = asyncio.Event()
    world.faults.at(CONFIRM, action=shifting.set)  # at 10%, held a moment
    seen: list[Event] = []
    running = asyncio.create_task(
        world.engine(on_event=seen.append).promote(app=APP, pause=0.05, image="web:2")
    )
    await shifting.wait()
    other = await _another_apps_rollout(world)
    done = await running

    assert done.outcome is Outcome.DONE
    assert other not in {e.rollout_id for e in [*seen, *world.notifier.events]}
    assert {e.rollout_id for e in seen} == {done.id}
    assert seen[0].phase is Phase.STARTING  # from its creation on
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    # What webhooks got is what the sinks got: each transition once.
    assert [e.seq for e in world.notifier.events if e.rollout_id == done.id] == [e.seq for e in seen]
    assert reads  # it did read
    assert all(read.get("rollout_id") == done.id for read in reads), reads


async def test_a_resumed_rollout_reports_from_the_engines_first_use_on(world: World) -> None:
    await deploy_blue(world)
    world.notifier.kill_after = phase_is(Phase.SHIFTING, step=1, confirmed=False)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2")
    before = world.records.last_event_seq()
    seen: list[Event] = []
    done = await world.engine(on_event=seen.append).promote(app=APP)
    assert done.outcome is Outcome.DONE
    assert seen  # its own transitions, from the resume on; none of the history before it
    assert min(e.seq for e in seen) == before + 1
    assert {e.rollout_id for e in seen} == {done.id}


async def test_an_engine_following_another_processs_rollout_reports_it_without_notifying(
    world: World,
) -> None:
    await deploy_blue(world)
    shifting = asyncio.Event()
    world.faults.at(CONFIRM, action=shifting.set)
    driver = asyncio.create_task(world.engine().promote(app=APP, image="web:2", pause=5.0))
    await shifting.wait()
    sent = len(world.notifier.events)
    followed: list[Event] = []
    ended = await world.engine(on_event=followed.append).abort(app=APP, reason="stop it")
    assert ended.outcome is Outcome.ABORTED
    assert (await driver).id == ended.id
    assert followed[-1].message == "aborted: stop it"
    assert {e.rollout_id for e in followed} == {ended.id}
    # The driver notified each transition once; the follower only printed them.
    notified = [e.seq for e in world.notifier.events[sent:]]
    assert notified == sorted(set(notified))
    assert set(notified) >= {e.seq for e in followed}


async def test_where_a_held_step_stands_is_reported_each_second_with_the_figures_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """on_live: the record's step and weights, the hold's clock, each replica's readiness, both colours'
    requests so far (analysis); the CLI's display and the API's progress frames draw from it."""
    monkeypatch.setattr(engine_module, "LIVE_EVERY", 0.05)
    analysis = "    analysis: {max_error_rate: 0.05, min_requests: 10, interval: 10s}\n"
    with fresh_world(extra=analysis) as world:
        await deploy_blue(world)
        lives: list[Live] = []
        done = await world.engine(on_live=lives.append).promote(
            app=APP, image="web:2", steps=(50, 100), pause=0.3
        )
        assert done.outcome is Outcome.DONE
    held = [live for live in lives if live.hold is not None and live.phase == "shifting"]
    assert len(held) >= 4, lives  # every LIVE_EVERY of the 0.3 s hold, between judgements (10 s apart)
    assert {(live.step, live.steps, live.hold[1] if live.hold else None) for live in held} == {(0, 2, 0.3)}
    assert [live.hold[0] for live in held if live.hold] == sorted(live.hold[0] for live in held if live.hold)
    assert held[-1].weights == {"blue": 50, "green": 50}
    assert held[-1].replicas == {"web-green-1": "ready", "web-green-2": "ready"}
    figures = held[-1].figures
    assert set(figures) == {"blue", "green"}
    assert figures["green"].requests > 0
    assert figures["green"].error_rate == 0.0
    assert figures["green"].p95 is not None
    # The transitions are reported too (the display's step and weights between holds).
    assert [live.phase for live in lives if live.hold is None][-1] == "cleaning"
