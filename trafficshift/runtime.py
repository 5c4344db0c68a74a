"""Wires one config to its live adapters, in one place for the CLI and for `serve`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiodocker
import aiohttp

from trafficshift.containers import Containers
from trafficshift.engine import Engine, EventSink, LiveSink, ProgressSink
from trafficshift.errors import UnreachableError
from trafficshift.hosts import open_hosts
from trafficshift.models import Config
from trafficshift.ports import Adapters, ContainerRuntime
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.traefik.publish import TraefikPublisher
from trafficshift.traefik.scrape import TraefikMetrics
from trafficshift.webhooks import Notifier


@contextlib.asynccontextmanager
async def open_adapters(
    config: Config, *, on_progress: ProgressSink | None = None
) -> AsyncIterator[Adapters]:
    """Docker, the state store (off the loop), one HTTP session and what is built on them; all closed on exit.

    `on_progress` gets an image pull's progress (the CLI's live line). On exit, webhook deliveries still in
    flight get their timeout first.
    """
    async with open_containers(config, on_progress=on_progress) as containers:
        # Opened (and its schema created) before the loop runs anything else: once, at start-up.
        store = AsyncStateStore(config.state_dir)
        try:
            async with aiohttp.ClientSession() as session:
                metrics_url = config.traefik.metrics_url
                notifier = Notifier(config=config, session=session)
                try:
                    yield Adapters(
                        config=config,
                        store=store,
                        containers=containers,
                        routing=TraefikPublisher(config=config, session=session),
                        locks=FileLocks(config.state_dir),
                        notifier=notifier,
                        metrics=TraefikMetrics(url=metrics_url, session=session) if metrics_url else None,
                        http=session,
                    )
                finally:
                    await notifier.aclose()
        finally:
            await store.aclose()  # every commit already made lands first


@contextlib.asynccontextmanager
async def open_containers(
    config: Config, *, on_progress: ProgressSink | None = None
) -> AsyncIterator[ContainerRuntime]:
    """The container runtime: the local engine, or every host of the config's `hosts` (hosts.py)."""
    if config.hosts:
        async with open_hosts(config, on_progress=on_progress) as runtime:
            yield runtime
        return
    try:
        docker = aiodocker.Docker()
    except Exception as exc:  # aiodocker raises plain ValueError/OSError when it finds no socket
        raise UnreachableError(f"cannot reach the Docker engine: {exc}") from None
    try:
        yield Containers(docker, on_progress=on_progress, concurrency=config.docker.concurrency)
    finally:
        await docker.close()


@contextlib.asynccontextmanager
async def open_engine(
    *,
    config: Config,
    on_event: EventSink | None = None,
    on_progress: ProgressSink | None = None,
    on_live: LiveSink | None = None,
) -> AsyncIterator[Engine]:
    """An engine over live adapters, closed on exit."""
    async with open_adapters(config, on_progress=on_progress) as adapters:
        engine = Engine(adapters=adapters, on_event=on_event, on_progress=on_progress, on_live=on_live)
        try:
            yield engine
        finally:
            await engine.aclose()  # webhook deliveries in flight, bounded by their timeout
