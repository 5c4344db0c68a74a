"""ObservedRouting.matches: a step counts as applied only when Traefik shows its exact content."""

from __future__ import annotations

import pytest

from trafficshift.models import Colour, ColourRoute, Routing
from trafficshift.traefik.api import ObservedRoute, ObservedRouting

BLUE, GREEN = Colour.BLUE, Colour.GREEN
A, B = "http://127.0.0.1:1", "http://127.0.0.1:2"
EXPECTED = Routing(app="web", routes=(ColourRoute(BLUE, 90, (A, B)), ColourRoute(GREEN, 10, (B,))))


def child(colour: Colour | None, weight: int, *servers: str, status: str | None = "enabled") -> ObservedRoute:
    name = f"web-{colour}" if colour else "web-red"
    return ObservedRoute(service=name, colour=colour, weight=weight, servers=servers, status=status)


def seen(*routes: ObservedRoute, status: str = "enabled") -> ObservedRouting:
    return ObservedRouting(app="web", present=True, status=status, routes=routes)


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
