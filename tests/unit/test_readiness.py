"""The pure decisions of readiness: which check applies, how many good samples, what counts as dead."""

from __future__ import annotations

import pytest

from trafficshift.containers import ContainerState
from trafficshift.models import Colour, ContainerInfo, HealthSpec
from trafficshift.readiness import (
    Mode,
    exit_code_of,
    has_died,
    is_success,
    next_streak,
    probe_mode,
    required_streak,
)


def info(health: str | None = None) -> ContainerInfo:
    return ContainerInfo(
        id="c1",
        name="web-blue-1",
        app="web",
        colour=Colour.BLUE,
        image="web:1",
        running=True,
        health=health,
        url=None,
        probe_url=None,
    )


def state(status: str = "running", *, exit_code: int = 0, restarts: int = 0) -> ContainerState:
    return ContainerState(info=info(), status=status, exit_code=exit_code, restart_count=restarts, error="")


@pytest.mark.parametrize(
    ("path", "docker_health", "mode"),
    [
        ("/healthz", None, Mode.HTTP),
        ("/healthz", "starting", Mode.HTTP),  # the path wins over the image's HEALTHCHECK
        (None, "starting", Mode.HEALTHCHECK),
        (None, "unhealthy", Mode.HEALTHCHECK),
        (None, None, Mode.RUNNING),
    ],
)
def test_probe_mode(path: str | None, docker_health: str | None, mode: Mode) -> None:
    assert probe_mode(health=HealthSpec(path=path), info=info(docker_health)) is mode


@pytest.mark.parametrize(
    ("mode", "threshold", "need"),
    [
        (Mode.HTTP, 2, 2),
        (Mode.HTTP, 1, 1),
        (Mode.HEALTHCHECK, 3, 1),
        (Mode.RUNNING, 2, 3),
        (Mode.RUNNING, 1, 2),
    ],
)
def test_required_streak(mode: Mode, threshold: int, need: int) -> None:
    assert required_streak(health=HealthSpec(healthy_threshold=threshold), mode=mode) == need


def test_streak_restarts_after_a_failure() -> None:
    streak = 0
    for ok in (True, True, False, True):
        streak = next_streak(streak, ok=ok)
    assert streak == 1


@pytest.mark.parametrize(
    ("status", "ok"),
    [(199, False), (200, True), (204, True), (299, True), (301, False), (404, False), (500, False)],
)
def test_only_2xx_is_success(status: int, ok: bool) -> None:
    assert is_success(status) is ok


@pytest.mark.parametrize(
    ("current", "died", "code"),
    [
        (state(), False, None),
        (state("exited", exit_code=3), True, 3),
        (state("restarting", exit_code=137, restarts=1), True, 137),
        (state("running", restarts=1), True, None),  # Docker reset ExitCode when it restarted the container
        (state("dead", exit_code=1), True, 1),
        (state("created"), True, 0),
    ],
)
def test_death(current: ContainerState, died: bool, code: int | None) -> None:
    assert has_died(current) is died
    if died:
        assert exit_code_of(current) == code
