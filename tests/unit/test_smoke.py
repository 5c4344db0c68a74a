"""Smoke checks as pure logic: their config (file:line errors), the verdict on an answer, the smoke router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trafficshift.engine as engine_module
from tests.support.factories import make_rollout
from tests.support.fakes import APP, CONFIG_TEXT, Killed, World, fresh_world
from trafficshift import plan, smoke
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import AppSpec, Colour, ColourRoute, Outcome, Routing, SmokeCheck
from trafficshift.smoke import Answer, host_of, judge, parse_status, status_text
from trafficshift.traefik.render import parse_dynamic, render_dynamic

CONFIG = """\
traefik:
  dynamic_dir: ./dynamic
  entrypoint_url: http://127.0.0.1:8000/
apps:
  web:
    image: example/web:1.0
    port: 8080
    rule: "Host(`web.localhost`)"
    publish: 127.0.0.1
"""


def parse(text: str) -> AppSpec:
    return parse_config_text(text, source="trafficshift.yml", base_dir=Path("/srv")).apps["web"]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return list(info.value.messages)


def test_every_smoke_field_is_read() -> None:
    spec = parse(
        CONFIG
        + """\
    smoke:
      - path: /
      - {path: /api/ping, method: post, status: 204, body: pong, headers: {X-Key: k1}, timeout: 2s, count: 3}
      - {path: /old, status: 3xx}
      - {path: /any, status: 200-404}
