from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.factories import make_rollout
from trafficshift import plan, report
from trafficshift.models import AppState, Colour, ColourRoute, ContainerInfo, Outcome, Phase, Routing

BLUE, GREEN = Colour.BLUE, Colour.GREEN


def _container(
    colour: Colour, n: int = 1, *, running: bool = True, health: str | None = None
) -> ContainerInfo:
    url = f"http://127.0.0.1:{30000 + n + (100 if colour is GREEN else 0)}"
    return ContainerInfo(
        id=f"{colour}{n}",
        name=f"web-{colour}-{n}",
        app="web",
        colour=colour,
        image="img",
        running=running,
        health=health,
        url=url if running else None,
        probe_url=url if running else None,
    )


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ((10, 50, 100), None),
        ((100,), None),
        ((), "at least one"),
        ((10, 10, 100), "rise strictly"),
        ((50, 10, 100), "rise strictly"),
        ((10, 50), "end at 100"),
        ((0, 100), "1..100"),
        ((10, 101), "1..100"),
        ((True, 100), "1..100"),
    ],
)
def test_check_steps(steps: tuple[int, ...], problem: str | None) -> None:
    found = plan.check_steps(steps)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_parse_steps() -> None:
    assert plan.parse_steps("10,50,100") == (10, 50, 100)
    with pytest.raises(ValueError, match="comma-separated"):
        plan.parse_steps("10;100")
    with pytest.raises(ValueError, match="end at 100"):
        plan.parse_steps("10,50")


@given(st.integers(min_value=0, max_value=100))
def test_shift_weights_always_sum_to_100(percent: int) -> None:
    weights = plan.shift_weights(old=BLUE, new=GREEN, percent=percent)
    assert sum(weights.values()) == 100
    assert weights[GREEN] == percent


def test_first_deploy_gets_everything() -> None:
    assert plan.shift_weights(old=None, new=BLUE, percent=10) == {BLUE: 100}


def test_next_colour_alternates_and_starts_blue() -> None:
    assert plan.next_colour(AppState(app="web")) is BLUE
    assert plan.next_colour(AppState(app="web", colour=BLUE)) is GREEN
    assert plan.next_colour(AppState(app="web", colour=GREEN)) is BLUE


def test_routing_lists_only_colours_with_servers() -> None:
    routing = plan.routing_for(
        app="web", weights={BLUE: 90, GREEN: 10}, containers=[_container(BLUE, 1), _container(BLUE, 2)]
    )
    assert routing.weights() == {BLUE: 90}
    assert routing.routes[0].servers == ("http://127.0.0.1:30001", "http://127.0.0.1:30002")


def test_routing_leaves_out_stopped_and_unhealthy_containers() -> None:
    containers = [
        _container(BLUE, 1),
        _container(BLUE, 2, running=False),
        _container(GREEN, 1, health="unhealthy"),
    ]
    routing = plan.routing_for(app="web", weights={BLUE: 50, GREEN: 50}, containers=containers)
    assert routing.weights() == {BLUE: 50}
    assert routing.routes[0].servers == ("http://127.0.0.1:30001",)


def test_routing_ignores_colours_without_weight_entry() -> None:
    # A new colour that is starting has containers but no weight yet: it must not be routed, as
    # invariant 1 (docs/ARCHITECTURE.md) says.
    routing = plan.routing_for(
        app="web", weights={BLUE: 100}, containers=[_container(BLUE), _container(GREEN)]
    )
    assert routing.weights() == {BLUE: 100}


def test_current_weights_prefers_the_rollout_then_the_state_then_labels() -> None:
    state = AppState(app="web", colour=BLUE, image="a:1")
    assert plan.current_weights(state, make_rollout()) == {BLUE: 90, GREEN: 10}
    assert plan.current_weights(state, None) == {BLUE: 100}
    assert plan.current_weights(AppState(app="web"), None, [_container(GREEN)]) == {GREEN: 100}
    both = [_container(GREEN), _container(BLUE)]
    assert plan.current_weights(AppState(app="web"), None, both) == {}
    assert plan.current_weights(AppState(app="web"), None, []) == {}


