"""Drift between an app's dynamic file and its containers, as `status` reports it (pure)."""

from __future__ import annotations

import pytest

from tests.support.factories import make_rollout
from trafficshift.drift import find_drift
from trafficshift.models import AppState, Colour, ColourRoute, ContainerInfo, Routing
from trafficshift.report import app_status, format_status

BLUE, GREEN = Colour.BLUE, Colour.GREEN


def _c(
    colour: Colour, n: int, port: int | None, *, running: bool = True, health: str | None = None
) -> ContainerInfo:
    url = f"http://127.0.0.1:{port}" if port else None
    return ContainerInfo(
        id=f"{colour}{n}",
        name=f"web-{colour}-{n}",
        app="web",
        colour=colour,
        image="web:1",
        running=running,
        health=health,
        url=url,
        probe_url=url,
    )


def _file(*routes: tuple[Colour, int, tuple[int, ...]]) -> Routing:
    return Routing(
        app="web",
        routes=tuple(
            ColourRoute(colour=c, weight=w, servers=tuple(f"http://127.0.0.1:{p}" for p in ports))
            for c, w, ports in routes
        ),
    )


U = "http://127.0.0.1:{}".format


@pytest.mark.parametrize(
    ("listed", "weights", "containers", "stale", "unrouted"),
    [
        # In step: the file routes each running container where it is.
        (_file((BLUE, 100, (1, 2))), {BLUE: 100}, [_c(BLUE, 1, 1), _c(BLUE, 2, 2)], [], []),
        # `docker restart` in publish mode: both replicas on new host ports, the file on the old ones.
        (
            _file((BLUE, 100, (1, 2))),
            {BLUE: 100},
            [_c(BLUE, 1, 3), _c(BLUE, 2, 4)],
            [U(1), U(2)],
            ["web-blue-1", "web-blue-2"],
        ),
        # One replica restarted, and given the other one's old port: only the freed one is stale.
        (_file((BLUE, 100, (1, 2))), {BLUE: 100}, [_c(BLUE, 1, 2), _c(BLUE, 2, 5)], [U(1)], ["web-blue-2"]),
        # A stopped container answers nowhere: its server is stale, and it is not missing from the file.
        (
            _file((BLUE, 100, (1, 2))),
            {BLUE: 100},
            [_c(BLUE, 1, 1), _c(BLUE, 2, None, running=False)],
            [U(2)],
            [],
        ),
        # An unhealthy container that the file still lists is not stale (it is there); nor is it missing.
        (_file((BLUE, 100, (1,))), {BLUE: 100}, [_c(BLUE, 1, 1), _c(BLUE, 2, 2, health="unhealthy")], [], []),
        # A new colour that is starting (not in the weights yet) is not reported as missing.
        (_file((BLUE, 100, (1,))), {BLUE: 100}, [_c(BLUE, 1, 1), _c(GREEN, 1, 7)], [], []),
        # A colour being drained (0%) is still listed: a replica of it that the file misses is reported.
        (
            _file((BLUE, 0, (1,)), (GREEN, 100, (7,))),
            {BLUE: 0, GREEN: 100},
            [_c(BLUE, 1, 1), _c(BLUE, 2, 2), _c(GREEN, 1, 7)],
            [],
            ["web-blue-2"],
        ),
        # No file at all while the store says blue serves: every blue container is missing from it.
        (Routing(app="web", routes=()), {BLUE: 100}, [_c(BLUE, 1, 1)], [], ["web-blue-1"]),
        # Undeployed, no file, nothing running: in step.
        (Routing(app="web", routes=()), {}, [], [], []),
    ],
)
def test_drift_names_stale_servers_and_unrouted_containers(
    listed: Routing,
    weights: dict[Colour, int],
    containers: list[ContainerInfo],
    stale: list[str],
    unrouted: list[str],
) -> None:
    drift = find_drift(listed=listed, weights=weights, containers=containers)
    assert list(drift.stale) == stale
    assert [c.name for c in drift.unrouted] == unrouted
    assert drift.in_sync == (not stale and not unrouted)
    assert drift.readable
    assert list(drift.servers) == sorted(listed.servers())


def test_an_unreadable_file_is_not_in_sync() -> None:
    drift = find_drift(listed=None, weights={BLUE: 100}, containers=[_c(BLUE, 1, 1)])
    assert not drift.readable
    assert not drift.in_sync


def _status(listed: Routing | None, *, interrupted: bool | None = None) -> str:
    rollout = None if interrupted is None else make_rollout(weights={BLUE: 100})
    doc = app_status(
        state=AppState(app="web", colour=BLUE, image="web:1", recorded=True),
        weights={BLUE: 100},
        rollout=rollout,
        interrupted=bool(interrupted),
        containers=[_c(BLUE, 1, 32805)],
        listed=listed,
    )
    return format_status(doc)


def test_status_says_which_server_no_container_serves_and_what_to_run() -> None:
    stale = _file((BLUE, 100, (32801,)))
    doc = app_status(
        state=AppState(app="web", colour=BLUE, image="web:1", recorded=True),
        weights={BLUE: 100},
        rollout=None,
        interrupted=False,
        containers=[_c(BLUE, 1, 32805)],
        listed=stale,
    )
    assert doc["file"] == {
        "in_sync": False,
        "readable": True,
        "servers": ["http://127.0.0.1:32801"],
        "stale": ["http://127.0.0.1:32801"],
        "unrouted": [{"name": "web-blue-1", "colour": "blue", "url": "http://127.0.0.1:32805"}],
    }
    text = format_status(doc)
    assert "file:       routes http://127.0.0.1:32801, which no container serves" in text
    assert "file:       does not route web-blue-1 at http://127.0.0.1:32805, which runs" in text
    assert "run `trafficshift reconcile web`" in text
    # Also for a rollout that nobody drives any more; not while one runs (its steps rewrite the file).
    assert "reconcile" in _status(stale, interrupted=True)
    assert "reconcile" not in _status(stale, interrupted=False)


def test_status_says_nothing_of_a_file_in_step() -> None:
    text = _status(_file((BLUE, 100, (32805,))))
    assert "file:" not in text
    assert "reconcile" not in text
    assert "cannot be read" in _status(None)


def test_status_shows_each_traefik_instance_of_a_fleet() -> None:
    views = {
        "http://t1:8080": {"blue": 100},
        "http://t2:8080": "Traefik API at http://t2:8080 is unreachable",
    }
    doc = app_status(
        state=AppState(app="web", colour=BLUE, image="web:1", recorded=True),
        weights={BLUE: 100},
        rollout=None,
        interrupted=False,
        containers=[_c(BLUE, 1, 32805)],
        listed=_file((BLUE, 100, (32805,))),
        views=views,
    )
    assert doc["traefik"] == views
    text = format_status(doc)
    assert "  traefik:    http://t1:8080  blue=100%" in text
    assert "  traefik:    http://t2:8080  Traefik API at http://t2:8080 is unreachable" in text
    one = {**doc, "traefik": {"http://t1:8080": {"blue": 100}}}
    assert "traefik:" not in format_status(one)  # one instance: `weights` says it
