"""The provider's decisions over a fake Docker: what it may route is read under the app's lock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

import trafficshift.traefik.publish as publish_module
from trafficshift.config import parse_config_text
from trafficshift.engine import Engine
from trafficshift.models import (
    AppState,
    Colour,
    Config,
    ContainerEvent,
    ContainerInfo,
    Outcome,
    Phase,
    Routing,
)
from trafficshift.plan import routing_for
from trafficshift.ports import Adapters
from trafficshift.service.provider import Provider
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.store.rollouts import StateStore
from trafficshift.traefik.files import dynamic_path, read_routing
from trafficshift.traefik.publish import TraefikPublisher
from trafficshift.webhooks import Notifier


def _container(colour: Colour, n: int, port: int) -> ContainerInfo:
    url = f"http://127.0.0.1:{port}"
    return ContainerInfo(
        id=f"{colour}-{n}-{port}",
        name=f"web-{colour}-{n}",
        app="web",
        colour=colour,
        image=f"{colour}:1",
        running=True,
        health=None,
        url=url,
        probe_url=url,
    )


class FakeContainers:
    def __init__(self, listed: list[ContainerInfo]) -> None:
        self.listed = listed

    async def list(self, *, app: str, colour: Colour | None = None) -> list[ContainerInfo]:
        return [c for c in self.listed if colour is None or c.colour is colour]


def _adapters(config: Config, store: AsyncStateStore, containers: FakeContainers) -> Adapters:
    """The real file publisher (no Traefik API: no confirmation) and lock files over a listing-only Docker."""
    return Adapters(
        config=config,
        store=store,
        containers=cast(Any, containers),
        routing=TraefikPublisher(config=config, session=cast(Any, None)),
        locks=FileLocks(config.state_dir),
        notifier=Notifier(config=config, session=cast(Any, None)),  # no webhooks in these configs
        metrics=None,
        http=cast(Any, None),
    )


def _settle(store: StateStore, colour: Colour, image: str) -> None:
    """Record a finished rollout that leaves `colour` serving."""
    rollout = store.create_rollout(
        app="web", from_state=store.app_state("web"), to_colour=colour, to_image=image, steps=(100,), pause=0
    )
    rollout = store.advance(rollout, message="step", phase=Phase.SHIFTING, step=0, weights={colour: 100})
    store.finish(
        rollout, outcome=Outcome.DONE, reason=None, live=AppState(app="web", colour=colour, image=image)
    )


async def test_a_rollout_that_ends_during_a_probe_keeps_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "UNCONFIRMED_WAIT", 0.0)  # no Traefik API here: no wait after writes
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: blue:1\n    port: 80\n"
        "    rule: Host(`web`)\n    publish: 127.0.0.1\n    replicas: 2\n",
        source="ts.yml",
        base_dir=tmp_path,
    )
    store = StateStore(config.state_dir)
    served = AsyncStateStore(config.state_dir)  # the engine's and the provider's: off the loop
    blue1, blue2_restarted, green1 = (
        _container(Colour.BLUE, 1, 31001),
        _container(Colour.BLUE, 2, 31999),  # Docker restarted it on a new port: probed before it is routed
        _container(Colour.GREEN, 1, 32001),
    )
    containers = FakeContainers([blue1, blue2_restarted])
    adapters = _adapters(config, served, containers)
    engine = Engine(adapters=adapters)
    _settle(store, Colour.BLUE, "blue:1")
    await engine.write_routing(
        config.apps["web"], routing_for(app="web", weights={Colour.BLUE: 100}, containers=[blue1])
    )
    provider = Provider(adapters=adapters)
    probing, rolled = asyncio.Event(), asyncio.Event()

    async def probe(app: str, info: ContainerInfo) -> bool:
        probing.set()
        await rolled.wait()
        return False  # its colour was removed meanwhile

    monkeypatch.setattr(provider, "_probe", probe)
    reconcile = asyncio.create_task(provider.reconcile("web"))
    await probing.wait()

    # Meanwhile a short rollout (the provider holds no lock while it probes): blue -> green.
    _settle(store, Colour.GREEN, "green:1")
    containers.listed = [green1]
    green_only = routing_for(app="web", weights={Colour.GREEN: 100}, containers=[green1])
    await engine.write_routing(config.apps["web"], green_only)
    rolled.set()

    assert await reconcile is True
    assert dynamic_path(dynamic_dir=config.traefik.dynamic_dir, app="web").exists()
    after = read_routing(dynamic_dir=config.traefik.dynamic_dir, app="web")
    assert after == green_only
    store.close()
    await served.aclose()


async def test_the_provider_never_writes_a_weighted_colour_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "UNCONFIRMED_WAIT", 0.0)
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: blue:1\n    port: 80\n"
        "    rule: Host(`web`)\n    publish: 127.0.0.1\n",
        source="ts.yml",
        base_dir=tmp_path,
    )
    store = StateStore(config.state_dir)
    served = AsyncStateStore(config.state_dir)  # the engine's and the provider's: off the loop
    blue1 = _container(Colour.BLUE, 1, 31001)
    restarted = _container(Colour.BLUE, 1, 31002)  # the only replica, back on a new port, not ready yet
    containers = FakeContainers([blue1])
    adapters = _adapters(config, served, containers)
    engine = Engine(adapters=adapters)
    _settle(store, Colour.BLUE, "blue:1")
    before = routing_for(app="web", weights={Colour.BLUE: 100}, containers=[blue1])
    await engine.write_routing(config.apps["web"], before)
    provider = Provider(adapters=adapters)

    async def probe(app: str, info: ContainerInfo) -> bool:
        return False

    monkeypatch.setattr(provider, "_probe", probe)
    containers.listed = [restarted]
    assert await provider.reconcile("web") is True
    # Routing nothing would delete the file (every request a 404): it is left as it was instead.
    assert read_routing(dynamic_dir=config.traefik.dynamic_dir, app="web") == before
    assert isinstance(before, Routing)
    store.close()
    await served.aclose()


def _provider(config: Config, served: AsyncStateStore, containers: FakeContainers) -> Provider:
    provider = Provider(adapters=_adapters(config, served, containers))

    async def never_ready(app: str, info: ContainerInfo) -> bool:
        return False

    provider._probe = never_ready  # type: ignore[method-assign]
    return provider


async def test_unknown_weights_leave_the_file_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record of the app (a lost state folder) and both colours up: nothing says what to route."""
    monkeypatch.setattr(publish_module, "UNCONFIRMED_WAIT", 0.0)
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: blue:1\n    port: 80\n"
        "    rule: Host(`web`)\n    publish: 127.0.0.1\n",
        source="ts.yml",
        base_dir=tmp_path,
    )
    store = StateStore(config.state_dir)
    blue1, green1 = _container(Colour.BLUE, 1, 31001), _container(Colour.GREEN, 1, 32001)
    containers = FakeContainers([blue1, green1])
    served = AsyncStateStore(config.state_dir)  # the engine's and the provider's: off the loop
    engine = Engine(adapters=_adapters(config, served, containers))
    split = routing_for(app="web", weights={Colour.BLUE: 50, Colour.GREEN: 50}, containers=[blue1, green1])
    await engine.write_routing(config.apps["web"], split)
    provider = _provider(config, served, containers)

    assert await provider.reconcile("web") is True
    assert read_routing(dynamic_dir=config.traefik.dynamic_dir, app="web") == split
    # A replica that dies is not dropped either (that could leave nothing to route): the file stays.
    provider._on_event(ContainerEvent(app="web", action="die", id=green1.id, name=green1.name))
    provider._urls[green1.id] = str(green1.url)
    assert await provider.reconcile("web") is True
    assert read_routing(dynamic_dir=config.traefik.dynamic_dir, app="web") == split
    store.close()
    await served.aclose()


