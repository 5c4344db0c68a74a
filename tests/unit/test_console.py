"""What a rollout command shows: heartbeat lines without a terminal, the live display's picture with one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from trafficshift import console
from trafficshift.display import Display
from trafficshift.models import Figures, Live

HELD = Live(
    rollout_id="r1",
    app="web",
    phase="shifting",
    step=0,
    steps=2,
    weights={"blue": 90, "green": 10},
    hold=(12.0, 30.0),
    replicas={"web-green-1": "ready"},
    figures={
        "green": Figures(requests=40, error_rate=0.025, p95=0.012),
        "blue": Figures(requests=360, error_rate=0.0, p95=None),
    },
)


def test_without_a_terminal_a_hold_prints_a_heartbeat_every_so_often(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    printer = console.Printer(as_json=False, err=err)
    clock = [1000.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    printer._last_line = clock[0]
    for _ in range(25):  # a report a second for 25 s
        clock[0] += 1.0
        printer.live(HELD)
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines  # at 10 s and 20 s
    assert "web [shifting] step 1/2; holding 12s of 30s, 18s left" in lines[0]
    assert "green: 40 requests, 5xx 2.5%, p95 0.012s" in lines[0]
    assert "blue: 360 requests, 5xx 0.0%, p95 -" in lines[0]
    assert lines[0].endswith("(blue=90% green=10%)")
    # Any report after 10 s of silence is one (a slow start, say); --json prints nothing but events.
    clock[0] += 10
    waiting = Live(rollout_id="r1", app="web", phase="starting", step=-1, steps=2, weights={}, text="probing")
    printer.live(waiting)
    assert err.getvalue().splitlines()[-1].endswith("web [starting]; probing"), err.getvalue()
    quiet = console.Printer(as_json=True, err=err)
    clock[0] += 60
    quiet.live(HELD)
    assert len(err.getvalue().splitlines()) == 3


def test_the_display_shows_step_weights_hold_replicas_and_figures() -> None:
    display = Display(io.StringIO())
    display.update(HELD)
    out = Console(file=io.StringIO(), width=100, color_system=None)
    out.print(display.render())
    screen = out.file.getvalue()  # type: ignore[attr-defined]
    assert "web  step 1/2 (shifting)  held 12s of 30s, 18s left" in screen
    assert "blue" in screen
    assert "90%" in screen
    assert "10%" in screen
    assert "web-green-1: ready" in screen
    assert "green: 40 requests, 5xx 2.5%, p95 0.012s" in screen
    display.forget("r1")
    display.stop()
