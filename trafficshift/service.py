"""`trafficshift serve`: the HTTP API, the Docker-event provider and the scheduler over one set of adapters.

Start-up: interrupted rollouts are aborted, every app's file is reconciled with its live containers, and
overdue schedules run (within `service.schedule_grace`) or are recorded as missed. While it listens, the
service records itself in `<state_dir>/service.json` (the CLI then runs rollouts in it). SIGTERM/SIGINT:
refuse new rollouts and aborts at once (503, also on open keep-alive connections), close the listener and
every connection (HTTP_GRACE for requests in flight), then let each running rollout, also one started in
that grace, reach a safe point and go back (as the CLI does); exit within SHUTDOWN_TIMEOUT. A second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import aiodocker
import aiohttp
from aiohttp import web

from . import api
from .config import validate_listen
from .containers import Containers
from .errors import UnreachableError, UsageError
from .models import Config
from .provider import Provider
from .runner import Runner
from .scheduler import Scheduler
from .schedules import Schedule, ScheduleStore
from .service_metrics import ServiceMetrics
from .state import StateStore
from .traefik import TraefikApi

log = logging.getLogger("trafficshift.service")

TOKEN_ENV = "TRAFFICSHIFT_TOKEN"
# Written when no token is configured (loopback only): the CLI on this host reads it from here.
GENERATED_TOKEN = "service.token"
# `{"pid", "url", "started_at"}` while the service listens: the CLI on this host finds it here and runs
# promote, abort and rollback through it.
SERVICE_FILE = "service.json"
# Rollouts get this long to go back at shutdown; what is left is cancelled (its record lets the next start
# finish it). Requests in flight get HTTP_GRACE first (a promote in flight is refused or interrupted).
SHUTDOWN_TIMEOUT = 30.0
HTTP_GRACE = 2.0


def is_loopback(host: str) -> bool:
    """Whether `host` (from host:port, IPv6 in brackets) only listens on this machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name could resolve anywhere


def split_listen(listen: str) -> tuple[str, int]:
    if why := validate_listen(listen):
        raise UsageError(f"--listen: {why}")
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def configured_token(config: Config) -> tuple[str, str] | None:
    """The token the user chose and where: `$TRAFFICSHIFT_TOKEN`, else `service.token_file`; else None."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    path = config.service.token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"service.token_file: cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise UsageError(f"service.token_file: {path} is empty")
    return token, str(path)


def resolve_token(config: Config, *, listen_host: str) -> tuple[str, str]:
    """The bearer token and where it came from; refuse a non-loopback address without a configured one."""
    configured = configured_token(config)
    if configured is not None:
        return configured
    if not is_loopback(listen_host):
        raise UsageError(
            f"refusing to listen on {listen_host} without a token: the API can start containers;"
            f" set ${TOKEN_ENV} or service.token_file, or listen on 127.0.0.1"
        )
    generated = config.state_dir / GENERATED_TOKEN
    config.state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode of open() applies only to a new file: an existing one may be wider
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, f"{generated} (generated; set ${TOKEN_ENV} or service.token_file to choose one)"


def read_generated_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / GENERATED_TOKEN).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def service_url(host: str, port: int) -> str:
    """The URL a client on this host reaches the listener at (a wildcard address as loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_service_file(state_dir: Path, *, url: str) -> Path:
    """Record this process as the service of `state_dir` (replaced atomically); return the file's path."""
    path = state_dir / SERVICE_FILE
    doc = {"pid": os.getpid(), "url": url, "started_at": dt.datetime.now(dt.UTC).isoformat()}
    temp = path.with_name(f".{SERVICE_FILE}.{os.getpid()}")
    temp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def remove_service_file(path: Path) -> None:
    """Remove the record, unless another service of the same state folder has replaced it since."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def serve(config: Config, *, listen: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the exit code."""
    host, port = split_listen(listen or config.service.listen)
    token, source = resolve_token(config, listen_host=host)
    try:
        docker = aiodocker.Docker()
    except Exception as exc:  # aiodocker raises plain ValueError/OSError when it finds no socket
        raise UnreachableError(f"cannot reach the Docker engine: {exc}") from None
    store = StateStore(config.state_dir)
    schedules = ScheduleStore(config.state_dir)
    try:
        async with aiohttp.ClientSession() as session:
            containers = Containers(docker)
            await containers.ping()
            provider = Provider(
                config=config,
                store=store,
                docker=docker,
                containers=containers,
                session=session,
                traefik=TraefikApi(api_url=config.traefik.api_url, session=session)
                if config.traefik.api_url
                else None,
            )
            runner = Runner(config=config, store=store, containers=containers, session=session)
            scheduler = Scheduler(
                store=schedules,
                grace=config.service.schedule_grace,
                start=lambda app, image: runner.promote(app=app, image=image),
                find_rollout=lambda s: _rollout_of(store, s),
            )
            context = api.Context(
                store=store,
                schedules=schedules,
                runner=runner,
                scheduler=scheduler,
                metrics=ServiceMetrics(config=config, store=store),
                shutdown=asyncio.Event(),
            )
            app = api.build_app(context, token=token)
            await _run(app, context, provider, host=host, port=port, source=source)
            return 0
    finally:
        schedules.close()
        store.close()
        await docker.close()


def _rollout_of(store: StateStore, schedule: Schedule) -> str | None:
    """The rollout a schedule left `firing` by a crash had started (its image, since it was claimed)."""
    since = schedule.fired_at if schedule.fired_at is not None else schedule.at
    rollout = store.rollout_of(app=schedule.app, image=schedule.image, since=since)
    return rollout.id if rollout else None


async def _run(
    app: web.Application, context: api.Context, provider: Provider, *, host: str, port: int, source: str
) -> None:
    stop = asyncio.Event()
    _install_signals(stop)
    web_runner = web.AppRunner(app, shutdown_timeout=HTTP_GRACE)
    await web_runner.setup()
    site = web.TCPSite(web_runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await web_runner.cleanup()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    record = write_service_file(context.runner.config.state_dir, url=service_url(host, port))
    background: list[asyncio.Task[None]] = []
    try:
        context.runner.recover()
        background += [
            asyncio.create_task(provider.run(), name="provider"),
            asyncio.create_task(context.scheduler.run(), name="scheduler"),
        ]
        shown = f"[{host}]" if ":" in host else host
        log.info("listening on http://%s:%d (token from %s)", shown, port, source)
        await _until_stopped(stop, background)
    finally:
        # Refused from here on, also on a keep-alive connection that is still open: a new rollout or abort.
        context.runner.close()
        context.shutdown.set()  # event streams end
        log.info("shutting down: no new rollouts; those running go back at their next safe point")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        # The listener and every connection closed (requests in flight get HTTP_GRACE); only then are the
        # rollouts stopped, so none can start after that (and `stop` waits for every one it keeps).
        await web_runner.cleanup()
        await context.runner.stop(timeout=SHUTDOWN_TIMEOUT)
        remove_service_file(record)
        log.info("stopped")


async def _until_stopped(stop: asyncio.Event, background: list[asyncio.Task[None]]) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([waiter, *background], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for task in done:
        if task is not waiter and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s stopped: %s", task.get_name(), exc)
            raise exc


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting now", name)
            with contextlib.suppress(Exception):
                logging.shutdown()
            os._exit(128 + signum)
        log.info("%s: shutting down (send it again to exit at once)", name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
