"""The four ways to cut over from v1 to v2, each measured under the same closed-loop load through Traefik.

Each scenario deploys v1, runs the load for a steady period, then cuts over (`t0` .. `t_end`), lets the
load run `settle` seconds more, and turns what the load recorded into a `RunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import (
    LabelDiscovery,
    Workspace,
    is_healthy,
    run_container,
    stop_container,
    wait_serving,
    write_file,
)
from benchmarks.harness import render_load_balancer as render_lb
from tests.support import cli
from tests.support.load import Load, Sample, run_load, share, summarize
from tests.support.traefik import TraefikProc, free_port
from trafficshift.traefik import names

TRAFFICSHIFT, SEED, ROLLOUT, RECREATE = "trafficshift", "seed", "docker-rollout", "recreate"
SCENARIOS = (TRAFFICSHIFT, SEED, ROLLOUT, RECREATE)

_STEP = re.compile(r"^step (\d+)/(\d+):")
_CONFIRMED = re.compile(r"^step (\d+)/(\d+) confirmed in ([0-9.]+)s")


@dataclass(frozen=True)
class Params:
    """Timings of one benchmark invocation (the defaults are the full benchmark)."""

    start_delay: float = 3.0  # seconds the app takes before it listens
    concurrency: int = 8
    steady: float = 5.0  # load before the cutover: the steady-state latency
    settle: float = 2.0  # load after the cutover ended
    seed_sleep: float = 5.0  # the seed's `sleep 5s`
    steps: tuple[int, ...] = (10, 25, 50, 100)
    pause: float = 3.0
    drain: float = 2.0
    health_interval: float = 0.25
    healthy_threshold: int = 2
    stop_timeout: float = 10.0

    @classmethod
    def smoke(cls) -> Params:
        return cls(
            start_delay=1.0,
            concurrency=4,
            steady=1.0,
            settle=0.5,
            seed_sleep=2.0,
            steps=(10, 50, 100),
            pause=1.0,
            drain=0.5,
            health_interval=0.2,
        )


@dataclass(frozen=True)
class Images:
    v1: str
    v2: str


@dataclass(frozen=True)
class StepResult:
    step: int
    weight: int  # configured % on the new colour
    observed: float  # % of the requests held at this step that v2 answered
    requests: int
    confirm: float  # the promote's "step confirmed in": its write of the file until the API showed it
    write_to_api: float | None = None  # the file's mtime until the API showed it (Traefik alone)


@dataclass(frozen=True)
class RunResult:
    scenario: str
    run: int
    requests: int
    failed: int
    failed_span: float  # seconds from the first failed request to the last
    steady_p50: float | None
    steady_p99: float | None
    cutover_p50: float | None
    cutover_p99: float | None
    wall: float  # seconds from the start of the cutover until it is complete
    failures: dict[str, int] = field(default_factory=dict)  # kind ("HTTP 502", "ServerDisconnectedError")
    steps: tuple[StepResult, ...] = ()
    extra: dict[str, float] = field(default_factory=dict)


def measure(
    *,
    scenario: str,
    run: int,
    load: Load,
    steady_from: float,
    t0: float,
    t_end: float,
    steps: tuple[StepResult, ...] = (),
    extra: dict[str, float] | None = None,
) -> RunResult:
    samples = load.samples
    everything = summarize(samples)
    # Latency of the answered requests: a refused connection is fast, and counted among the failures.
    steady = summarize(s for s in samples if steady_from <= s.started < t0 and not s.failed)
    cutover = summarize(s for s in samples if t0 <= s.started < t_end and not s.failed)
    return RunResult(
        scenario=scenario,
        run=run,
        requests=everything.requests,
        failed=everything.failed,
        failed_span=everything.failed_span,
        steady_p50=steady.p50,
        steady_p99=steady.p99,
        cutover_p50=cutover.p50,
        cutover_p99=cutover.p99,
        wall=t_end - t0,
        failures=dict(Counter(_kind(s) for s in samples if s.failed)),
        steps=steps,
        extra=extra or {},
    )


def _kind(sample: Sample) -> str:
    if sample.status is not None:
        return f"HTTP {sample.status}"
    return (sample.error or "error").split(":", 1)[0]


def _load(traefik: TraefikProc, name: str, params: Params) -> Load:
    return run_load(url=traefik.web_url + "/", host=f"{name}.localhost", concurrency=params.concurrency)


async def _steady(load: Load, params: Params) -> float:
    """Let the load warm up, run `params.steady` seconds, and return the mark where steady state began."""
    await load.wait_for(requests=params.concurrency * 4, within=30)
    steady_from = Load.mark()
    await asyncio.sleep(params.steady)
    return steady_from


# ---------------------------------------------------------------------- trafficshift promote


async def run_trafficshift(
    ws: Workspace, traefik: TraefikProc, images: Images, params: Params, *, run: int
) -> RunResult:
    app = f"{ws.prefix}-ts{run}"
    folder = ws.root / app
    folder.mkdir()
    config = cli.write_config(
        folder / "trafficshift.yml",
        traefik=traefik,
        apps={
            app: {
                "image": images.v1,
                "health": {
                    "path": "/healthz",
                    "interval": f"{params.health_interval * 1000:.0f}ms",
                    "healthy_threshold": params.healthy_threshold,
                    "start_timeout": "60s",
                },
                "rollout": {
                    "steps": list(params.steps),
                    "pause": f"{params.pause * 1000:.0f}ms",
                    "drain": f"{params.drain * 1000:.0f}ms",
                    "stop_timeout": f"{params.stop_timeout:.0f}s",
                },
            }
        },
    )
    first = await cli.run("promote", app, config=config)
    if first.code != 0:
        raise RuntimeError(f"first deploy of {app} failed ({first.code}): {first.stderr.strip()}")
    await wait_serving(web_url=traefik.web_url, host=f"{app}.localhost", body="v1")
    try:
        async with _load(traefik, app, params) as load:
            steady_from = await _steady(load, params)
            t0 = Load.mark()
            async with WeightWatcher(
                api_url=traefik.api_url, app=app, dynamic_dir=traefik.dynamic_dir
            ) as seen:
                events, code, stderr = await promote(config, app, images.v2)
            t_end = Load.mark()
            await asyncio.sleep(params.settle)
        if code != 0:
            raise RuntimeError(f"promote of {app} failed ({code}): {stderr.strip()}")
        steps = _steps(events, load.samples, new_body="v2", seen=seen.applied)
        floor = params.start_delay + params.pause * (len(params.steps) - 1) + params.drain
        return measure(
            scenario=TRAFFICSHIFT,
            run=run,
            load=load,
            steady_from=steady_from,
            t0=t0,
            t_end=t_end,
            steps=steps,
            extra={"floor": floor, "overhead": (t_end - t0) - floor, **_phases(events, t0=t0, t_end=t_end)},
        )
    finally:
        write_file(traefik.dynamic_dir, app, None)


Events = list[tuple[float, dict[str, Any]]]


async def promote(
    config: Path, app: str, image: str, *, on_event: Callable[[dict[str, Any]], None] | None = None
) -> tuple[Events, int, str]:
    """Run `trafficshift promote --json`: its events (with the time each line arrived), code, stderr."""
    proc = await cli.start("promote", app, "--image", image, "--json", config=config)
    assert proc.stdout is not None
    assert proc.stderr is not None
    events: Events = []
    err = asyncio.create_task(proc.stderr.read())
    try:
        while line := await proc.stdout.readline():
            if line.startswith(b"{"):
                event = json.loads(line)
                events.append((time.monotonic(), event))
                if on_event is not None:
                    on_event(event)
        code = await proc.wait()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    finally:
        stderr = (await err).decode(errors="replace")
    return events, code, stderr


def _steps(
    events: Events,
    samples: tuple[Sample, ...],
    *,
    new_body: str,
    seen: list[tuple[dict[str, int], float]] | None = None,
) -> tuple[StepResult, ...]:
    """Each step's configured weight against the share of `new_body` while the step was held."""
    found: list[StepResult] = []
    current: tuple[int, int] | None = None  # (step, weight on the new colour)
    confirmed: tuple[float, float] | None = None  # (when, seconds it took)
    new_colour: str | None = None

    def close(until: float) -> None:
        nonlocal confirmed
        if current is None or confirmed is None:
            return
        window = [s for s in samples if confirmed[0] <= s.started < until]
        found.append(
            StepResult(
                step=current[0],
                weight=current[1],
                observed=100 * share(window, new_body),
                requests=len(window),
                confirm=confirmed[1],
                write_to_api=_write_to_api(seen or [], new_colour or "", current[1]),
            )
        )
        confirmed = None

    for at, event in events:
        message = str(event.get("message", ""))
        weights: dict[str, int] = event.get("weights") or {}
        if m := _STEP.match(message):
            close(at)
            if new_colour is None:
                # The colour that is not the only one in the weights before the first step.
                new_colour = (
                    min(weights, key=lambda c: weights[c]) if len(weights) > 1 else next(iter(weights))
                )
            current = (int(m.group(1)), weights.get(new_colour, 0))
        elif m := _CONFIRMED.match(message):
            confirmed = (at, float(m.group(3)))
        elif event.get("state") in ("cleaning", "done", "aborting") or (
            # The last step (100%) is held through the drain, which writes the same weights again.
            event.get("state") == "draining" and current is not None and current[1] < 100
        ):
            close(at)
            current = None
    return tuple(found)


