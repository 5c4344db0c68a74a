"""`trafficshift serve`: the HTTP API, the Docker-event provider and the scheduler over one set of adapters.

Start-up: interrupted rollouts are aborted, every app's file is reconciled with its live containers, and
overdue schedules run (within `service.schedule_grace`) or are recorded as missed. SIGTERM/SIGINT: stop
taking requests, let each running rollout reach a safe point and go back (as the CLI does), exit within
SHUTDOWN_TIMEOUT; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
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
from .schedules import ScheduleStore
from .service_metrics import ServiceMetrics
from .state import StateStore

log = logging.getLogger("trafficshift.service")

TOKEN_ENV = "TRAFFICSHIFT_TOKEN"
# Written when no token is configured (loopback only): the CLI on this host reads it from here.
GENERATED_TOKEN = "service.token"
# Rollouts get this long to go back at shutdown; what is left is cancelled (its record lets the next start
# finish it). HTTP handlers get HTTP_GRACE.
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


def resolve_token(config: Config, *, listen_host: str) -> tuple[str, str]:
    """The bearer token and where it came from; refuse a non-loopback address without a configured one."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    path = config.service.token_file
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"service.token_file: cannot read {path}: {exc.strerror or exc}") from None
        if not token:
            raise UsageError(f"service.token_file: {path} is empty")
        return token, str(path)
    if not is_loopback(listen_host):
        raise UsageError(
            f"refusing to listen on {listen_host} without a token: the API can start containers;"
            f" set ${TOKEN_ENV} or service.token_file, or listen on 127.0.0.1"
        )
    generated = config.state_dir / GENERATED_TOKEN
    config.state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, f"{generated} (generated; set ${TOKEN_ENV} or service.token_file to choose one)"


def read_generated_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / GENERATED_TOKEN).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


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
                engine=lambda: runner.engine(),
            )
            runner = Runner(
                config=config,
                store=store,
                containers=containers,
                session=session,
                provider_busy=provider.busy,
            )
            scheduler = Scheduler(
                store=schedules,
                grace=config.service.schedule_grace,
                start=lambda app, image: runner.promote(app=app, image=image),
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


async def _run(
    app: web.Application, context: api.Context, provider: Provider, *, host: str, port: int, source: str
) -> None:
    stop = asyncio.Event()
    _install_signals(stop)
    web_runner = web.AppRunner(app, shutdown_timeout=HTTP_GRACE)
    await web_runner.setup()
    site = web.TCPSite(web_runner, host, port, shutdown_timeout=HTTP_GRACE)
    try:
        await site.start()
    except OSError as exc:
        await web_runner.cleanup()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    context.runner.recover()
    background = [
        asyncio.create_task(provider.run(), name="provider"),
        asyncio.create_task(context.scheduler.run(), name="scheduler"),
    ]
    shown = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%d (token from %s)", shown, port, source)
    try:
        await _until_stopped(stop, background)
    finally:
        log.info("shutting down: no new requests; rollouts go back at their next safe point")
        context.shutdown.set()
        await site.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await context.runner.stop(timeout=SHUTDOWN_TIMEOUT)
        await web_runner.cleanup()
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
