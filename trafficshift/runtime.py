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
from trafficshift.ports import Adapters, ContainerRuntime, Locks, MetricsSource, RoutingPublisher
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.traefik.publish import RedisPublisher, TraefikPublisher
from trafficshift.traefik.scrape import FleetMetrics, TraefikMetrics
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
            async with aiohttp.ClientSession() as session, _routing(config, session) as (routing, locks):
                notifier = Notifier(config=config, session=session)
                try:
                    yield Adapters(
                        config=config,
                        store=store,
                        containers=containers,
                        routing=routing,
                        locks=locks,
                        notifier=notifier,
                        metrics=_metrics(config.traefik.metrics, session),
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


def _metrics(urls: tuple[str, ...], session: aiohttp.ClientSession) -> MetricsSource | None:
    """None without a metrics URL (no analysis); several: each service's counts summed over the fleet."""
    if len(urls) > 1:
        return FleetMetrics(urls=urls, session=session)
    return TraefikMetrics(url=urls[0], session=session) if urls else None


@contextlib.asynccontextmanager
async def _routing(
    config: Config, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[RoutingPublisher, Locks]]:
    """The routing backend of `traefik.provider` and the locks that go with it.

    With Redis, several controllers on several machines may drive the same store: each app's lock is
    leased in Redis too, and every write is fenced by that lease.
    """
    redis = config.traefik.redis
    if redis is None:
        yield TraefikPublisher(config=config, session=session), FileLocks(config.state_dir)
        return
    from trafficshift.store.redis_locks import RedisLocks  # redis-py only for a Redis config

    locks = RedisLocks(state_dir=config.state_dir, url=redis.url, root=redis.root_key)
    publisher = RedisPublisher(config=config, session=session, locks=locks)
    try:
        yield publisher, locks
    finally:
        await publisher.aclose()
        locks.close()


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
