"""Readiness of a new colour, checked by trafficshift itself before the colour gets any weight.

Per the contract: with `health.path`, HTTP GET must answer 2xx `healthy_threshold` times in a row; without it,
the image's Docker HEALTHCHECK must report healthy; with neither, the container must stay running for
`interval` x `healthy_threshold`. A container that exits (or is restarted by Docker) fails at once.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Callable

import aiohttp

from trafficshift.containers import container_name
from trafficshift.errors import NotReady
from trafficshift.models import AppSpec, Colour, ContainerInfo, ContainerState, HealthSpec
from trafficshift.ports import ContainerRuntime

ProgressCallback = Callable[[ContainerInfo, str], None]
LOG_LINES = 10
LOG_TIMEOUT = 3.0
# How long a liveness check waits for Docker before it passes without a verdict (`check_alive`).
ALIVE_TIMEOUT = 5.0
# HTTP probes of one container come every `interval` ± this share of it.
JITTER = 0.1


class Mode(enum.StrEnum):
    HTTP = "http"
    HEALTHCHECK = "healthcheck"
    RUNNING = "running"


# ------------------------------------------------------------ pure decisions


def probe_mode(*, health: HealthSpec, info: ContainerInfo) -> Mode:
    """Which check applies: the HTTP path, else the image's HEALTHCHECK (Docker reports it), else running."""
    if health.path:
        return Mode.HTTP
    return Mode.RUNNING if info.health is None else Mode.HEALTHCHECK


def required_streak(*, health: HealthSpec, mode: Mode) -> int:
    """How many good samples in a row make a container ready."""
    if mode is Mode.HEALTHCHECK:
        return 1  # Docker's status already applies the image's own interval and retries
    if mode is Mode.RUNNING:
        # Samples one interval apart: n+1 of them span n intervals of running.
        return health.healthy_threshold + 1
    return health.healthy_threshold


def next_streak(streak: int, *, ok: bool) -> int:
    """Consecutive successes: one failure starts the count again."""
    return streak + 1 if ok else 0


def is_success(status: int) -> bool:
    return 200 <= status < 300


def has_died(state: ContainerState) -> bool:
    """Exited, dead, restarting, or ever restarted by Docker: such a container is not ready, ever.

    Any restart counts, not only those seen while waiting: a crash between start and the first look must
    not pass for a healthy start.
    """
    return state.status != "running" or state.restart_count > 0


def exit_code_of(state: ContainerState) -> int | None:
    """The last exit code, or None when Docker already restarted the container (it resets ExitCode then)."""
    return None if state.status == "running" else state.exit_code


# ------------------------------------------------------------ I/O


async def wait_ready(
    *,
    app: AppSpec,
    containers: ContainerRuntime,
    colour: Colour,
    session: aiohttp.ClientSession,
    on_progress: ProgressCallback | None = None,
) -> list[ContainerInfo]:
    """Wait until every replica of `colour` is ready; NotReady on death or timeout.

    Returns each replica as its last successful probe saw it: its address is one that was seen ready
    (a restart just after the probe would bring a new, unprobed published port).
    """
    expected = {container_name(app=app.name, colour=colour, n=n) for n in range(1, app.replicas + 1)}
    infos = [i for i in await containers.list(app=app.name, colour=colour) if i.name in expected]
    missing = sorted(expected - {i.name for i in infos})
    if missing:
        raise NotReady(f"{app.name} {colour}: containers missing: {', '.join(missing)}")
    # The last thing each probe saw: what a timeout reports.
    progress = {i.name: "not checked yet" for i in infos}
    ready: dict[str, ContainerInfo] = {}

    def report(info: ContainerInfo, message: str) -> None:
        progress[info.name] = message
        if on_progress is not None:
            on_progress(info, message)

    try:
        async with asyncio.timeout(app.health.start_timeout) as deadline, asyncio.TaskGroup() as group:
            for info in infos:
                group.create_task(
                    _wait_one(
                        app=app, containers=containers, info=info, session=session, report=report, ready=ready
                    )
                )
    except BaseExceptionGroup as errors:
        raise _first(errors) from None
    except TimeoutError:
        if not deadline.expired():
            raise
        waiting = "; ".join(f"{name}: {progress[name]}" for name in sorted(progress) if name not in ready)
        raise NotReady(
            f"{app.name} {colour}: not ready within {app.health.start_timeout:g}s ({waiting})"
        ) from None
    return [ready[i.name] for i in infos]