"""
    )
    assert spec.smoke == (
        SmokeCheck(path="/"),
        SmokeCheck(
            path="/api/ping",
            method="POST",
            status=(204, 204),
            body="pong",
            headers=(("X-Key", "k1"),),
            timeout=2.0,
            count=3,
        ),
        SmokeCheck(path="/old", status=(300, 399)),
        SmokeCheck(path="/any", status=(200, 404)),
    )


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("{path: api}", "trafficshift.yml:11: apps.web.smoke[0].path: expected a path like /healthz"),
        ("{path: /, status: 700}", "apps.web.smoke[0].status: must be 100..599, got 700"),
        ("{path: /, status: 2yy}", "apps.web.smoke[0].status: expected a status like 200, a class like 2xx"),
        ("{path: /, status: 299-200}", "apps.web.smoke[0].status: expected a status like 200"),
        ("{path: /, method: FETCH}", "apps.web.smoke[0].method: expected an HTTP method"),
        ("{path: /, count: 0}", "apps.web.smoke[0].count: must be 1..100, got 0"),
        ("{path: /, timeout: 0s}", "apps.web.smoke[0].timeout: must be more than 0"),
        ("{path: /, headers: {Host: x}}", "expected a header name (not Host), got 'Host'"),
        ("{status: 200}", "apps.web.smoke[0]: missing required key 'path'"),
        ("{path: /, expect: 200}", "apps.web.smoke[0].expect: unknown key; expected one of body"),
    ],
)
def test_a_bad_check_is_named_with_its_line(item: str, error: str) -> None:
    errors = errors_of(CONFIG + f"    smoke:\n      - {item}\n")
    assert any(error in message for message in errors), errors


def test_smoke_needs_the_entrypoint_url_and_a_host() -> None:
    without_url = CONFIG.replace("  entrypoint_url: http://127.0.0.1:8000/\n", "")
    errors = errors_of(without_url + "    smoke: [{path: /}]\n")
    assert any("apps.web.smoke: needs traefik.entrypoint_url" in m for m in errors), errors
    no_host = CONFIG.replace('"Host(`web.localhost`)"', '"PathPrefix(`/web`)"')
    errors = errors_of(no_host + "    smoke: [{path: /}]\n")
    assert any("needs a Host(`...`) in the app's rule" in m for m in errors), errors
    assert errors_of(CONFIG + "    smoke: []\n") == [
        "trafficshift.yml:10: apps.web.smoke: must list at least one check; leave smoke out for none"
    ]


def test_entrypoint_url_loses_its_trailing_slash() -> None:
    config = parse_config_text(CONFIG, source="trafficshift.yml", base_dir=Path("/srv"))
    assert config.traefik.entrypoint_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("text", "status"),
    [("2xx", (200, 299)), ("5xx", (500, 599)), ("200-204", (200, 204)), ("204-204", (204, 204))],
)
def test_status_ranges(text: str, status: tuple[int, int]) -> None:
    assert parse_status(text) == status


@pytest.mark.parametrize("text", ["6xx", "2XX", "200-", "204-200", "abc", "20x", "0xx"])
def test_bad_status_ranges(text: str) -> None:
    assert parse_status(text) is None


def test_status_text_round_trips() -> None:
    assert [status_text(s) for s in [(200, 200), (200, 299), (200, 404)]] == ["200", "2xx", "200-404"]


def test_host_of_the_rule() -> None:
    assert host_of("Host(`web.example.com`) && PathPrefix(`/api`)") == "web.example.com"
    assert host_of("PathPrefix(`/api`)") is None


def test_judge_passes_and_names_what_failed() -> None:
    check = SmokeCheck(path="/", status=(200, 200), body="ok")
    assert judge(check, Answer(status=200, body="all ok")) is None
    assert judge(check, Answer(status=500, body="boom" * 100)) == (
        f"smoke check GET /: answered 500, body {('boom' * 50)!r} (expected 200)"
    )
    assert judge(check, Answer(status=200, body="nope")) == (
        "smoke check GET /: answered 200, body 'nope' (expected the body to contain 'ok')"
    )
    assert judge(check, Answer(status=None, error="no answer within 5s")) == (
        "smoke check GET /: no answer within 5s"
    )
    assert judge(SmokeCheck(path="/x", status=(200, 299)), Answer(status=204)) is None


def test_the_smoke_router_reaches_the_new_colour_at_weight_zero_only_by_its_header() -> None:
    spec = parse(CONFIG + "    smoke: [{path: /}]\n")
    rollout = make_rollout(id="r1")
    pin = plan.smoke_pin(spec, rollout)
    assert pin.colour is Colour.GREEN
    assert pin.rule == f"(Host(`web.localhost`)) && (Header(`{smoke.SMOKE_HEADER}`, `r1`))"
    routing = Routing(
        app="web",
        routes=(
            ColourRoute(colour=Colour.BLUE, weight=100, servers=("http://127.0.0.1:1",)),
            ColourRoute(colour=Colour.GREEN, weight=0, servers=("http://127.0.0.1:2",)),
        ),
        pins=(pin,),
    )
    text = render_dynamic(app=spec, routing=routing, entrypoints=("web",))
    assert "web-pin-smoke" in text
    assert parse_dynamic(text) == routing.canonical()


# ---------------------------------------------------------------- the engine (in-memory fakes)

SMOKE_CONFIG = CONFIG_TEXT.replace("  metrics_url:", "  entrypoint_url: http://127.0.0.1:9/\n  metrics_url:")


class Sender:
    """Stands in for smoke_requests.run_checks: records what the file routed when the checks went out."""

    def __init__(self, world: World, reason: str | None) -> None:
        self.world, self.reason = world, reason
        self.seen: list[Routing | None] = []

    async def __call__(
        self, checks: Any, *, url: str, host: str, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        assert url == "http://127.0.0.1:9"
        assert host == "web.localhost"
        assert set(headers) == {smoke.SMOKE_HEADER}
        self.seen.append(self.world.publisher.file())
        return 1, self.reason


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POLL", 0.005)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_world(extra="    smoke: [{path: /}]\n", config_text=SMOKE_CONFIG) as w:
        yield w


def _pins(world: World, start: int) -> list[tuple[dict[Colour, int], set[str]]]:
    return [(a.routing.weights(), {p.name for p in a.routing.pins}) for a in world.publisher.asked[start:]]


@pytest.mark.parametrize("fails", [False, True])
async def test_the_checks_see_the_new_colour_at_zero_before_any_weight(
    world: World, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    sender = Sender(world, "smoke check GET /: answered 500, body 'boom' (expected 2xx)" if fails else None)
    monkeypatch.setattr(engine_module.smoke_requests, "run_checks", sender)
    await world.engine().promote(app=APP)  # a first deploy: no checks
    assert sender.seen == []
    before = len(world.publisher.asked)
    ended = await world.engine().promote(app=APP, image="web:2", pause=0)
    (seen,) = sender.seen
    assert seen is not None
    assert seen.weights() == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert {p.name: p.colour for p in seen.pins} == {plan.SMOKE_PIN: Colour.GREEN}
    written = _pins(world, before)
    assert written[0] == ({Colour.BLUE: 100, Colour.GREEN: 0}, {plan.SMOKE_PIN})
    assert written[1] == ({Colour.BLUE: 100, Colour.GREEN: 0}, set())  # removed, before any weight
    assert all(not pins for _, pins in written[1:])
    if fails:
        assert ended.outcome is Outcome.FAILED
        assert "answered 500" in (ended.reason or "")
        assert all(weights.get(Colour.GREEN, 0) == 0 for weights, _ in written)
    else:
        assert ended.outcome is Outcome.DONE


@pytest.mark.parametrize("action", ["promote", "abort"])
async def test_a_kill_during_the_checks_resumes_them_or_goes_back_without_the_router(
    world: World, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    await world.engine().promote(app=APP)

    async def killed(*_: Any, **__: Any) -> tuple[int, str | None]:
        raise Killed

    monkeypatch.setattr(engine_module.smoke_requests, "run_checks", killed)
    with pytest.raises(Killed):
        await world.engine().promote(app=APP, image="web:2", pause=0)
    routed = world.publisher.file()
    assert routed is not None
    assert {p.name for p in routed.pins} == {plan.SMOKE_PIN}  # left behind by the kill
    sender = Sender(world, None)
    monkeypatch.setattr(engine_module.smoke_requests, "run_checks", sender)
    engine = world.engine()
    ended = await (engine.promote(app=APP) if action == "promote" else engine.abort(app=APP))
    assert ended.outcome is (Outcome.DONE if action == "promote" else Outcome.ABORTED)
    assert len(sender.seen) == (1 if action == "promote" else 0)
    final = world.publisher.file()
    assert final is not None
    assert final.pins == ()