def _write_to_api(seen: list[tuple[dict[str, int], float]], colour: str, weight: int) -> float | None:
    for weights, latency in seen:
        if any(name.endswith(f"-{colour}") and w == weight for name, w in weights.items()):
            return latency
    return None


class WeightWatcher:
    """Polls Traefik's API for the app's weights; each change is timed against the dynamic file's mtime.

    That is the time from the file write to the API showing it, apart from trafficshift's own work around
    a step (listing containers, rendering, polling), which the promote's "confirmed in" includes.
    """

    def __init__(self, *, api_url: str, app: str, dynamic_dir: Path, poll: float = 0.01) -> None:
        self.url = f"{api_url}/api/http/services/{names.qualified(names.weighted_service(app))}"
        self.path = dynamic_dir / f"{app}.yml"
        self.poll = poll
        self.applied: list[tuple[dict[str, int], float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        last: dict[str, int] | None = None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                weights = None
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError, TypeError):
                    async with session.get(self.url) as response:
                        if response.status == 200:
                            doc = await response.json()
                            weights = {c["name"]: int(c["weight"]) for c in doc["weighted"]["services"]}
                if weights is not None and weights != last:
                    seen = time.time()
                    with contextlib.suppress(FileNotFoundError):
                        # mtime is when the content was written (the rename keeps it): the write.
                        self.applied.append((weights, seen - self.path.stat().st_mtime))
                    last = weights
                await asyncio.sleep(self.poll)

    async def __aenter__(self) -> WeightWatcher:
        self._task = asyncio.create_task(self._watch(), name=f"watch-{self.path.stem}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _phases(events: list[tuple[float, dict[str, Any]]], *, t0: float, t_end: float) -> dict[str, float]:
    """Seconds spent in each part of the promote, from the time its events arrived."""
    first: dict[str, float] = {}
    for at, event in events:
        first.setdefault(str(event.get("state")), at)
    marks = [
        ("started", t0),
        *((k, first[k]) for k in ("ready", "draining", "cleaning", "done") if k in first),
    ]
    marks.append(("exited", t_end))
    out = {}
    for (name, at), (_, after) in itertools.pairwise(marks):
        out[f"phase_{name}"] = after - at
    return out


# ------------------------------------------------------------- label discovery: the seed, docker-rollout


# docker-rollout looks at the new containers' health once a second, for 60 s at most.
ROLLOUT_POLL = 1.0
ROLLOUT_TIMEOUT = 60.0


async def run_seed(
    ws: Workspace, traefik: TraefikProc, images: Images, params: Params, *, run: int
) -> RunResult:
    """Docker label discovery + Traefik health check (1 s) + retry (3); start v2, sleep, stop v1."""

    async def sleep(_: str) -> None:
        await asyncio.sleep(params.seed_sleep)

    return await _label_cutover(ws, traefik, images, params, scenario=SEED, run=run, wait=sleep, health=None)


async def run_docker_rollout(
    ws: Workspace, traefik: TraefikProc, images: Images, params: Params, *, run: int
) -> RunResult:
    """What docker-rollout does, set up as its docs say: Traefik's Docker provider on labels with a retry
    middleware, and a Compose healthcheck, so that Traefik skips a container until Docker calls it healthy.

    `docker rollout web`: scale the service to twice its size (v2 beside v1), wait until the new container
    is healthy (polled once a second), then stop and remove the old one. Written here from that description
    (not docker-rollout's script); the healthcheck probes as often as trafficshift's readiness does.
    """

    async def until_healthy(name: str) -> None:
        async with asyncio.timeout(ROLLOUT_TIMEOUT):
            while True:
                if await is_healthy(ws.docker, name=name):
                    return
                await asyncio.sleep(ROLLOUT_POLL)

    return await _label_cutover(
        ws,
        traefik,
        images,
        params,
        scenario=ROLLOUT,
        run=run,
        wait=until_healthy,
        health=params.health_interval,
    )


async def _label_cutover(
    ws: Workspace,
    traefik: TraefikProc,
    images: Images,
    params: Params,
    *,
    scenario: str,
    run: int,
    wait: Callable[[str], Awaitable[None]],
    health: float | None,
) -> RunResult:
    """v1 and v2 as containers of one label group (every running one a server, healthy ones only when they
    have a healthcheck): start v2 beside v1, `wait` (given v2's name), stop and remove v1."""
    group = f"{ws.prefix}-{scenario}{run}"
    async with LabelDiscovery(docker=ws.docker, group=group, dynamic_dir=traefik.dynamic_dir) as discovery:
        await run_container(
            ws.docker, name=f"{group}-v1", image=images.v1, group=group, health_interval=health
        )
        await wait_serving(web_url=traefik.web_url, host=f"{group}.localhost", body="v1", within=60)
        async with _load(traefik, group, params) as load:
            steady_from = await _steady(load, params)
            t0 = Load.mark()
            await run_container(
                ws.docker, name=f"{group}-v2", image=images.v2, group=group, health_interval=health
            )
            await wait(f"{group}-v2")
            waited = Load.mark()
            await stop_container(ws.docker, name=f"{group}-v1", grace=params.stop_timeout)
            t_end = Load.mark()
            await asyncio.sleep(params.settle)
        return measure(
            scenario=scenario,
            run=run,
            load=load,
            steady_from=steady_from,
            t0=t0,
            t_end=t_end,
            extra={"file_changes": float(len(discovery.changes)), "waited": waited - t0},
        )


# ---------------------------------------------------------------------- docker-compose up -d


async def run_recreate(
    ws: Workspace, traefik: TraefikProc, images: Images, params: Params, *, run: int
) -> RunResult:
    """What `docker-compose up -d` does to a changed service: stop and remove it, start the new one."""
    name = f"{ws.prefix}-recreate{run}"
    port = free_port()
    write_file(
        traefik.dynamic_dir, name, render_lb(name=name, servers=[f"http://127.0.0.1:{port}"], health=False)
    )
    try:
        await run_container(ws.docker, name=name, image=images.v1, group=name, host_port=port)
        await wait_serving(web_url=traefik.web_url, host=f"{name}.localhost", body="v1")
        async with _load(traefik, name, params) as load:
            steady_from = await _steady(load, params)
            t0 = Load.mark()
            await stop_container(ws.docker, name=name, grace=params.stop_timeout)
            await run_container(ws.docker, name=name, image=images.v2, group=name, host_port=port)
            returned = Load.mark()
            # `up -d` returns here, but the service is back only when the new version answers.
            await wait_serving(web_url=traefik.web_url, host=f"{name}.localhost", body="v2", within=60)
            t_end = Load.mark()
            await asyncio.sleep(params.settle)
        return measure(
            scenario=RECREATE,
            run=run,
            load=load,
            steady_from=steady_from,
            t0=t0,
            t_end=t_end,
            extra={"command_returned": returned - t0},
        )
    finally:
        write_file(traefik.dynamic_dir, name, None)