async def _wait_one(
    *,
    app: AppSpec,
    containers: ContainerRuntime,
    info: ContainerInfo,
    session: aiohttp.ClientSession,
    report: ProgressCallback,
    ready: dict[str, ContainerInfo],
) -> None:
    # Polling would notice a death only at the next interval; Docker's wait API tells at once.
    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(_fail_on_exit(containers=containers, name=info.name))
        try:
            ready[info.name] = await _poll(
                app=app, containers=containers, name=info.name, session=session, report=report
            )
        finally:
            watcher.cancel()


async def _poll(
    *,
    app: AppSpec,
    containers: ContainerRuntime,
    name: str,
    session: aiohttp.ClientSession,
    report: ProgressCallback,
) -> ContainerInfo:
    health = app.health
    streak = 0
    state: ContainerState | None = None
    while True:
        # An HTTP probe needs Docker only for the address: asked at the start and once the streak is
        # complete, not every interval (fifty apps starting at once asked it hundreds of times a second).
        # A death in between is not missed: `_fail_on_exit` hears it from Docker's wait API at once.
        look = (
            state is None
            or probe_mode(health=health, info=state.info) is not Mode.HTTP
            or state.info.probe_url is None  # no address yet: Docker tells it
        )
        if look:
            state = await _alive_state(containers=containers, name=name)
        assert state is not None
        mode = probe_mode(health=health, info=state.info)
        need = required_streak(health=health, mode=mode)
        ok, detail = await _probe(mode=mode, state=state, health=health, session=session)
        streak = next_streak(streak, ok=ok)
        if streak >= need and not look:
            # Ready only at the address the probes saw, in the same life of the container.
            latest = await _alive_state(containers=containers, name=name)
            if latest.info.probe_url != state.info.probe_url or latest.restart_count != state.restart_count:
                state, streak = latest, 0
                detail = "moved to a new address; probing it again"
        report(state.info, f"{detail} ({streak}/{need})")
        if streak >= need:
            return state.info
        await asyncio.sleep(cadence(health=health, mode=mode))


async def _alive_state(*, containers: ContainerRuntime, name: str) -> ContainerState:
    """The container's state; NotReady when it is gone, exited or was ever restarted."""
    state = await containers.state(name=name)
    if state is None:
        raise NotReady(f"{name}: the container is gone")
    if has_died(state):
        raise await _died(containers=containers, name=name, exit_code=exit_code_of(state))
    return state


def cadence(*, health: HealthSpec, mode: Mode) -> float:
    """Seconds until the next sample: HTTP probes spread over ±10% of the interval, so that replicas
    started together do not probe (and load the host) in lockstep; Docker's samples one interval apart
    exactly (a streak of them spans the intervals the contract promises)."""
    if mode is Mode.HTTP:
        return health.interval * random.uniform(1 - JITTER, 1 + JITTER)
    return health.interval


async def _probe(
    *, mode: Mode, state: ContainerState, health: HealthSpec, session: aiohttp.ClientSession
) -> tuple[bool, str]:
    if mode is Mode.RUNNING:
        return True, "running"
    if mode is Mode.HEALTHCHECK:
        return state.info.health == "healthy", f"docker health: {state.info.health}"
    if state.info.probe_url is None:
        return False, "no address yet"
    url = f"{state.info.probe_url}{health.path}"
    try:
        # No redirects: the contract asks for a 2xx from the container itself.
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=health.timeout), allow_redirects=False
        ) as response:
            return is_success(response.status), f"GET {health.path}: {response.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, f"GET {health.path}: {type(exc).__name__} {exc}".rstrip()