def test_known_weights_are_none_only_when_nothing_records_them() -> None:
    both = [_container(BLUE), _container(GREEN)]
    unrecorded, undeployed = AppState(app="web"), AppState(app="web", recorded=True)
    assert plan.known_weights(unrecorded, None, both) is None  # a lost state folder, both colours up
    assert plan.known_weights(unrecorded, None, []) is None
    assert plan.known_weights(unrecorded, None, [_container(GREEN)]) == {GREEN: 100}
    assert plan.known_weights(undeployed, None, both) == {}  # the record says: route nothing
    assert plan.known_weights(unrecorded, make_rollout(), both) == {BLUE: 90, GREEN: 10}


def test_rollback_image_is_the_image_before_the_last_completed_promote() -> None:
    history = [
        make_rollout(id="r3", from_image="a:2", to_image="a:3", outcome=Outcome.ABORTED),
        make_rollout(id="r2", from_image="a:1", to_image="a:2", outcome=Outcome.DONE),
        make_rollout(id="r1", from_image=None, to_image="a:1", outcome=Outcome.DONE),
    ]
    assert plan.rollback_image(history) == "a:1"
    assert plan.rollback_image(history[2:]) is None
    assert plan.rollback_image([]) is None


def test_cleaning_is_past_the_point_of_return() -> None:
    assert Phase.CLEANING not in plan.ABORTABLE
    assert Phase.DRAINING in plan.ABORTABLE


def test_unserved_names_each_weighted_colour_without_a_server() -> None:
    blue = _container(Colour.BLUE)
    routing = plan.routing_for(app="web", weights={Colour.BLUE: 50, Colour.GREEN: 50}, containers=[blue])
    assert plan.unserved({Colour.BLUE: 50, Colour.GREEN: 50}, routing) == [Colour.GREEN]
    assert plan.unserved({Colour.BLUE: 100, Colour.GREEN: 0}, routing) == []  # weight 0 needs no server
    empty = plan.routing_for(app="web", weights={Colour.GREEN: 100}, containers=[blue])
    assert empty.routes == ()  # written, this would delete the app's file
    assert plan.unserved({Colour.GREEN: 100}, empty) == [Colour.GREEN]
    assert plan.unserved({}, empty) == []  # nothing deployed: no file is right


def test_only_trusted_urls_of_containers_that_can_serve_are_routed() -> None:
    # Invariant 1 (docs/ARCHITECTURE.md): a URL in the file or seen ready is trusted; a restarted replica
    # (new URL) is not.
    blue, green, stopped = _container(BLUE, 1), _container(GREEN, 1), _container(BLUE, 2, running=False)
    unhealthy = _container(BLUE, 3, health="unhealthy")
    everything = {"http://127.0.0.1:30001", "http://127.0.0.1:30101", "http://127.0.0.1:30003"}
    assert plan.trusted_servers([blue, green, stopped, unhealthy], trusted=everything) == [blue, green]
    assert plan.trusted_servers([blue, green], trusted={"http://127.0.0.1:30101"}) == [green]
    assert plan.trusted_servers([blue, green], trusted=set()) == []
    assert [plan.server_url(c) for c in (blue, stopped, unhealthy)] == ["http://127.0.0.1:30001", None, None]


def test_routings_that_differ_only_in_order_are_the_same_canonically() -> None:
    a = Routing(
        app="web",
        routes=(
            ColourRoute(colour=GREEN, weight=10, servers=("http://b", "http://a")),
            ColourRoute(colour=BLUE, weight=90, servers=("http://c",)),
        ),
    )
    b = Routing(
        app="web",
        routes=(
            ColourRoute(colour=BLUE, weight=90, servers=("http://c",)),
            ColourRoute(colour=GREEN, weight=10, servers=("http://a", "http://b")),
        ),
    )
    assert a != b
    assert a.canonical() == b.canonical() == b
    assert a.servers() == {"http://a", "http://b", "http://c"}
    other_weight = Routing(app="web", routes=(replace(b.routes[0], weight=80), b.routes[1]))
    assert other_weight.canonical() != a.canonical()
    other_server = Routing(app="web", routes=(b.routes[0], replace(b.routes[1], servers=("http://a",))))
    assert other_server.canonical() != a.canonical()


def test_weights_read_the_same_everywhere() -> None:
    assert report.weights_text({GREEN: 10, BLUE: 90}) == "blue=90% green=10%"
    assert report.weights_text({"green": 100}) == "green=100%"  # as a JSON document gives them
    assert report.weights_text({}) == ""
