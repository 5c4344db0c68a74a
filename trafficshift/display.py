"""The live display of a rollout on a terminal (rich): step, weights as bars, the hold's time, replicas,
analysis figures so far; redrawn every second below the transitions, which scroll above it as lines.

Loaded only when stderr is a terminal and `--json` is off: `--help`, `check` and logs never import rich.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live as RichLive
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from trafficshift import report
from trafficshift.models import Live

REFRESH_PER_SECOND = 2
BAR_WIDTH = 30
# A hold's clock runs on between two reports of the engine (one a second), but never by more than this.
EXTRAPOLATE = 2.0


class Display:
    """Rollouts in progress, drawn in place; `line` prints above them. Starts on first use."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self._rollouts: dict[str, tuple[Live, float]] = {}
        self._text = ""
        self._live: RichLive | None = None

    def line(self, text: str) -> None:
        self._start()
        self.console.print(Text(text), soft_wrap=True)

    def status(self, text: str) -> None:
        """A line of what is happening now (a pull, a probe) under the rollouts."""
        self._text = text
        self._start()

    def update(self, live: Live) -> None:
        self._rollouts[live.rollout_id] = (live, time.monotonic())
        self._text = ""
        self._start()

    def forget(self, rollout_id: str) -> None:
        """The rollout ended: its panel goes (its last event says how it ended)."""
        self._rollouts.pop(rollout_id, None)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._rollouts.clear()
        self._text = ""

    def _start(self) -> None:
        if self._live is None:
            # stderr is redirected above the display while it runs (a signal's message, say); stdout is
            # left alone: it may be a pipe while stderr is the terminal.
            self._live = RichLive(
                get_renderable=self.render,
                console=self.console,
                refresh_per_second=REFRESH_PER_SECOND,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=True,
            )
            self._live.start()

    def render(self) -> RenderableType:
        now = time.monotonic()
        parts: list[RenderableType] = [_panel(live, now - seen) for live, seen in self._rollouts.values()]
        if self._text:
            parts.append(Text(f"  {self._text}", style="dim"))
        return Group(*parts)


def _panel(live: Live, since: float) -> RenderableType:
    """One rollout: `web  step 1/3  held 7s of 30s, 23s left`, a bar per colour, replicas, figures."""
    head = Text.assemble((live.app, "bold"), "  ", (report.step_text(live), "cyan"))
    if report.step_text(live) != live.phase:
        head.append(f" ({live.phase})")
    if live.hold is not None:
        elapsed, total = live.hold
        elapsed = min(elapsed + min(since, EXTRAPOLATE), total)
        head.append(f"  held {report.hold_text((elapsed, total))}")
    table = Table.grid(padding=(0, 1))
    table.add_column(justify="left")
    table.add_column()
    table.add_column(justify="right")
    for colour, weight in sorted(live.weights.items()):
        bar = ProgressBar(total=100, completed=weight, width=BAR_WIDTH, complete_style=colour_style(colour))
        table.add_row(f"  {colour}", bar, f"{weight}%")
    rows: list[RenderableType] = [head, table]
    for name, state in sorted(live.replicas.items()):
        rows.append(Text.assemble(f"  {name}: ", (state, "green" if state == "ready" else "yellow")))
    for colour, figures in sorted(live.figures.items()):
        rows.append(Text(f"  {colour}: {report.figures_text(figures)}"))
    if live.text and live.hold is None:
        rows.append(Text(f"  {live.text}", style="dim"))
    return Group(*rows)


def colour_style(colour: str) -> str:
    return colour if colour in ("blue", "green") else "white"
