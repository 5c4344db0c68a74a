"""Issue 13's routing controls as pure logic: their config, the file they render, the pins a rollout has,
and how the engine opens and closes the canary (over the in-memory fakes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import trafficshift.engine as engine_module
from tests.support.checks import says
from tests.support.factories import BASE_CONFIG, make_rollout
from tests.support.fakes import APP, Killed, World, fresh_world
from trafficshift import plan
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError, RoutingRejected
from trafficshift.models import (
    AppSpec,
    CanarySpec,
    Colour,
    ColourRoute,
    Outcome,
    Phase,
    Pin,
    RetrySpec,
    Routing,
    StickySpec,
    TlsDomain,
    TlsSpec,
)
from trafficshift.traefik import names, rules
from trafficshift.traefik.render import (
    options_of,
    parse_dynamic,
    render_dynamic,
    render_trial,
    router_options,
)

BLUE, GREEN = Colour.BLUE, Colour.GREEN

OPTIONS = """\
    entrypoints: [websecure]
    tls:
      certResolver: le
      options: modern@file
      domains:
        - main: example.com
          sans: ["*.example.com"]
    middlewares: [auth@file, headers]
    priority: 50
    retry: {attempts: 5, initialInterval: 250ms}
    canary: {header: X-Canary, cookie: canary}
    rollout:
      sticky: {cookie: ts_colour, secure: true, httpOnly: true, sameSite: lax}
