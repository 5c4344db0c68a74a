"""What the engine's unit tests check of a fake world after a run (tests.support.fakes).

Registered for pytest's assertion rewriting in tests/conftest.py, so that a failed check shows its values.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.fakes import APP, World
from trafficshift.models import Colour, Event, Outcome, Phase

EventMatch = Callable[[Event], bool]


def phase_is(phase: Phase, *, step: int | None = None, confirmed: bool | None = None) -> EventMatch:
    """Transitions to `phase` (at `step`; its recording, or its confirmation by Traefik)."""

    def match(event: Event) -> bool:
        return (
            event.phase is phase
            and (step is None or event.step == step)
            and (confirmed is None or confirmed == ("confirmed" in event.message))
        )

    return match


def says(phase: Phase, text: str) -> EventMatch:
    """Transitions in `phase` whose message says `text`."""

    def match(event: Event) -> bool:
        return event.phase is phase and text in event.message

    return match


def assert_settled(world: World, colour: Colour | None, image: str | None) -> None:
    """No rollout in progress; `colour` serves alone: its file (confirmed by Traefik), only its containers."""
    assert world.records.active_rollout(APP) is None
    live = world.live()
    assert (live.colour, live.image) == (colour, image)
    file = world.publisher.file()
    if colour is None:
        assert file.routes == ()
        assert world.containers.names() == []
    else:
        assert [(r.colour, r.weight, r.servers) for r in file.routes] == [
            (colour, 100, world.containers.urls(colour))
        ]
        assert world.containers.names() == [f"{APP}-{colour}-1", f"{APP}-{colour}-2"]
        assert world.containers.images() == {image}
    assert world.publisher.confirmed[-1] == file
    assert APP not in world.publisher.mirrors  # no mirror outlives its rollout


def assert_invariants(world: World) -> None:
    """No weighted colour without ready servers and no file removed while a colour serves (in every routing
    asked for); no colour stopped while its file or Traefik still listed it."""
    assert world.stopped_while_routed == []
    assert world.publisher.dangling == []  # no mirror of a colour the app's file does not list
    for asked in world.publisher.asked:
        for route in asked.routing.routes:
            if route.weight > 0:
                assert route.servers, asked
                assert set(route.servers) <= asked.ready_urls, asked
        if not asked.routing.routes:
            assert asked.live is None, asked


async def deploy_blue(world: World) -> None:
    """A first deploy without faults: blue (web:1) serves."""
    done = await world.engine().promote(app=APP)
    assert done.outcome is Outcome.DONE
    assert_settled(world, Colour.BLUE, "web:1")
