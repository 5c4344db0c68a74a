"""Manual stepping, pure: plans with held steps and set weights, per-step pauses in the config, the API's
bodies, `status` of a held rollout, and the CLI's arguments."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.factories import BASE_CONFIG, make_rollout
from trafficshift import report, stepping
from trafficshift.cli import main
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError, NotHoldable, UsageError
from trafficshift.models import UNTIL_RESUMED, AppState, Colour, Phase, Routing
from trafficshift.service.requests import ApiError, promote_request, weight_request

INF = UNTIL_RESUMED


@pytest.mark.parametrize(
    ("steps", "pauses", "weight", "expected"),
    [
        ((10, 50, 100), (), 10, ((10, 50, 100), (INF, None, None))),
        ((10, 50, 100), (), 30, ((10, 30, 50, 100), (None, INF, None, None))),
        ((10, 50, 100), (5.0, None, None), 5, ((5, 10, 50, 100), (INF, 5.0, None, None))),
        ((10, 50, 100), (), 100, ((10, 50, 100), (None, None, INF))),
    ],
)
def test_hold_at_marks_or_inserts_an_until_resumed_step(
    steps: tuple[int, ...], pauses: tuple[float | None, ...], weight: int, expected: object
) -> None:
    assert stepping.with_hold_at(steps, pauses, weight) == expected


def test_hold_at_outside_1_to_100_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--hold-at"):
        stepping.with_hold_at((10, 100), (), 0)


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (30, ((10, 30, 50, 100), (None, None, 60.0, None), 1)),
        (50, ((10, 50, 100), (None, 60.0, None), 1)),  # a step at that weight keeps its own pause
        (5, ((5, 10, 50, 100), (None, None, 60.0, None), 0)),
        (100, ((10, 50, 100), (None, 60.0, None), 2)),
    ],
)
def test_a_set_weight_becomes_a_step_of_a_still_rising_plan(weight: int, expected: object) -> None:
    r = make_rollout(steps=(10, 50, 100), pauses=(None, 60.0, None), step=0)
    assert stepping.with_weight(r, weight) == expected


def test_what_each_phase_allows() -> None:
    for phase in Phase:
        r = make_rollout(phase=phase, held="x")
        if phase in (Phase.DONE, Phase.ABORTED, Phase.FAILED):
            continue
        if phase in stepping.PAUSABLE:
            stepping.check_pause(r)
        else:
            with pytest.raises(NotHoldable):
                stepping.check_pause(r)
        if phase in stepping.WEIGHTABLE:
            stepping.check_set_weight(r, 30)
        else:
            with pytest.raises(NotHoldable):
                stepping.check_set_weight(r, 30)
        stepping.check_resume(r)  # held: a resume is always taken
    assert {Phase.STARTING, Phase.READY, Phase.MIRRORING, Phase.SHIFTING, Phase.DRAINING} == stepping.PAUSABLE
    assert {Phase.STARTING, Phase.READY, Phase.SHIFTING} == stepping.WEIGHTABLE
    with pytest.raises(NotHoldable, match="not held"):
        stepping.check_resume(make_rollout())
    with pytest.raises(NotHoldable, match="first deploy"):
        stepping.check_set_weight(make_rollout(from_colour=None), 30)


@pytest.mark.parametrize("value", [0, 101, -1, 30.0, "30", True, None])
def test_check_weight_refuses_anything_but_1_to_100(value: object) -> None:
    assert stepping.check_weight(value) is not None


def test_rollout_pause_of_each_step() -> None:
    r = make_rollout(pause=2.0, pauses=(INF, 300.0))
    assert [r.pause_of(i) for i in range(3)] == [INF, 300.0, 2.0]


# ---------------------------------------------------------------- config


def parse(extra: str) -> list[str] | object:
    text = BASE_CONFIG + textwrap.indent(textwrap.dedent(extra), "    ")
    try:
        return parse_config_text(text, source="trafficshift.yml", base_dir=Path("/srv"))
    except ConfigError as exc:
        return list(exc.messages)


def test_steps_may_carry_their_own_pause() -> None:
    config = parse("rollout:\n  steps: [{weight: 10, pause: until-resumed}, {weight: 50, pause: 5m}, 100]\n")
    policy = config.apps["web"].rollout  # type: ignore[attr-defined]
    assert (policy.steps, policy.pauses) == ((10, 50, 100), (INF, 300.0, None))
    plain = parse("rollout:\n  steps: [10, 50, 100]\n")
    assert plain.apps["web"].rollout.pauses == ()  # type: ignore[attr-defined]


def test_bad_step_pauses_name_the_line_and_field() -> None:
    errors = parse(
        "rollout:\n  steps: [{weight: 10, pause: forever}, {pause: 5m}, {weight: 50, paws: 1s}, 100]\n"
    )
    assert errors == [
        "trafficshift.yml:11: apps.web.rollout.steps[0].pause: expected a duration like 5m, or"
        " until-resumed, got 'forever'",
        "trafficshift.yml:11: apps.web.rollout.steps[1]: missing required key 'weight'",
        "trafficshift.yml:11: apps.web.rollout.steps[2].paws: unknown key; did you mean 'pause'?",
    ]
    assert parse("rollout:\n  steps: [{weight: 50}, {weight: 10}, 100]\n") == [
        "trafficshift.yml:11: apps.web.rollout.steps[1]: steps must rise strictly, got 10 after 50"
    ]


# ---------------------------------------------------------------- API bodies


def test_weight_and_hold_at_bodies() -> None:
    assert weight_request({"weight": 30}) == 30
    assert promote_request({"image": "web:2", "hold_at": 10}).hold_at == 10
    for body, field in [({}, "weight"), ({"weight": 0}, "weight"), ({"weight": 1, "x": 2}, "x")]:
        with pytest.raises(ApiError) as raised:
            weight_request(body)
        assert (raised.value.status, raised.value.field) == (400, field)
    with pytest.raises(ApiError) as raised:
        promote_request({"hold_at": "10"})
    assert raised.value.field == "hold_at"


# ---------------------------------------------------------------- status


def test_status_shows_a_held_rollout_and_what_the_file_routes() -> None:
    weights = {Colour.BLUE: 70, Colour.GREEN: 30}
    r = make_rollout(weights=weights, held="set to 30% on green", pauses=(INF, None, None))
    listed = Routing(app="web", routes=())
    status = report.app_status(
        state=AppState(app="web", colour=Colour.BLUE, image="web:1", recorded=True),
        weights=weights,
        rollout=r,
        interrupted=True,
        containers=[],
        listed=listed,
    )
    assert status["routed"] == {}
    assert (status["rollout"]["held"], status["rollout"]["pauses"]) == (
        "set to 30% on green",
        ["until-resumed", None, None],
    )
    text = report.format_status(json.loads(json.dumps(status)))
    assert "  routed:     nothing (what the file routes now)" in text
    assert (
        "  held:       at blue=70% green=30% (set to 30% on green); `trafficshift resume web` goes on" in text
    )


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "args",
    [
        ["set-weight", "web", "0"],
        ["set-weight", "web", "x"],
        ["set-weight", "web"],
        ["promote", "web", "--hold-at", "101"],
    ],
)
def test_bad_hold_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_hold_at_with_all_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "trafficshift.yml"
    config.write_text(BASE_CONFIG)
    assert main(["promote", "--all", "--hold-at", "10", "-c", str(config)]) == 2
    assert "--hold-at goes with one APP" in capsys.readouterr().err
