"""`trafficshift doctor`: is this host ready for a promote? One line per check, each failure with its fix.

Each check goes through the adapter a promote uses (Containers, TraefikApi, the metrics scrape, the atomic
dynamic-file writer), so a pass here means the same call passes in a rollout. The watched-folder check is
the one no other command can make before it matters: a file written into `dynamic_dir` that Traefik never
loads looks like a Traefik that is merely slow, until a step times out. The probe is written as a rollout
writes its files, so Traefik never reads half of it: invariant 3 (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

import aiodocker
import aiohttp

from trafficshift.containers import Containers
from trafficshift.errors import TrafficShiftError, UnreachableError
from trafficshift.hosts import client_for
from trafficshift.models import Config
from trafficshift.traefik import files
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.scrape import scrape

# How long the probe file may take to show in Traefik's API: Traefik's default providers throttle is 2 s
# (the shipped traefik.yml sets 200ms), plus the reload itself.
PROBE_TIMEOUT = 6.0
PROBE_POLL = 0.1
PROBE_PREFIX = "trafficshift-doctor-"
# A probe file older than this was left by a `doctor` that was killed (one run takes at most ~2 x 6 s).
STALE_PROBE = 60.0
# Docker's clock against this host's: beyond this, event times and schedules disagree.
CLOCK_TOLERANCE = 2.0
# Exit code when a check fails: that of Docker or Traefik unreachable (README, exit-code table).
EXIT_FAILED = UnreachableError.exit_code


@dataclass(frozen=True)
class Check:
    """The outcome of one check: `ok` True (passed), False (failed: `fix` says what to do), None (skipped)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        text = f"{mark}  {self.name}: {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix else text


def _failed(name: str, exc: BaseException, fix: str) -> Check:
    detail = str(exc) or type(exc).__name__
    return Check(name, False, detail, fix)