async def _fail_on_exit(*, containers: ContainerRuntime, name: str) -> None:
    code = await containers.wait_exit(name=name)
    raise await _died(containers=containers, name=name, exit_code=code)


async def _died(*, containers: ContainerRuntime, name: str, exit_code: int | None) -> NotReady:
    try:
        # Docker answers `logs` only once its restart of the container is through (about 1 s here).
        async with asyncio.timeout(LOG_TIMEOUT):
            lines = await containers.logs(name=name, tail=LOG_LINES)
    except TimeoutError:
        lines = ["(Docker did not return the logs in time)"]
    logs = "\n".join(f"  {line}" for line in lines) or "  (no output)"
    how = "exited and was restarted by Docker" if exit_code is None else f"exited with code {exit_code}"
    return NotReady(f"{name} {how} before it was ready; last log lines:\n{logs}")


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    # Prefer the reason over the cancellations it caused in the sibling tasks.
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


async def probe_ready(
    *, app: AppSpec, containers: ContainerRuntime, info: ContainerInfo, session: aiohttp.ClientSession
) -> bool:
    """Probe one running container (e.g. one Docker restarted) until it is ready; False if it never is.

    Unlike `wait_ready`, an earlier restart is no failure here: the service re-adds a replica that Docker
    brought back. It gives up when the container stops, restarts again, changes address, or
    `start_timeout` passes; the next Docker event about it starts a new probe.
    """
    health = app.health
    first = await containers.state(name=info.id)
    if first is None or first.status != "running":
        return False
    streak = 0
    try:
        async with asyncio.timeout(health.start_timeout):
            while True:
                state = await containers.state(name=info.id)
                if (
                    state is None
                    or state.status != "running"
                    or state.restart_count != first.restart_count
                    or state.info.url != info.url
                ):
                    return False
                mode = probe_mode(health=health, info=state.info)
                ok, _ = await _probe(mode=mode, state=state, health=health, session=session)
                streak = next_streak(streak, ok=ok)
                if streak >= required_streak(health=health, mode=mode):
                    return True
                await asyncio.sleep(health.interval)
    except TimeoutError:
        return False


async def check_alive(*, containers: ContainerRuntime, app: AppSpec, colour: Colour) -> None:
    """Raise NotReady when a container of the colour died, or crashed and was restarted, or is unhealthy.

    Used while the colour takes traffic: a crash then is the clearest verdict on a new version, and
    Docker's restart would hide it (and come back on a new published port that was never seen ready).

    Only Docker's answer is a verdict: a check that Docker does not answer within ALIVE_TIMEOUT (a busy
    daemon, or this process's loop stalled) passes, and the next one asks again. A restart in progress
    delays the answer by about a second; the answer then shows the restart.
    """
    bound = asyncio.timeout(ALIVE_TIMEOUT)
    try:
        async with bound:
            # One inspection a replica, by its name: every rollout of a service checks its new colour every
            # `health.interval`, and a listing first (as before) tripled the calls Docker answered.
            for n in range(1, app.replicas + 1):
                name = container_name(app=app.name, colour=colour, n=n)
                state = await containers.state(name=name)
                if state is None or has_died(state):
                    how = "was restarted by Docker" if state and state.restart_count else "stopped"
                    raise NotReady(f"{name} {how} while it was taking traffic")
                if state.info.health == "unhealthy":
                    raise NotReady(
                        f"{name} turned unhealthy (Docker HEALTHCHECK) while it was taking traffic"
                    )
    except TimeoutError:
        if not bound.expired():
            raise
        # No answer, no verdict.
