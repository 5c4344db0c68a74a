"""The Redis backend's keys: the file backend's document, flattened as Traefik's KV providers read it."""

from __future__ import annotations

import pytest

from tests.support.factories import make_app
from trafficshift.models import AppSpec, Colour, ColourRoute, Routing
from trafficshift.traefik import kv
from trafficshift.traefik.render import expected_document


def _doc(spec: AppSpec, weights: dict[Colour, int]) -> dict[str, object]:
    routing = Routing(
        app=spec.name,
        routes=tuple(
            ColourRoute(colour=c, weight=w, servers=(f"http://127.0.0.1:{9000 + i}",))
            for i, (c, w) in enumerate(weights.items())
        ),
    )
    return expected_document(app=spec, routing=routing, entrypoints=["web"])


def test_an_apps_document_flattens_into_traefiks_kv_layout() -> None:
    spec = make_app(name="web", health_path="/healthz")
    keys = kv.flatten(_doc(spec, {Colour.BLUE: 80, Colour.GREEN: 20}), root="traefik")
    assert keys["traefik/http/routers/web/rule"] == spec.rule
    assert keys["traefik/http/routers/web/entryPoints/0"] == "web"
    assert keys["traefik/http/routers/web/service"] == "web"
    assert keys["traefik/http/services/web/weighted/services/0/name"] == "web-blue"
    assert keys["traefik/http/services/web/weighted/services/1/weight"] == "20"
    assert keys["traefik/http/services/web-green/loadBalancer/servers/0/url"] == "http://127.0.0.1:9001"
    assert keys["traefik/http/services/web-green/loadBalancer/passHostHeader"] == "true"
    # An empty mapping is the key set to "true" (Traefik 3.7 leaves "" unset).
    assert keys["traefik/http/services/web/weighted/healthCheck"] == "true"
    assert all(k.startswith("traefik/http/") for k in keys)


def test_a_change_sets_what_changed_and_deletes_what_went_away() -> None:
    spec = make_app(name="web")
    before = kv.flatten(_doc(spec, {Colour.BLUE: 90, Colour.GREEN: 10}), root="traefik")
    after = kv.flatten(_doc(spec, {Colour.GREEN: 100}), root="traefik")
    change = kv.change(before, after)
    assert change.set["traefik/http/services/web/weighted/services/0/name"] == "web-green"
    assert change.set["traefik/http/services/web/weighted/services/0/weight"] == "100"
    assert "traefik/http/routers/web/rule" not in change.set  # unchanged
    assert "traefik/http/services/web-blue/loadBalancer/servers/0/url" in change.delete
    assert "traefik/http/services/web/weighted/services/1/name" in change.delete
    assert kv.change(after, after).empty
    assert kv.change(after, {}).delete == tuple(sorted(after))


@pytest.mark.parametrize(
    ("doc", "root", "error"),
    [
        ({"http": {"routers": {"a/b": {"rule": "x"}}}}, "traefik", "cannot be a KV path segment"),
        ({"http": {"routers": {"a@file": {"rule": "x"}}}}, "traefik", "cannot be a KV path segment"),
        ({"http": {"routers": {"a": {"rule": "x\ny"}}}}, "traefik", "printable"),
        ({"http": {"routers": {"a": {"rule": ""}}}}, "traefik", "printable"),
        ({"http": {"routers": {"a": {"entryPoints": []}}}}, "traefik", "empty list"),
        ({"http": {"weight": 1.5}}, "traefik", "no KV form for float"),
        ({"http": {}}, "trafficshift/x", "root key"),
    ],
)
def test_values_traefik_could_not_read_back_are_refused_before_any_write(
    doc: dict[str, object], root: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        kv.flatten(doc, root=root)
