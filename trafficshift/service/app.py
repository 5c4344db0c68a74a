"""`trafficshift serve`: the HTTP API, the Docker-event provider and the scheduler over one set of adapters.

Start-up: interrupted rollouts are aborted, every app's file is reconciled with its live containers, and
overdue schedules run (within `service.schedule_grace`) or are recorded as missed; in the background, events
of finished rollouts and finished schedules older than `service.retention` are pruned. While it listens, the
service records itself in `<state_dir>/service.json` (the CLI then runs rollouts in it). SIGTERM/SIGINT:
refuse new rollouts and aborts at once (503, also on open keep-alive connections), close the listener and
every connection (HTTP_GRACE for requests in flight), then let each running rollout, also one started in
that grace, reach a safe point and go back (as the CLI does); exit within SHUTDOWN_TIMEOUT. A second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

from trafficshift.config import validate_listen
from trafficshift.errors import UsageError
from trafficshift.models import Config, ServiceSpec
from trafficshift.runtime import open_adapters
from trafficshift.service import connections, retention, routes
from trafficshift.service.metrics import ServiceMetrics
from trafficshift.service.provider import Provider
from trafficshift.service.runner import Runner
from trafficshift.service.scheduler import Scheduler
from trafficshift.store.aio import AsyncScheduleStore, AsyncStateStore
from trafficshift.store.discovery import remove_service_file, resolve_token, service_url, write_service_file
from trafficshift.store.schedules import Schedule

log = logging.getLogger("trafficshift.service")

# Rollouts get this long to go back at shutdown; what is left is cancelled (its record lets the next start
# finish it). Requests in flight get HTTP_GRACE first (a promote in flight is refused or interrupted).
SHUTDOWN_TIMEOUT = 30.0
HTTP_GRACE = 2.0
# Connections the kernel queues before the service accepts them (aiohttp's default is 128).
BACKLOG = 512


def split_listen(listen: str) -> tuple[str, int]:
    if why := validate_listen(listen):
        raise UsageError(f"--listen: {why}")
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The listener's TLS (the certificate chain and its key, PEM); UsageError (exit 2) naming a bad file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}") from None
    return context


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def serve(config: Config, *, listen: str | None = None, tls: tuple[str, str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the exit code. `tls`: (certificate, key) PEM files: https."""
    host, port = split_listen(listen or config.service.listen)
    tls_context_ = None if tls is None else tls_context(*tls)
    token, source = resolve_token(config, listen_host=host)
    async with open_adapters(config) as adapters:
        await adapters.containers.ping()
        # The engines, API, provider, scheduler and metrics all reach the store off the loop: the adapters'
        # AsyncStateStore (a writer and a reader thread) and the schedules' own thread.
        store = adapters.store
        schedules = AsyncScheduleStore(config.state_dir)
        try:
            provider = Provider(adapters=adapters)
            runner = Runner(adapters=adapters)
            scheduler = Scheduler(
                store=schedules,
                grace=config.service.schedule_grace,
                start=lambda app, image: runner.promote(app=app, image=image, resume=False),
                find_rollout=lambda s: _rollout_of(store, s),
            )
            context = routes.Context(
                store=store,
                schedules=schedules,
                runner=runner,
                scheduler=scheduler,
                metrics=ServiceMetrics(config=config, store=store),
                shutdown=asyncio.Event(),
            )
            app = routes.build_app(context, token=token)
            await _run(app, context, provider, host=host, port=port, source=source, tls=tls_context_)
            return 0
        finally:
            await schedules.aclose()


async def _rollout_of(store: AsyncStateStore, schedule: Schedule) -> str | None:
    """The rollout a schedule left `firing` by a crash had started (its image, since it was claimed)."""
    since = schedule.fired_at if schedule.fired_at is not None else schedule.at
    rollout = await store.rollout_of(app=schedule.app, image=schedule.image, since=since)
    return rollout.id if rollout else None


async def _run(
    app: web.Application,
    context: routes.Context,
    provider: Provider,
    *,
    host: str,
    port: int,
    source: str,
    tls: ssl.SSLContext | None,
) -> None:
    stop = asyncio.Event()
    _install_signals(stop)
    config = context.runner.config
    web_runner = web.AppRunner(
        app, shutdown_timeout=HTTP_GRACE, keepalive_timeout=config.service.keepalive_timeout
    )
    await web_runner.setup()
    try:
        listener, guard = await _listen(web_runner, config.service, host=host, port=port, tls=tls)
    except OSError as exc:
        await web_runner.cleanup()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    url = service_url(host, port, tls=tls is not None)
    record = write_service_file(config.state_dir, url=url)
    background: list[asyncio.Task[None]] = []
    restore_log = connections.install_accept_error_log(asyncio.get_running_loop(), guard.logs)
    try:
        await context.runner.recover()
        background += [
            asyncio.create_task(provider.run(), name="provider"),
            asyncio.create_task(context.scheduler.run(), name="scheduler"),
            asyncio.create_task(
                retention.run(config.state_dir, retention=config.service.retention), name="retention"
            ),
        ]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls is not None else "http"
        log.info("listening on %s://%s:%d (token from %s)", scheme, shown, port, source)
        log.info(
            "at most %d API connections, request heads within %gs, keep-alive %gs",
            guard.limit,
            guard.header_timeout,
            config.service.keepalive_timeout,
        )
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
        listener.close()
        await web_runner.cleanup()
        restore_log()
        await context.runner.stop(timeout=SHUTDOWN_TIMEOUT)
        remove_service_file(record)
        log.info("stopped")


async def _listen(
    web_runner: web.AppRunner, spec: ServiceSpec, *, host: str, port: int, tls: ssl.SSLContext | None
) -> tuple[asyncio.Server, connections.ConnectionGuard]:
    """Listen for aiohttp's server through a ConnectionGuard (its cap and head deadline; see connections).

    The listener is ours, not an aiohttp site: aiohttp's server still tracks every connection it handles,
    so `web_runner.cleanup()` closes them as it would, once the listener is closed.
    """
    server = web_runner.server
    assert server is not None  # after setup()
    open_files = connections.raise_open_files_limit()
    guard = connections.ConnectionGuard(
        limit=connections.connection_cap(spec.max_connections, open_files=open_files),
        header_timeout=spec.header_timeout,
    )
    if guard.limit < spec.max_connections:
        log.warning(
            "service.max_connections %d is more than half the open-file limit (%d) allows: %d",
            spec.max_connections,
            open_files,
            guard.limit,
        )
    # With TLS the guard's head deadline starts once the handshake is done; the handshake has its own.
    listener = await asyncio.get_running_loop().create_server(
        guard.factory(server),
        host,
        port,
        backlog=BACKLOG,
        ssl=tls,
        ssl_handshake_timeout=spec.header_timeout if tls is not None else None,
    )
    return listener, guard


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