"""


def parse(text: str) -> AppSpec:
    return parse_config_text(text, source="trafficshift.yml", base_dir=Path("/srv")).apps["web"]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return list(info.value.messages)


def test_every_routing_option_is_read() -> None:
    spec = parse(BASE_CONFIG + OPTIONS)
    assert spec.entrypoints == ("websecure",)
    assert spec.tls == TlsSpec(
        cert_resolver="le", options="modern@file", domains=(TlsDomain("example.com", ("*.example.com",)),)
    )
    assert spec.middlewares == ("auth@file", "headers")
    assert spec.priority == 50
    assert spec.retry == RetrySpec(attempts=5, initial_interval=0.25)
    assert spec.canary == CanarySpec(header="X-Canary", cookie="canary")
    assert spec.rollout.sticky == StickySpec(cookie="ts_colour", secure=True, http_only=True, same_site="lax")


def test_defaults_leave_the_file_as_before() -> None:
    spec = parse(BASE_CONFIG)
    assert (spec.entrypoints, spec.tls, spec.middlewares, spec.priority, spec.canary) == (
        None,
        None,
        (),
        None,
        None,
    )
    assert spec.retry == RetrySpec(attempts=3, initial_interval=0.1)
    assert spec.rollout.sticky is None
    assert parse(BASE_CONFIG + "    tls:\n").tls == TlsSpec()


@pytest.mark.parametrize(
    ("extra", "line", "path", "why"),
    [
        ("    middlewares: ['a b']\n", 10, "apps.web.middlewares[0]", "middleware name"),
        ("    middlewares: ['{{x}}']\n", 10, "apps.web.middlewares[0]", "middleware name"),
        ("    entrypoints: []\n", 10, "apps.web.entrypoints", "at least one"),
        ("    priority: 0\n", 10, "apps.web.priority", "must be 1.."),
        ("    retry: {attempts: 0}\n", 10, "apps.web.retry.attempts", "must be 1..10"),
        ("    retry: {initialInterval: 0s}\n", 10, "apps.web.retry.initialInterval", "more than 0"),
        ("    tls: {certresolver: le}\n", 10, "apps.web.tls.certresolver", "did you mean 'certResolver'"),
        (
            "    tls: {domains: [{sans: [a.b]}]}\n",
            10,
            "apps.web.tls.domains[0]",
            "missing required key 'main'",
        ),
        ("    tls: {domains: [{main: 'a b'}]}\n", 10, "apps.web.tls.domains[0].main", "domain name"),
        ("    canary: {}\n", 10, "apps.web.canary", "set header and/or cookie"),
        ("    canary: {header: 'X Canary'}\n", 10, "apps.web.canary.header", "header name"),
        ("    canary: {cookie: 'a;b'}\n", 10, "apps.web.canary.cookie", "cookie name"),
        (
            "    rollout: {sticky: {secure: true}}\n",
            10,
            "apps.web.rollout.sticky",
            "missing required key 'cookie'",
        ),
        (
            "    rollout: {sticky: {cookie: c, sameSite: lose}}\n",
            10,
            "apps.web.rollout.sticky.sameSite",
            "one of",
        ),
    ],
)
def test_bad_routing_options_name_file_line_and_field(extra: str, line: int, path: str, why: str) -> None:
    messages = errors_of(BASE_CONFIG + extra)
    assert any(m.startswith(f"trafficshift.yml:{line}: {path}: ") and why in m for m in messages), messages


def test_an_app_named_like_another_apps_pin_router_is_refused() -> None:
    text = (
        BASE_CONFIG
        + "  web-pin-canary-always:\n    image: x\n    port: 1\n    rule: Path(`/`)\n    publish: 127.0.0.1\n"
    )
    assert any("collides with Traefik object web-pin-canary-always of web" in m for m in errors_of(text))


# ---------------------------------------------------------------- the file


ROUTES = (ColourRoute(BLUE, 90, ("http://127.0.0.1:1",)), ColourRoute(GREEN, 10, ("http://127.0.0.1:2",)))


def rendered(spec: AppSpec, routing: Routing | None = None) -> dict[str, Any]:
    text = render_dynamic(
        app=spec, routing=routing or Routing(app="web", routes=ROUTES), entrypoints=("web",)
    )
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc["http"]


def test_options_reach_the_router_and_the_weighted_service() -> None:
    http = rendered(parse(BASE_CONFIG + OPTIONS))
    assert http["routers"]["web"] == {
        "rule": "Host(`web.localhost`)",
        "priority": 50,
        "entryPoints": ["websecure"],
        "service": "web",
        "middlewares": ["auth@file", "headers", "web-retry"],  # the retry last, nearest the colours
        "tls": {
            "certResolver": "le",
            "options": "modern@file",
            "domains": [{"main": "example.com", "sans": ["*.example.com"]}],
        },
    }
    assert http["middlewares"]["web-retry"] == {"retry": {"attempts": 5, "initialInterval": "250ms"}}
    assert http["services"]["web"]["weighted"]["sticky"] == {
        "cookie": {"name": "ts_colour", "secure": True, "httpOnly": True, "sameSite": "lax"}
    }


def test_bare_tls_renders_an_empty_mapping_not_null() -> None:
    http = rendered(parse(BASE_CONFIG + "    tls: {}\n"))
    assert http["routers"]["web"]["tls"] == {}  # `tls:` with nothing is null, which Traefik reads as no TLS


def test_pins_render_as_routers_above_the_apps_and_read_back() -> None:
    spec = parse(BASE_CONFIG + "    canary: {header: X-Canary, cookie: canary}\n")
    rollout = make_rollout(phase=Phase.SHIFTING)
    pins = plan.pins_for(spec, rollout)
    routing = Routing(app="web", routes=ROUTES, pins=pins)
    text = render_dynamic(app=spec, routing=routing, entrypoints=("web",))
    assert parse_dynamic(text) == routing
    routers = yaml.safe_load(text)["http"]["routers"]
    always = routers[names.pin_router("web", names.CANARY_ALWAYS)]
    never = routers[names.pin_router("web", names.CANARY_NEVER)]
    assert (always["service"], never["service"]) == ("web-green", "web-blue")
    assert always["rule"] == (
        "(Host(`web.localhost`)) && (Header(`X-Canary`, `always`)"
        " || HeaderRegexp(`Cookie`, `(^|;\\s*)canary=always(;|$)`))"
    )
    base = len("Host(`web.localhost`)")  # Traefik's default priority of the app's router
    assert (always["priority"], never["priority"]) == (base + 2, base + 1)
    assert always["middlewares"] == routers["web"]["middlewares"]


def test_a_pin_to_a_colour_without_servers_is_never_rendered() -> None:
    spec = parse(BASE_CONFIG)
    pin = Pin(name="x", colour=GREEN, rule="Path(`/`)")
    with pytest.raises(ValueError, match="no servers"):
        render_dynamic(app=spec, routing=Routing("web", ROUTES[:1], (pin,)), entrypoints=("web",))
    assert plan.routing_for(app="web", weights={BLUE: 100}, containers=(), pins=(pin,)).pins == ()


def test_the_trial_carries_the_options_to_noop_on_a_rule_no_request_matches() -> None:
    spec = parse(BASE_CONFIG + OPTIONS)
    http = yaml.safe_load(render_trial(app=spec, entrypoints=("web",), router="web-trial-abc"))["http"]
    assert "services" not in http
    trial = http["routers"]["web-trial-abc"]
    assert trial["service"] == "noop@internal"
    assert trial["middlewares"] == ["auth@file", "headers", "web-trial-retry"]
    assert trial["rule"].startswith("(Host(`web.localhost`)) && (Header(`X-Trafficshift-Trial`")
    main = rendered(spec)["routers"]["web"]
    assert {k: v for k, v in trial.items() if k not in ("rule", "service", "middlewares")} == {
        k: v for k, v in main.items() if k not in ("rule", "service", "middlewares")
    }


def test_options_compare_equal_to_the_file_that_has_them_and_differ_after_a_change() -> None:
    spec = parse(BASE_CONFIG + OPTIONS)
    on_file = yaml.safe_load(render_dynamic(app=spec, routing=Routing("web", ROUTES), entrypoints=("web",)))
    assert router_options(on_file, "web") == options_of(app=spec, entrypoints=("web",))
    changed = parse(BASE_CONFIG + OPTIONS.replace("auth@file, ", ""))
    assert router_options(on_file, "web") != options_of(app=changed, entrypoints=("web",))


def test_rules_refuse_what_would_break_out_of_an_argument() -> None:
    with pytest.raises(ValueError, match="header name"):
        rules.matching(app_rule="Path(`/`)", header="X`) || Path(`/", cookie=None, value="always")
    with pytest.raises(ValueError, match="needs a header or a cookie"):
        rules.matching(app_rule="Path(`/`)", header=None, cookie=None, value="always")


# ---------------------------------------------------------------- pins over a rollout


@pytest.mark.parametrize(
    ("phase", "pinned"),
    [
        (Phase.STARTING, False),
        (Phase.READY, True),
        (Phase.SHIFTING, True),
        (Phase.DRAINING, False),
        (Phase.CLEANING, False),
        (Phase.ABORTING, False),
    ],
)
def test_canary_pins_live_from_ready_through_shifting(phase: Phase, pinned: bool) -> None:
    spec = parse(BASE_CONFIG + "    canary: {header: X-Canary}\n")
    assert bool(plan.pins_for(spec, make_rollout(phase=phase))) is pinned
    assert plan.pins_for(spec, make_rollout(phase=phase, outcome=Outcome.DONE)) == ()
    assert plan.pins_for(spec, make_rollout(phase=phase, from_colour=None)) == ()  # a first deploy
    assert plan.pins_for(parse(BASE_CONFIG), make_rollout(phase=phase)) == ()


# ---------------------------------------------------------------- the engine


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world(extra="    canary: {header: X-Canary}\n") as w:
        yield w


def pinned(world: World, start: int) -> list[tuple[dict[Colour, int], set[str]]]:
    return [(a.routing.weights(), {p.name for p in a.routing.pins}) for a in world.publisher.asked[start:]]


async def test_the_canary_opens_at_zero_percent_and_closes_before_the_drain(world: World) -> None:
    await world.engine().promote(app=APP)  # blue: a first deploy, no canary
    assert all(not a.routing.pins for a in world.publisher.asked)
    before = len(world.publisher.asked)
    done = await world.engine().promote(app=APP, image="web:2", pause=0)
    assert done.outcome is Outcome.DONE
    both = {names.CANARY_ALWAYS, names.CANARY_NEVER}
    assert pinned(world, before) == [
        ({BLUE: 100, GREEN: 0}, both),  # ready: green reachable by the header only
        ({BLUE: 90, GREEN: 10}, both),
        ({BLUE: 50, GREEN: 50}, both),
        ({BLUE: 0, GREEN: 100}, both),
        ({BLUE: 0, GREEN: 100}, set()),  # draining: the pins are gone
        ({GREEN: 100}, set()),
    ]


async def test_going_back_removes_the_pins_with_its_first_write(world: World) -> None:
    await world.engine().promote(app=APP)
    engine = world.engine()
    world.notifier.when(lambda e: e.phase is Phase.SHIFTING and e.step == 1, lambda: engine.interrupt("test"))
    before = len(world.publisher.asked)
    ended = await engine.promote(app=APP, image="web:2", pause=0.05)
    assert ended.outcome is Outcome.ABORTED
    after_abort = pinned(world, before)
    first_back = next(
        i for i, (weights, _) in enumerate(after_abort) if weights == {BLUE: 100, GREEN: 0} and i > 0
    )
    assert all(pins == set() for _, pins in after_abort[first_back:])
    assert after_abort[-1] == ({BLUE: 100}, set())


async def test_router_options_traefik_refuses_fail_before_anything_changes(world: World) -> None:
    await world.engine().promote(app=APP)
    before = len(world.publisher.asked)
    world.publisher.rejects = RoutingRejected(
        APP, "web-trial-x@file", ['middleware "nope@file" does not exist']
    )
    with pytest.raises(RoutingRejected) as info:
        await world.engine().promote(app=APP, image="web:2", pause=0)
    assert info.value.exit_code == 2
    assert "nope@file" in str(info.value)
    assert world.publisher.asked[before:] == []
    assert world.containers.images(app=APP) == {"web:1"}
    assert world.live().colour is BLUE


@pytest.mark.parametrize("action", ["promote", "abort"])
async def test_a_rollout_killed_with_its_canary_open_resumes_or_goes_back_without_pins(
    world: World, action: str
) -> None:
    await world.engine().promote(app=APP)
    world.notifier.kill_after = says(Phase.READY, "canary open")
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2", pause=0)
    assert world.publisher.file().pins == ()  # recorded, not written yet
    before = len(world.publisher.asked)
    engine = world.engine()
    ended = await (engine.promote(app=APP) if action == "promote" else engine.abort(app=APP))
    written = pinned(world, before)
    if action == "promote":
        assert ended.outcome is Outcome.DONE
        assert written[0] == ({BLUE: 100, GREEN: 0}, {names.CANARY_ALWAYS, names.CANARY_NEVER})
    else:
        assert ended.outcome is Outcome.ABORTED
        assert all(pins == set() for _, pins in written)
    assert world.publisher.file().pins == ()
