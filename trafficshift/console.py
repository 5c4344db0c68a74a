"""What a rollout command shows a person (or prints as JSON), its exit code, and its signal handling."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from trafficshift import report
from trafficshift.models import Event, Live, Outcome, Rollout

if TYPE_CHECKING:
    from trafficshift.display import Display

# Errors carry their own exit code (errors.py); these are the codes of a rollout that ended.
EXIT_OK, EXIT_ROLLED_BACK = 0, 1


# Without a terminal (CI logs), a line at least this often while a rollout waits: a runner that kills a job
# silent for a while must not kill a rollout in a long pause.
HEARTBEAT = 10.0
ENDED = frozenset({"done", "aborted", "failed"})
# Displays drawing now: a second signal exits at once, but not with the terminal's cursor still hidden.
_DRAWING: list[Display] = []


class Printer:
    """Events and progress for a person (stderr), or one JSON event per line (stdout) with --json.

    On a terminal, a live display (`display`, with rich) under the transitions; without one, a line per
    transition and a heartbeat line every HEARTBEAT seconds while a rollout holds.
    """

    def __init__(self, *, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err
        self._display: Display | None = None
        if not as_json and err.isatty():
            from trafficshift.display import Display  # rich: only when there is a terminal to draw on

            self._display = Display(err)
            _DRAWING.append(self._display)
            # Whatever way the command ends (an error raised through main, say), the terminal is left as
            # it was found: the display's region cleared, the cursor shown.
            atexit.register(self._display.stop)
        self._last_line = time.monotonic()

    def event(self, e: Event) -> None:
        if self.as_json:
            print(json.dumps(report.event_dict(e)), file=self.out, flush=True)
            return
        self._say(report.format_event(e))
        if self._display is not None and str(e.phase) in ENDED:
            self._display.forget(e.rollout_id)

    def progress(self, text: str) -> None:
        if self._display is not None:
            self._display.status(text)

    def live(self, live: Live) -> None:
        """Where a rollout stands (each second while it holds): drawn, or a heartbeat line now and then.

        Any report after HEARTBEAT seconds without a line is one: a hold, a slow start, a held step.
        """
        if self.as_json:
            return
        if self._display is not None:
            self._display.update(live)
        elif time.monotonic() - self._last_line >= HEARTBEAT:
            self._say(report.format_heartbeat(live, at=time.time()))

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()

    def _say(self, line: str) -> None:
        self._last_line = time.monotonic()
        if self._display is not None:
            self._display.line(line)
        else:
            print(line, file=self.err, flush=True)


def outcome_code(rollout: Rollout, *, command: str, as_json: bool, took: float) -> int:
    """Say how the rollout ended (people only: --json output ends with the final event) and map it."""

    def say(text: str) -> None:
        if not as_json:
            print(text)

    if rollout.outcome is Outcome.DONE:
        serves = f"{rollout.app} serves {rollout.to_image} ({rollout.to_colour})"
        if command == "abort":
            say(f"too late to abort: rollout {rollout.id} had passed the point of return; {serves}")
        else:
            say(f"done: {serves} after {took:.0f}s")
        return EXIT_OK
    back = f"{rollout.from_colour or 'nothing'} ({rollout.from_image or '-'})"
    if command == "abort":
        say(f"aborted: all traffic of {rollout.app} is on {back}")
        return EXIT_OK
    print(
        f"trafficshift: {rollout.app}: {rollout.outcome}: {rollout.reason}; all traffic is on {back}",
        file=sys.stderr,
    )
    return EXIT_ROLLED_BACK


def install_signal_handlers(interrupt: Callable[[str], None]) -> None:
    """First SIGINT/SIGTERM: abort at the next safe point. A second one: exit at once."""
    import asyncio

    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_signal(signum: int) -> None:
        if seen:
            for display in _DRAWING:
                display.stop()  # gives the terminal its cursor back
            print("\ntrafficshift: second signal, exiting now", file=sys.stderr)
            os._exit(128 + signum)
        seen.append(signum)
        name = signal.Signals(signum).name
        print(f"\ntrafficshift: {name}: aborting (send it again to exit at once)", file=sys.stderr)
        interrupt(f"interrupted by {name}")

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
