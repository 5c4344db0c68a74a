"""Release hooks: pre_deploy in a one-off container of the new spec, pre_stop in each old container,
post_deploy in one new container (README, "Release hooks"). Where each runs in a rollout is
invariant 14 (docs/ARCHITECTURE.md).

Each runs through the container runtime, bounded by its own timeout. Its output goes line by line to `record`
(the engine makes each line an event of the rollout: `--json`, the service's `/events`, webhooks), and its
last lines end up in what it reports: the failure reason of a pre_deploy, the warning of the others.
"""

from __future__ import annotations

import asyncio
import collections
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trafficshift.durations import format_duration
from trafficshift.errors import HookFailed, TrafficShiftError
from trafficshift.models import AppSpec, Colour, HookSpec
from trafficshift.ports import ContainerRuntime, OutputSink

# Lines of one hook's output recorded as events: a chatty migration must not flood the store and webhooks.
# Past that they are only counted; the last TAIL_LINES still end up in the reason or warning.
RECORDED_LINES = 200
TAIL_LINES = 10
# One line as recorded: enough for an error message, not a whole minified blob.
LINE_CHARS = 300

PRE_DEPLOY, PRE_STOP, POST_DEPLOY = "pre_deploy", "pre_stop", "post_deploy"

Record = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class HookRun:
    """How one hook ran in one place: exited (`exit_code`), or not to its end (`error`)."""

    label: str  # e.g. "pre_stop in web-blue-1"
    exit_code: int | None
    took: float
    tail: tuple[str, ...]
    error: str | None = None  # timed out, or Docker refused it

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        """E.g. `pre_deploy exited 3 after 0.4s; last output: relation "users" exists | rolled back`."""
        how = self.error or f"exited {self.exit_code} after {self.took:.1f}s"
        last = f"; last output: {' | '.join(self.tail)}" if self.tail else "; no output"
        return f"{self.label} {how}{last}"


async def run_hook(
    *, label: str, hook: HookSpec, record: Record, start: Callable[[OutputSink], Awaitable[int]]
) -> HookRun:
    """Run `start` (a runtime call, given the output sink) within the hook's timeout; never raises for the
    hook's own failure, a timeout or Docker's refusal: the caller decides what a failure means."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    seen = 0

    async def on_output(line: str) -> None:
        nonlocal seen
        line = line[:LINE_CHARS]
        tail.append(line)
        seen += 1
        if seen <= RECORDED_LINES:
            await record(f"{label}: {line}")
        elif seen == RECORDED_LINES + 1:
            await record(f"{label}: (more output; only its last {TAIL_LINES} lines are kept)")

    began = time.monotonic()
    bound = asyncio.timeout(hook.timeout)
    code: int | None = None
    error: str | None = None
    try:
        async with bound:
            code = await start(on_output)
    except TimeoutError:
        if not bound.expired():
            raise
        error = f"timed out after {format_duration(hook.timeout)}"
    except TrafficShiftError as exc:  # e.g. the container is gone, Docker refused the exec
        error = f"could not run: {exc}"
    return HookRun(label=label, exit_code=code, took=time.monotonic() - began, tail=tuple(tail), error=error)


async def pre_deploy(*, containers: ContainerRuntime, app: AppSpec, image: str, record: Record) -> None:
    """Run the app's pre_deploy hook, if any, in a one-off container of its new spec; HookFailed unless it
    exits 0 within its timeout (the container is removed either way)."""
    hook = app.hooks.pre_deploy
    if hook is None:
        return
    await record(
        f"{PRE_DEPLOY}: running {shlex.join(hook.command)} in a one-off container of {image}"
        f" (timeout {format_duration(hook.timeout)})"
    )
    run = await run_hook(
        label=PRE_DEPLOY,
        hook=hook,
        record=record,
        start=lambda on_output: containers.run_once(
            app=app, image=image, command=hook.command, purpose=PRE_DEPLOY, on_output=on_output
        ),
    )
    if not run.ok:
        raise HookFailed(run.describe())
    await record(f"{PRE_DEPLOY}: exited 0 after {run.took:.1f}s")


async def pre_stop(*, containers: ContainerRuntime, app: AppSpec, colour: Colour, record: Record) -> None:
    """Run the app's pre_stop hook, if any, in each running container of `colour`, all at once.

    A failure is recorded as a warning, and the colour is stopped anyway: this runs past the point of return.
    """
    hook = app.hooks.pre_stop
    if hook is None:
        return
    running = [c.name for c in await containers.list(app=app.name, colour=colour) if c.running]
    if not running:
        return
    await record(
        f"{PRE_STOP}: running {shlex.join(hook.command)} in {', '.join(running)}"
        f" (timeout {format_duration(hook.timeout)})"
    )
    runs = await asyncio.gather(*(_exec(containers, PRE_STOP, hook, name, record) for name in running))
    for run in runs:
        if run.ok:
            await record(f"{run.label}: exited 0 after {run.took:.1f}s")
        else:
            await record(f"warning: {run.describe()}; stopping it anyway")


async def post_deploy(
    *, containers: ContainerRuntime, app: AppSpec, colour: Colour, record: Record
) -> HookRun | None:
    """Run the app's post_deploy hook, if any, in the first running container of `colour` (the rollout is
    done): a failure is recorded as a warning and returned, never reverted."""
    hook = app.hooks.post_deploy
    if hook is None:
        return None
    running = [c.name for c in await containers.list(app=app.name, colour=colour) if c.running]
    if not running:
        await record(f"warning: {POST_DEPLOY} did not run: no {colour} container runs")
        return HookRun(label=POST_DEPLOY, exit_code=None, took=0.0, tail=(), error="no container runs")
    await record(
        f"{POST_DEPLOY}: running {shlex.join(hook.command)} in {running[0]}"
        f" (timeout {format_duration(hook.timeout)})"
    )
    run = await _exec(containers, POST_DEPLOY, hook, running[0], record)
    if run.ok:
        await record(f"{run.label}: exited 0 after {run.took:.1f}s")
    else:
        await record(f"warning: {run.describe()}; the rollout stays done")
    return run


def _exec(
    containers: ContainerRuntime, kind: str, hook: HookSpec, name: str, record: Record
) -> Awaitable[HookRun]:
    return run_hook(
        label=f"{kind} in {name}",
        hook=hook,
        record=record,
        start=lambda on_output: containers.exec_command(name=name, command=hook.command, on_output=on_output),
    )
