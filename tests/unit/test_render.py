"""render_dynamic: the file Traefik reads, for every shape of routing and any config value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trafficshift.errors import RenderCheckError
from trafficshift.models import AppSpec, Colour, ColourRoute, HealthSpec, Routing
from trafficshift.traefik.render import (
    go_duration,
    parse_dynamic,
    quote_yaml,
    render_dynamic,
)

BLUE, GREEN = Colour.BLUE, Colour.GREEN


def make_app(
    name: str = "web", *, rule: str = "Host(`web.localhost`)", health: HealthSpec | None = None, **kw: Any
) -> AppSpec:
    return AppSpec(
        name=name, image="example/web:1.0", port=8080, rule=rule, health=health or HealthSpec(), **kw
    )


def route(colour: Colour, weight: int, *servers: str) -> ColourRoute:
    return ColourRoute(
        colour=colour, weight=weight, servers=servers or (f"http://127.0.0.1:1900{len(colour)}",)
    )


def services_of(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(text)
    services: dict[str, Any] = doc["http"]["services"]
    return services


@pytest.mark.parametrize(
    ("routes", "weights"),
    [
        pytest.param((route(BLUE, 100),), [("web-blue", 100)], id="one colour"),
        pytest.param((route(BLUE, 90), route(GREEN, 10)), [("web-blue", 90), ("web-green", 10)], id="90/10"),
        pytest.param((route(BLUE, 0), route(GREEN, 100)), [("web-blue", 0), ("web-green", 100)], id="0/100"),
        pytest.param(
            (route(GREEN, 100), route(BLUE, 0)), [("web-green", 100), ("web-blue", 0)], id="order kept"
        ),
        pytest.param((route(GREEN, 100),), [("web-green", 100)], id="green alone"),
    ],
)
@pytest.mark.parametrize("health_path", [None, "/healthz"])
def test_render_table(
    routes: tuple[ColourRoute, ...], weights: list[tuple[str, int]], health_path: str | None
) -> None:
    app = make_app(health=HealthSpec(path=health_path, interval=1.0, timeout=0.5))
    routing = Routing(app="web", routes=routes)

    text = render_dynamic(app=app, routing=routing, entrypoints=["web"])

    doc = yaml.safe_load(text)
    assert doc["http"]["routers"] == {
        "web": {
            "rule": "Host(`web.localhost`)",
            "entryPoints": ["web"],
            "service": "web",
            "middlewares": ["web-retry"],
        }
    }
    assert doc["http"]["middlewares"] == {"web-retry": {"retry": {"attempts": 3, "initialInterval": "100ms"}}}
    services = doc["http"]["services"]
    assert set(services) == {"web"} | {name for name, _ in weights}
    assert [(s["name"], s["weight"]) for s in services["web"]["weighted"]["services"]] == weights
    for r in routes:
        balancer = services[f"web-{r.colour}"]["loadBalancer"]
        assert balancer["servers"] == [{"url": u} for u in r.servers]
        assert balancer["passHostHeader"] is True
        if health_path is None:
            assert "healthCheck" not in balancer
        else:
            assert balancer["healthCheck"] == {"path": "/healthz", "interval": "1s", "timeout": "500ms"}
    assert ("healthCheck" in services["web"]["weighted"]) is (health_path is not None)
    assert parse_dynamic(text) == routing


def test_several_servers_and_entrypoints() -> None:
    routing = Routing(app="api", routes=(route(BLUE, 25, "http://api-blue-1:80", "http://api-blue-2:80"),))
    text = render_dynamic(app=make_app("api"), routing=routing, entrypoints=["web", "websecure"])
    doc = yaml.safe_load(text)
    assert doc["http"]["routers"]["api"]["entryPoints"] == ["web", "websecure"]
    assert services_of(text)["api-blue"]["loadBalancer"]["servers"] == [
        {"url": "http://api-blue-1:80"},
        {"url": "http://api-blue-2:80"},
    ]


@pytest.mark.parametrize(
    ("routing", "entrypoints", "message"),
    [
        (Routing(app="web", routes=()), ["web"], "remove the dynamic file"),
        (Routing(app="other", routes=(route(BLUE, 100),)), ["web"], "routing is for"),
        (Routing(app="web", routes=(route(BLUE, 50), route(BLUE, 50))), ["web"], "listed twice"),
        (Routing(app="web", routes=(ColourRoute(BLUE, 100, ()),)), ["web"], "no servers"),
        (Routing(app="web", routes=(route(BLUE, -1),)), ["web"], "weight"),
        (Routing(app="web", routes=(route(BLUE, 100),)), [], "entrypoints"),
        (Routing(app="web", routes=(route(BLUE, 100),)), "web", "entrypoints"),
    ],
)
def test_bad_input_is_refused(routing: Routing, entrypoints: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_dynamic(app=make_app(), routing=routing, entrypoints=entrypoints)


def test_go_template_opening_is_escaped_not_emitted() -> None:
    # Config rejects `{{`; should one get through anyway, Traefik must not see a template action.
    app = make_app(rule="Path(`/{{.Secret}}`) || Path(`/{{{x`)")
    text = render_dynamic(
        app=app, routing=Routing(app="web", routes=(route(BLUE, 100),)), entrypoints=["web"]
    )
    assert "{{" not in text
    assert yaml.safe_load(text)["http"]["routers"]["web"]["rule"] == app.rule


def test_output_is_ascii_and_deterministic() -> None:
    app = make_app(rule="Host(`web.localhost`) && Header(`X`, `é😀\u2028\x85`)")
    routing = Routing(app="web", routes=(route(BLUE, 90), route(GREEN, 10)))
    first = render_dynamic(app=app, routing=routing, entrypoints=["web"])
    assert first == render_dynamic(app=app, routing=routing, entrypoints=["web"])
    assert first.isascii()
    assert first.endswith("\n")


def test_check_catches_a_template_that_lies(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafficshift.traefik.render as render

    monkeypatch.setattr(render, "expected_document", lambda **_: {"http": {}})
    with pytest.raises(RenderCheckError, match="expected"):
        render_dynamic(
            app=make_app(), routing=Routing(app="web", routes=(route(BLUE, 100),)), entrypoints=["web"]
        )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1.0, "1s"), (0.5, "500ms"), (2.0, "2s"), (1.5, "1500ms"), (60.0, "60s"), (0.0001, "1ms")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_quote_yaml_kinds() -> None:
    assert quote_yaml(True) == "true"
    assert quote_yaml(3) == "3"
    assert quote_yaml('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(TypeError):
        quote_yaml(1.5)
    with pytest.raises(ValueError, match="surrogate"):
        quote_yaml("\ud800")


@pytest.mark.parametrize(
    "text",
    [
        "not yaml: [",
        "http: {}",
        "http: {services: {}}",
        "http: {services: {web: {weighted: {services: [{name: web-red, weight: 1}]}}}}",
        "http: {services: {web: {weighted: {services: [{name: web-blue, weight: 1}]}}}}",
    ],
)
def test_parse_dynamic_refuses_other_files(text: str) -> None:
    with pytest.raises(ValueError, match=r"dynamic file|weighted|red"):
        parse_dynamic(text)


# ---------------------------------------------------------------- property

# Printable unicode and the characters YAML and Go templates care about, but never `{{` (config rejects it).
config_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\"'`:#{}[]&*!|>%@,?-\\\n\t\r \u2028\u2029\x85\ufeff")),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: "{{" not in s)
app_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,39}\Z")
urls = st.builds(lambda host, port: f"http://{host}:{port}", app_names, st.integers(1, 65535))
colour_routes = st.lists(
    st.builds(
        ColourRoute,
        colour=st.sampled_from(Colour),
        weight=st.integers(0, 100),
        servers=st.lists(urls, min_size=1, max_size=3).map(tuple),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda r: r.colour,
).map(tuple)


@settings(max_examples=200, deadline=None)
@given(
    name=app_names,
    rule=config_text,
    path=st.none() | config_text,
    env=st.dictionaries(config_text, config_text, max_size=3),
    labels=st.dictionaries(config_text, config_text, max_size=3),
    entrypoints=st.lists(config_text, min_size=1, max_size=2),
    routes=colour_routes,
)
def test_any_config_value_round_trips(
    name: str,
    rule: str,
    path: str | None,
    env: dict[str, str],
    labels: dict[str, str],
    entrypoints: list[str],
    routes: tuple[ColourRoute, ...],
) -> None:
    app = make_app(name, rule=rule, health=HealthSpec(path=path), environment=env, labels=labels)
    routing = Routing(app=name, routes=routes)

    text = render_dynamic(app=app, routing=routing, entrypoints=entrypoints)

    assert "{{" not in text
    doc = yaml.safe_load(text)
    router = doc["http"]["routers"][name]
    assert router["rule"] == rule
    assert router["entryPoints"] == entrypoints
    if path is not None:
        assert (
            doc["http"]["services"][f"{name}-{routes[0].colour}"]["loadBalancer"]["healthCheck"]["path"]
            == path
        )
    assert parse_dynamic(text) == routing
    assert render_dynamic(app=app, routing=routing, entrypoints=entrypoints) == text
