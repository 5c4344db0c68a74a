"""The mirror phase's pure parts: `rollout.mirror` in the config, its file, when a rollout runs it, and
what Traefik's API must show before it counts."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.factories import BASE_CONFIG, make_rollout
from tests.support.fakes import FakeMetrics, Faults
from trafficshift import judge, plan
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError, RenderCheckError
from trafficshift.models import AnalysisSpec, AppSpec, Colour, MirrorRoute, MirrorSpec, Phase, RolloutPolicy
from trafficshift.traefik import publish, render
from trafficshift.traefik.api import ObservedMirror
from trafficshift.traefik.render import mirror_document, mirror_rule, render_mirror


def app_config(extra: str) -> str:
    """BASE_CONFIG (lines 1-9) with app-level `extra` from line 10."""
    return BASE_CONFIG + textwrap.indent(textwrap.dedent(extra), "    ")


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="trafficshift.yml", base_dir=Path("/srv"))
    return list(info.value.messages)


# ---------------------------------------------------------------- config


def test_mirror_is_off_by_default_and_methods_default_to_get_and_head() -> None:
    config = parse_config_text(BASE_CONFIG, source="t.yml", base_dir=Path("/srv"))
    assert config.apps["web"].rollout.mirror is None
    text = app_config("rollout:\n  mirror: {percent: 20, duration: 1m}\n")
    mirror = parse_config_text(text, source="t.yml", base_dir=Path("/srv")).apps["web"].rollout.mirror
    assert mirror == MirrorSpec(percent=20, duration=60.0, methods=("GET", "HEAD"))


def test_methods_are_read_in_any_case() -> None:
    text = app_config("rollout:\n  mirror: {percent: 5, duration: 30s, methods: [get, Post]}\n")
    mirror = parse_config_text(text, source="t.yml", base_dir=Path("/srv")).apps["web"].rollout.mirror
    assert mirror is not None
    assert mirror.methods == ("GET", "POST")


@pytest.mark.parametrize(
    ("mirror", "error"),
    [
        (
            "{percent: 0, duration: 1m}",
            "trafficshift.yml:11: apps.web.rollout.mirror.percent: must be 1..100, got 0",
        ),
        (
            "{percent: 101, duration: 1m}",
            "trafficshift.yml:11: apps.web.rollout.mirror.percent: must be 1..100, got 101",
        ),
        (
            "{percent: 20}",
            "trafficshift.yml:11: apps.web.rollout.mirror: missing required key 'duration'",
        ),
        (
            "{duration: 1m}",
            "trafficshift.yml:11: apps.web.rollout.mirror: missing required key 'percent'",
        ),
        (
            "{percent: 20, duration: 0s}",
            "trafficshift.yml:11: apps.web.rollout.mirror.duration: must be more than 0, got '0s'",
        ),
        (
            "{percent: 20, duration: soon}",
            "trafficshift.yml:11: apps.web.rollout.mirror.duration: expected a duration",
        ),
        (
            "{percent: 20, duration: 1m, methods: []}",
            "trafficshift.yml:11: apps.web.rollout.mirror.methods: must list at least one method;"
            " leave methods out to mirror GET, HEAD",
        ),
        (
            "{percent: 20, duration: 1m, methods: [GET, FETCH]}",
            "trafficshift.yml:11: apps.web.rollout.mirror.methods[1]: expected an HTTP method",
        ),
        (
            "{percent: 20, duration: 1m, methods: [GET, get]}",
            "trafficshift.yml:11: apps.web.rollout.mirror.methods[1]: GET is listed twice",
        ),
        (
            "{percent: 20, duration: 1m, methods: GET}",
            "trafficshift.yml:11: apps.web.rollout.mirror.methods: expected a list",
        ),
        (
            "{percent: 20, duration: 1m, share: 3}",
            "trafficshift.yml:11: apps.web.rollout.mirror.share: unknown key",
        ),
        ("20", "trafficshift.yml:11: apps.web.rollout.mirror: expected a mapping"),
    ],
)
def test_bad_mirror_config_names_file_line_and_field(mirror: str, error: str) -> None:
    errors = errors_of(app_config(f"rollout:\n  mirror: {mirror}\n"))
    assert len(errors) == 1, errors
    assert errors[0].startswith(error), errors


def test_an_app_named_like_another_apps_mirror_is_refused() -> None:
    other = "web-mirror: {image: a, port: 80, rule: Host(`o`), publish: 127.0.0.1}\n"
    text = app_config("rollout:\n  mirror: {percent: 20, duration: 1m}\n") + "  " + other
    assert errors_of(text) == ["trafficshift.yml:12: apps.web-mirror: collides with the mirror of web"]


# ---------------------------------------------------------------- when a rollout mirrors

SPEC = AppSpec(
    name="web",
    image="web:1",
    port=8080,
    rule="Host(`web.localhost`)",
    publish="127.0.0.1",
    rollout=RolloutPolicy(mirror=MirrorSpec(percent=20, duration=5.0)),
)
ROUTE = MirrorRoute(app="web", colour=Colour.GREEN, percent=20, methods=("GET", "HEAD"))


def test_a_cutover_mirrors_to_its_new_colour() -> None:
    assert plan.mirror_for(SPEC, make_rollout(phase=Phase.READY)) == ROUTE


@pytest.mark.parametrize(
    ("why", "spec", "changes"),
    [
        ("not configured", replace(SPEC, rollout=RolloutPolicy()), {}),
        ("a first deploy", SPEC, {"from_colour": None, "from_image": None, "steps": (100,)}),
        ("rollback --now", SPEC, {"steps": (100,), "pause": 0.0}),
    ],
)
def test_no_mirror(why: str, spec: AppSpec, changes: dict[str, Any]) -> None:
    assert plan.mirror_for(spec, make_rollout(**changes)) is None, why


def test_the_mirror_phase_can_go_back() -> None:
    assert Phase.MIRRORING in plan.ABORTABLE


# ---------------------------------------------------------------- the mirror file


def test_the_mirror_file_routes_the_methods_to_a_mirroring_service_of_the_weighted_service() -> None:
    text = render_mirror(app=SPEC, mirror=ROUTE, entrypoints=["web"])
    assert yaml.safe_load(text) == {
        "http": {
            "routers": {
                "web-mirror": {
                    "rule": "(Host(`web.localhost`)) && (Method(`GET`) || Method(`HEAD`))",
                    "entryPoints": ["web"],
                    "service": "web-mirror",
                    "middlewares": ["web-retry"],
                }
            },
            "services": {
                "web-mirror": {
                    "mirroring": {"service": "web", "mirrors": [{"name": "web-green", "percent": 20}]}
                }
            },
        }
    }
    assert text.isascii()


def test_the_mirror_router_is_the_apps_router_with_the_methods_added() -> None:
    doc = mirror_document(app=SPEC, mirror=ROUTE, entrypoints=["web", "websecure"])
    own = render.router_document(app=SPEC, entrypoints=["web", "websecure"])
    mirror_router = doc["http"]["routers"]["web-mirror"]
    assert {k: v for k, v in mirror_router.items() if k not in ("rule", "service")} == {
        k: v for k, v in own.items() if k not in ("rule", "service")
    }
    # Longer than the app's rule: Traefik's default priority (the rule's length) puts it first.
    assert len(mirror_router["rule"]) > len(own["rule"])


def test_a_rule_with_an_or_keeps_its_meaning() -> None:
    assert mirror_rule("Host(`a`) || Host(`b`)", ["POST"]) == "(Host(`a`) || Host(`b`)) && (Method(`POST`))"


def test_a_go_template_in_the_rule_never_reaches_the_mirror_file() -> None:
    spec = replace(SPEC, rule="Host(`{{ .Env }}`)")
    text = render_mirror(app=spec, mirror=ROUTE, entrypoints=["web"])
    assert "{{" not in text
    assert yaml.safe_load(text)["http"]["routers"]["web-mirror"]["rule"].startswith("(Host(`{{ .Env }}`))")


@pytest.mark.parametrize(
    "mirror",
    [
        replace(ROUTE, percent=0),
        replace(ROUTE, percent=101),
        replace(ROUTE, methods=()),
        replace(ROUTE, app="x"),
    ],
)
def test_a_bad_mirror_is_refused(mirror: MirrorRoute) -> None:
    with pytest.raises(ValueError, match="mirror"):
        render_mirror(app=SPEC, mirror=mirror, entrypoints=["web"])


def test_the_check_catches_a_file_that_lies(monkeypatch: pytest.MonkeyPatch) -> None:
    real = render._block

    def lying(value: object, depth: int) -> list[str]:
        return [line.replace("20", "2") for line in real(value, depth)]

    monkeypatch.setattr(render, "_block", lying)
    with pytest.raises(RenderCheckError):
        render_mirror(app=SPEC, mirror=ROUTE, entrypoints=["web"])


# ---------------------------------------------------------------- what Traefik's API must show

EXPECTED = mirror_document(app=SPEC, mirror=ROUTE, entrypoints=["web"])
# As Traefik 3.7 answers /api/http/routers/web-mirror@file and /api/http/services/web-mirror@file.
ROUTER = {
    "entryPoints": ["web"],
    "middlewares": ["web-retry@file"],
    "service": "web-mirror",
    "rule": "(Host(`web.localhost`)) && (Method(`GET`) || Method(`HEAD`))",
    "status": "enabled",
    "name": "web-mirror@file",
}
SERVICE = {
    "mirroring": {
        "service": "web",
        "mirrorBody": True,
        "maxBodySize": -1,
        "mirrors": [{"name": "web-green", "percent": 20}],
    },
    "status": "enabled",
    "name": "web-mirror@file",
}


def test_the_mirror_counts_once_traefik_runs_it_enabled() -> None:
    assert ObservedMirror(router=ROUTER, service=SERVICE).matches(EXPECTED)
    assert not ObservedMirror(router=None, service=None).matches(EXPECTED)
    assert not ObservedMirror(router=ROUTER, service=None).matches(EXPECTED)
    assert not ObservedMirror(router=ROUTER | {"status": "disabled"}, service=SERVICE).matches(EXPECTED)
    assert not ObservedMirror(router=ROUTER, service=SERVICE | {"status": "warning"}).matches(EXPECTED)
    other_share = {"mirroring": SERVICE["mirroring"] | {"mirrors": [{"name": "web-green", "percent": 10}]}}
    assert not ObservedMirror(router=ROUTER, service=SERVICE | other_share).matches(EXPECTED)
    other_methods = ROUTER | {"rule": "(Host(`web.localhost`)) && (Method(`GET`))"}
    assert not ObservedMirror(router=other_methods, service=SERVICE).matches(EXPECTED)


def test_the_mirror_is_gone_once_neither_its_router_nor_its_service_is_left() -> None:
    assert ObservedMirror(router=None, service=None).matches(None)
    assert not ObservedMirror(router=ROUTER, service=None).matches(None)
    assert not ObservedMirror(router=None, service=SERVICE).matches(None)


# ---------------------------------------------------------------- the live publisher, without an API


async def test_the_mirror_file_is_written_beside_the_apps_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "UNCONFIRMED_WAIT", 0.0)
    config = parse_config_text(BASE_CONFIG, source="t.yml", base_dir=tmp_path)
    path = tmp_path / "dynamic" / "web.mirror.yml"
    await publish.publish_mirror(config=config, traefik=None, spec=SPEC, mirror=ROUTE)
    assert path.read_text() == render_mirror(app=SPEC, mirror=ROUTE, entrypoints=["web"])
    await publish.publish_mirror(config=config, traefik=None, spec=SPEC, mirror=None)
    assert not path.exists()


async def test_removing_no_mirror_does_not_wait_for_traefik(tmp_path: Path) -> None:
    # Every way back asks: without an API to confirm through, only a removed file is worth the blind wait.
    config = parse_config_text(BASE_CONFIG, source="t.yml", base_dir=tmp_path)
    took = await publish.publish_mirror(config=config, traefik=None, spec=SPEC, mirror=None)
    assert took < publish.UNCONFIRMED_WAIT / 10


# ---------------------------------------------------------------- what the phase is judged on


def test_the_mirror_phase_is_judged_on_the_new_colours_own_service() -> None:
    judged = replace(SPEC, analysis=AnalysisSpec(max_error_rate=0.01))
    mirroring = make_rollout(phase=Phase.MIRRORING, step=-1, weights={Colour.BLUE: 100, Colour.GREEN: 0})
    watch = judge.watch_step(spec=judged, rollout=mirroring, metrics=FakeMetrics(Faults()))
    assert watch is not None
    # Traefik counts the copies there (the mirroring service itself has no series).
    assert watch.service == "web-green@file"
    assert watch.step == "mirror (20% of GET/HEAD copied to green)"
    # Without analysis: health alone. At weight 0 outside the mirror phase: nothing to judge.
    assert judge.watch_step(spec=SPEC, rollout=mirroring, metrics=FakeMetrics(Faults())) is None
    at_zero = replace(mirroring, phase=Phase.SHIFTING)
    assert judge.watch_step(spec=judged, rollout=at_zero, metrics=FakeMetrics(Faults())) is None
