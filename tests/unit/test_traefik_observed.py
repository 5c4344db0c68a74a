"""ObservedRouting.matches: a step counts as applied only when Traefik shows its exact content."""

from __future__ import annotations

import pytest

from trafficshift.models import Colour, ColourRoute, Pin, Routing
from trafficshift.traefik.api import ObservedRoute, ObservedRouter, ObservedRouting

BLUE, GREEN = Colour.BLUE, Colour.GREEN
A, B = "http://127.0.0.1:1", "http://127.0.0.1:2"
EXPECTED = Routing(app="web", routes=(ColourRoute(BLUE, 90, (A, B)), ColourRoute(GREEN, 10, (B,))))


def child(colour: Colour | None, weight: int, *servers: str, status: str | None = "enabled") -> ObservedRoute:
    name = f"web-{colour}" if colour else "web-red"
    return ObservedRoute(service=name, colour=colour, weight=weight, servers=servers, status=status)


MAIN = ObservedRouter(name="web", service="web", rule="Host(`web`)", status="enabled")


def seen(
    *routes: ObservedRoute, status: str = "enabled", routers: tuple[ObservedRouter, ...] = (MAIN,)
) -> ObservedRouting:
    return ObservedRouting(
        app="web", present=True, status=status, routes=routes, routers={r.name: r for r in routers}
    )


@pytest.mark.parametrize(
    ("observed", "applied"),
    [
        (seen(child(BLUE, 90, A, B), child(GREEN, 10, B)), True),
        (seen(child(GREEN, 10, B), child(BLUE, 90, B, A)), True),  # order does not matter
        (seen(child(BLUE, 100, A, B), child(GREEN, 0, B)), False),  # old weights
        (seen(child(BLUE, 90, A), child(GREEN, 10, B)), False),  # old servers
        (seen(child(BLUE, 90, A, B)), False),  # a colour missing
        (seen(child(BLUE, 90, A, B), child(GREEN, 10, B), child(None, 0, A)), False),  # a stranger
        (seen(child(BLUE, 90, A, B), child(GREEN, 10, status=None)), False),  # child not loaded yet
        (seen(child(BLUE, 90, A, B), child(GREEN, 10, B), status="disabled"), False),
        (seen(child(BLUE, 90, A, B), child(GREEN, 10, B, status="disabled")), False),
        (ObservedRouting(app="web", present=False), False),
    ],
)
def test_matches(observed: ObservedRouting, applied: bool) -> None:
    assert observed.matches(EXPECTED) is applied


def test_empty_routing_means_the_service_is_gone() -> None:
    gone = Routing(app="web", routes=())
    assert ObservedRouting(app="web", present=False).matches(gone)
    assert not seen(child(BLUE, 100, A)).matches(gone)


def test_routing_leaves_out_strangers() -> None:
    observed = seen(child(BLUE, 100, A), child(None, 0, B))
    assert observed.routing() == Routing(app="web", routes=(ColourRoute(BLUE, 100, (A,)),))


PIN = Pin(name="canary-always", colour=GREEN, rule="R", rank=2)
PINNED = Routing(app="web", routes=EXPECTED.routes, pins=(PIN,))
PIN_ROUTER = ObservedRouter(name="web-pin-canary-always", service="web-green", rule="R", status="enabled")
SPLIT = (child(BLUE, 90, A, B), child(GREEN, 10, B))


@pytest.mark.parametrize(
    ("observed", "expected", "applied"),
    [
        (seen(*SPLIT, routers=()), EXPECTED, False),  # the app's router not loaded yet
        (seen(*SPLIT, routers=(ObservedRouter(**{**MAIN.__dict__, "status": "disabled"}),)), EXPECTED, False),
        (seen(*SPLIT, routers=(MAIN, PIN_ROUTER)), PINNED, True),
        (seen(*SPLIT), PINNED, False),  # the pin not loaded yet
        (seen(*SPLIT, routers=(MAIN, PIN_ROUTER)), EXPECTED, False),  # a pin still there after its removal
        (
            seen(*SPLIT, routers=(MAIN, ObservedRouter(**{**PIN_ROUTER.__dict__, "service": "web-blue"}))),
            PINNED,
            False,
        ),
        (
            seen(*SPLIT, routers=(MAIN, ObservedRouter(**{**PIN_ROUTER.__dict__, "status": "disabled"}))),
            PINNED,
            False,
        ),
        (
            ObservedRouting(app="web", present=False, routers={"web-pin-x": PIN_ROUTER}),
            Routing("web", ()),
            False,
        ),
    ],
    ids=[
        "no router",
        "router in error",
        "pin shown",
        "pin missing",
        "pin left",
        "pin elsewhere",
        "pin in error",
        "gone but a pin",
    ],
)
def test_routers_must_be_the_expected_ones_and_serving(
    observed: ObservedRouting, expected: Routing, applied: bool
) -> None:
    assert observed.matches(expected) is applied