async def check_docker(docker: aiodocker.Docker) -> list[Check]:
    """The engine answers (as a promote checks it), and its clock agrees with this host's."""
    try:
        await Containers(docker).ping()
    except TrafficShiftError as exc:
        fix = "start Docker, or point DOCKER_HOST at it; this user must be able to use its socket"
        return [_failed("docker", exc, fix), Check("clock", None, "Docker did not answer")]
    checks = [Check("docker", True, f"the Docker engine answers at {docker.docker_host}")]
    try:
        before = time.time()
        info = await asyncio.wait_for(docker.system.info(), timeout=10)
        local = (before + time.time()) / 2
        engine = datetime.fromisoformat(str(info["SystemTime"])).timestamp()
    except (aiodocker.DockerError, aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        return [*checks, Check("clock", None, f"Docker did not tell its time: {exc!r}")]
    return [*checks, check_clock(engine=engine, local=local)]


def check_clock(*, engine: float, local: float) -> Check:
    """Docker's time against this host's (Unix seconds, read at the same moment)."""
    skew = engine - local
    if abs(skew) > CLOCK_TOLERANCE:
        fix = "sync both clocks (NTP, chrony); rollout times, schedules and Docker's events rely on them"
        return Check("clock", False, f"Docker's clock is {skew:+.1f}s off this host's", fix)
    return Check("clock", True, f"Docker's clock is within {abs(skew):.1f}s of this host's")


async def check_traefik(config: Config, session: aiohttp.ClientSession) -> list[Check]:
    """Traefik's API and metrics answer, and Traefik loads what is written into `dynamic_dir`."""
    # A fleet (`api_urls`, `metrics_urls`): the first instance here; a promote pings every one.
    api_url = next(iter(config.traefik.apis), None)
    metrics_url = next(iter(config.traefik.metrics), None)
    dynamic_dir = config.traefik.dynamic_dir
    checks: list[Check] = []
    api = TraefikApi(api_url=api_url, session=session) if api_url else None
    if api is None:
        checks.append(Check("traefik api", None, "traefik.api_url is not set; weights are not confirmed"))
    else:
        try:
            await api.ping()
            checks.append(Check("traefik api", True, f"Traefik's API answers at {api_url}"))
        except TrafficShiftError as exc:
            fix = "start Traefik, or set traefik.api_url to its API entrypoint (api.insecure: true)"
            checks.append(_failed("traefik api", exc, fix))
            api = None
    if metrics_url is None:
        checks.append(Check("traefik metrics", None, "traefik.metrics_url is not set; no `analysis`"))
    else:
        try:
            await scrape(url=metrics_url, session=session)
            checks.append(Check("traefik metrics", True, f"Prometheus metrics at {metrics_url}"))
        except TrafficShiftError as exc:
            fix = "set traefik.metrics_url to Traefik's metrics entrypoint (metrics.prometheus)"
            checks.append(_failed("traefik metrics", exc, fix))
    if dynamic_dir is None:
        checks.append(Check("watched folder", None, "traefik.provider is redis: no dynamic folder"))
    elif api is None:
        checks.append(Check("watched folder", None, "needs Traefik's API to read the probe back"))
    elif not dynamic_dir.is_dir():
        fix = "set traefik.dynamic_dir to the folder of Traefik's providers.file.directory"
        checks.append(Check("watched folder", False, f"{dynamic_dir} does not exist", fix))
    else:
        checks.append(await check_watched(dynamic_dir, api))
    return checks


def _probe_text(name: str) -> str:
    # A service alone, no router: Traefik loads and lists it, but routes no request to it.
    return f"http:\n  services:\n    {name}:\n      loadBalancer:\n        servers:\n          - url: http://127.0.0.1:9\n"


async def _poll(until: Callable[[], Awaitable[bool]], *, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        if await until():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(PROBE_POLL)


async def check_watched(dynamic_dir: Path, api: TraefikApi) -> Check:
    """Write a uniquely named probe file into `dynamic_dir`, see it in Traefik's API, then remove it."""
    name = f"{PROBE_PREFIX}{secrets.token_hex(4)}"
    qualified = f"{name}@file"
    remove_stale_probes(dynamic_dir)
    try:
        files.write_dynamic(dynamic_dir=dynamic_dir, app=name, text=_probe_text(name))
    except OSError as exc:
        fix = f"let this user write into {dynamic_dir} (see the dynamic folder check)"
        return Check("watched folder", False, f"cannot write a probe file: {exc}", fix)
    try:
        seen = await _poll(lambda: api.has_service(qualified), within=PROBE_TIMEOUT)
    except TrafficShiftError as exc:
        seen, error = False, str(exc)
    else:
        error = ""
    finally:
        with contextlib.suppress(OSError):  # it could be written: it can be removed, bar a race
            files.write_dynamic(dynamic_dir=dynamic_dir, app=name, text=None)
    if not seen:
        detail = error or (
            f"Traefik did not load a probe file written to {dynamic_dir} within {PROBE_TIMEOUT:g}s:"
            " it does not watch this folder"
        )
        fix = (
            "set traefik.dynamic_dir to the folder of Traefik's providers.file.directory (watch: true),"
            " as Traefik sees it through its mount (docker-compose.traefik.yml: ./traefik/dynamic)"
        )
        return Check("watched folder", False, detail, fix)
    # Gone again before the next command runs: a leftover probe would do no harm, but say nothing of it.
    await _poll(lambda: _absent(api, qualified), within=PROBE_TIMEOUT)
    return Check("watched folder", True, f"Traefik loads what is written to {dynamic_dir}")


def remove_stale_probes(dynamic_dir: Path, *, now: float | None = None) -> None:
    """Remove probe files a killed `doctor` left; younger ones may be another `doctor`'s, still running."""
    oldest = (time.time() if now is None else now) - STALE_PROBE
    for path in dynamic_dir.glob(f"{PROBE_PREFIX}*.yml"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: the probe goes on
            if path.stat().st_mtime < oldest:
                path.unlink()


async def _absent(api: TraefikApi, qualified: str) -> bool:
    return not await api.has_service(qualified)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_folder(name: str, path: Path) -> Check:
    """A folder this user can write into, or that it can create (its nearest existing parent is writable)."""
    if path.is_dir():
        if _writable(path):
            return Check(name, True, f"{path} is writable")
        return Check(name, False, f"{path} is not writable by this user", f"chown or chmod {path}")
    if path.exists():
        return Check(name, False, f"{path} is not a folder", "remove it, or point the config elsewhere")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and _writable(parent):
        return Check(name, True, f"{path} does not exist yet; it can be created")
    return Check(name, False, f"{path} does not exist and {parent} is not writable", f"mkdir -p {path}")


def check_state(state_dir: Path) -> Check:
    """`state_dir` can be written, and is this user's and private, as the state store demands (exit 2)."""
    check = check_folder("state_dir", state_dir)
    if not check.ok or not state_dir.is_dir():
        return check
    info = state_dir.stat()
    if info.st_uid != os.geteuid():
        fix = "run trafficshift as its owner, or choose another state_dir"
        return Check("state_dir", False, f"{state_dir} belongs to uid {info.st_uid}, not to this user", fix)
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        fix = f"check its content, then chmod 700 {state_dir}"
        return Check("state_dir", False, f"{state_dir} is writable by other users (mode {mode:04o})", fix)
    return check


def check_token(token: Path) -> Check | None:
    """The service's token file (when there is one) is readable by its owner only."""
    try:
        mode = stat.S_IMODE(token.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        fix = f"chmod 600 {token}"
        return Check("token", False, f"{token} is readable by others (mode {mode:04o})", fix)
    return Check("token", True, f"{token} is readable by its owner only")


async def check_engines(config: Config) -> list[Check]:
    """The local engine's checks; with `hosts`, each host's, named after it (`docker node-b`)."""
    if not config.hosts:
        try:
            docker = aiodocker.Docker()
        except Exception as exc:  # aiodocker raises plain ValueError/OSError when it finds no socket
            return [_failed("docker", exc, "start Docker, or point DOCKER_HOST at it")]
        try:
            return await check_docker(docker)
        finally:
            await docker.close()
    checks: list[Check] = []
    for host in config.hosts:
        try:
            docker = client_for(host)
        except UnreachableError as exc:
            checks.append(_failed(f"docker {host.name}", exc, f"fix host {host.name} in {config.path.name}"))
            continue
        try:
            found = await check_docker(docker)
        finally:
            await docker.close()
        checks += [replace(check, name=f"{check.name} {host.name}") for check in found]
    return checks


async def run_checks(config: Config) -> list[Check]:
    """Every check, in the order a promote needs them."""
    checks = await check_engines(config)
    if config.traefik.dynamic_dir is not None:  # none with provider: redis
        checks.append(check_folder("dynamic folder", config.traefik.dynamic_dir))
    async with aiohttp.ClientSession() as session:
        checks += await check_traefik(config, session)
    checks.append(check_state(config.state_dir))
    tokens = (config.service.token_file, config.state_dir / "service.token")
    checks += [check for token in tokens if token and (check := check_token(token))]
    return checks


async def doctor_command(config: Config, *, out: TextIO) -> int:
    """Run the checks, print one line each; 0 when none failed, else EXIT_FAILED."""
    checks = await run_checks(config)
    for check in checks:
        print(check.line(), file=out)
    failed = [check.name for check in checks if check.ok is False]
    if failed:
        print(f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}", file=out)
        return EXIT_FAILED
    print("all checks passed", file=out)
    return 0