async def test_an_undeployed_app_loses_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store says the first deploy went back: a file left behind routes nothing, so it goes."""
    monkeypatch.setattr(publish_module, "UNCONFIRMED_WAIT", 0.0)
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: blue:1\n    port: 80\n"
        "    rule: Host(`web`)\n    publish: 127.0.0.1\n",
        source="ts.yml",
        base_dir=tmp_path,
    )
    store = StateStore(config.state_dir)
    blue1 = _container(Colour.BLUE, 1, 31001)
    containers = FakeContainers([blue1])
    served = AsyncStateStore(config.state_dir)  # the engine's and the provider's: off the loop
    engine = Engine(adapters=_adapters(config, served, containers))
    await engine.write_routing(
        config.apps["web"], routing_for(app="web", weights={Colour.BLUE: 100}, containers=[blue1])
    )
    first = store.create_rollout(
        app="web", from_state=store.app_state("web"), to_colour=Colour.BLUE, to_image="blue:1", steps=(100,),
        pause=0,
    )  # fmt: skip
    store.finish(first, outcome=Outcome.ABORTED, reason="test", live=AppState(app="web"))
    assert store.app_state("web").recorded
    containers.listed = [blue1, _container(Colour.GREEN, 1, 32001)]  # whatever runs: the record decides

    assert await _provider(config, served, containers).reconcile("web") is True
    assert not dynamic_path(dynamic_dir=config.traefik.dynamic_dir, app="web").exists()
    store.close()
    await served.aclose()
