"""Wires one config to its adapters: Docker, an HTTP session, the state store and the engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiodocker
import aiohttp

from trafficshift.containers import Containers
from trafficshift.engine import Engine, EventSink, ProgressSink
from trafficshift.errors import UnreachableError
from trafficshift.models import Config
from trafficshift.store.rollouts import StateStore


@contextlib.asynccontextmanager
async def open_engine(
    *, config: Config, on_event: EventSink | None = None, on_progress: ProgressSink | None = None
) -> AsyncIterator[Engine]:
    """An engine over live adapters, closed on exit."""
    try:
        docker = aiodocker.Docker()
    except Exception as exc:  # aiodocker raises plain ValueError/OSError when it finds no socket
        raise UnreachableError(f"cannot reach the Docker engine: {exc}") from None
    try:
        store = StateStore(config.state_dir)
    except BaseException:
        await docker.close()
        raise
    try:
        async with aiohttp.ClientSession() as session:
            engine = Engine(
                config=config,
                store=store,
                containers=Containers(docker),
                session=session,
                on_event=on_event,
                on_progress=on_progress,
            )
            try:
                yield engine
            finally:
                await engine.aclose()  # webhook deliveries in flight, bounded by their timeout
    finally:
        store.close()
        await docker.close()
