"""The names of the Traefik objects of an app (the contract's "Names" table), and their inverse."""

from __future__ import annotations

import pytest

from trafficshift.models import Colour
from trafficshift.traefik import names


def test_the_contract_names() -> None:
    assert names.router("web") == "web"
    assert names.weighted_service("web") == "web"
    assert names.colour_service("web", Colour.BLUE) == "web-blue"
    assert names.colour_service("web", Colour.GREEN) == "web-green"
    assert names.retry_middleware("web") == "web-retry"
    # Traefik's metrics label each colour with this; analysis and dashboards rely on it.
    assert names.qualified(names.colour_service("web", Colour.GREEN)) == "web-green@file"


@pytest.mark.parametrize(
    ("app", "service", "colour"),
    [
        ("web", "web-blue", Colour.BLUE),
        ("web", "web-green", Colour.GREEN),
        ("web-blue", "web-blue-green", Colour.GREEN),
        ("web", "web", None),  # the weighted service
        ("web", "web-retry", None),
        ("web", "web-blue-1", None),
        ("web", "api-blue", None),
        ("web", "web-blue@file", None),
        ("web-blue", "web-blue", None),
    ],
)
def test_colour_of_service_reads_back_only_a_colour_service_of_that_app(
    app: str, service: str, colour: Colour | None
) -> None:
    assert names.colour_of_service(app, service) is colour
