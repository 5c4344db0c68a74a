"""`GET /apps` at 200 apps: the service's inventory and the provider's start-up read Docker once, not per app.

Over a listing-only fake Docker that counts its calls, the real store and the real file publisher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

import trafficshift.traefik.publish as publish_module
from trafficshift.config import parse_config_text
from trafficshift.engine import Engine
from trafficshift.models import AppState, Colour, Config, ContainerEvent, ContainerInfo, Outcome, Phase
from trafficshift.plan import routing_for
from trafficshift.ports import Adapters
from trafficshift.service.inventory import Inventory
from trafficshift.service.provider import Provider
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.locks import FileLocks
from trafficshift.store.rollouts import StateStore
from trafficshift.traefik.files import read_routing
from trafficshift.traefik.publish import TraefikPublisher
from trafficshift.webhooks import Notifier

APPS = ("api", "off", "web")  # `off` is never deployed


def _container(app: str, colour: Colour, port: int) -> ContainerInfo:
    url = f"http://127.0.0.1:{port}"
    return ContainerInfo(
        id=f"{app}-{colour}-{port}", name=f"{app}-{colour}-1", app=app, colour=colour,
        image=f"{app}:{colour}", running=True, health=None, url=url, probe_url=url,
    )  # fmt: skip


class CountingContainers:
    """Lists `listed`; counts every call; `gate`, when set, holds `list_all` until it is opened."""

    def __init__(self, listed: list[ContainerInfo]) -> None:
        self.listed = listed
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def list(self, *, app: str, colour: Colour | None = None) -> list[ContainerInfo]:
        self.calls.append(f"list {app}")
        return [c for c in self.listed if c.app == app and colour in (None, c.colour)]

    async def list_all(self) -> list[ContainerInfo]:
        self.calls.append("list_all")
        if self.gate is not None:
            await self.gate.wait()
        return list(self.listed)

    async def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        await asyncio.Event().wait()  # a stream that stays open and quiet
        yield ContainerEvent(app="", action="", id="", name="")  # pragma: no cover


def _config(tmp_path: Path) -> Config:
    apps = "".join(
        f"  {a}:\n    image: {a}:1\n    port: 80\n    rule: Host(`{a}`)\n    publish: 127.0.0.1\n"
        for a in APPS
    )
    return parse_config_text(
        f"traefik:\n  dynamic_dir: ./dyn\napps:\n{apps}", source="ts.yml", base_dir=tmp_path
    )


def _adapters(config: Config, store: AsyncStateStore, containers: CountingContainers) -> Adapters:
    return Adapters(
        config=config,
        store=store,
        containers=cast(Any, containers),
        routing=TraefikPublisher(config=config, session=cast(Any, None)),
        locks=FileLocks(config.state_dir),
        notifier=Notifier(config=config, session=cast(Any, None)),
        metrics=None,
        http=cast(Any, None),
    )


def _settle(store: StateStore, app: str, colour: Colour) -> None:
    rollout = store.create_rollout(
        app=app, from_state=store.app_state(app), to_colour=colour, to_image=f"{app}:{colour}", steps=(100,),
        pause=0,
    )  # fmt: skip
    rollout = store.advance(rollout, message="step", phase=Phase.SHIFTING, step=0, weights={colour: 100})
    live = AppState(app=app, colour=colour, image=f"{app}:{colour}")
    store.finish(rollout, outcome=Outcome.DONE, reason=None, live=live)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(publish_module, "UNCONFIRMED_WAIT", 0.0)  # no Traefik API here
    return tmp_path


async def _deployed(
    tmp_path: Path,
) -> tuple[Config, StateStore, AsyncStateStore, CountingContainers, Engine]:
    """`web` and `api` live on blue, each file routing its one container."""
    config = _config(tmp_path)
    store, served = StateStore(config.state_dir), AsyncStateStore(config.state_dir)
    containers = CountingContainers(
        [_container("web", Colour.BLUE, 31001), _container("api", Colour.BLUE, 31002)]
    )
    engine = Engine(adapters=_adapters(config, served, containers))
    for app in ("web", "api"):
        _settle(store, app, Colour.BLUE)
        mine = [c for c in containers.listed if c.app == app]
        await engine.write_routing(
            config.apps[app], routing_for(app=app, weights={Colour.BLUE: 100}, containers=mine)
        )
    return config, store, served, containers, engine


async def test_every_status_as_the_engine_gives_it_from_one_listing_kept_until_something_changes(
    world: Path,
) -> None:
    config, store, served, containers, engine = await _deployed(world)
    inventory = Inventory(adapters=_adapters(config, served, containers), max_age=60)
    try:
        containers.calls.clear()
        assert await inventory.statuses() == [await engine.status(a) for a in sorted(APPS)]
        containers.calls.clear()

        first = await inventory.encoded()
        assert await inventory.encoded() is first  # nothing changed: not even encoded again
        assert containers.calls == []

        # A Docker event: listed again (a container of `web` was replaced meanwhile).
        containers.listed[0] = _container("web", Colour.BLUE, 31009)
        inventory.invalidate()
        assert [c["url"] for c in (await inventory.statuses())[2]["containers"]] == ["http://127.0.0.1:31009"]
        assert containers.calls == ["list_all"]

        # A rollout recorded (here or by the CLI: the store's event sequence moves): listed and read again.
        _settle(store, "api", Colour.GREEN)
        containers.listed[1] = _container("api", Colour.GREEN, 32002)
        api = (await inventory.statuses())[0]
        assert (api["colour"], api["weights"]) == ("green", {"green": 100})
        assert containers.calls == ["list_all", "list_all"]
        # The file is read again once it changed, and only then.
        assert api["file"]["in_sync"] is False
        mine = [containers.listed[1]]
        await engine.write_routing(
            config.apps["api"], routing_for(app="api", weights={Colour.GREEN: 100}, containers=mine)
        )
        assert (await inventory.statuses())[0]["file"]["in_sync"] is True
        assert await inventory.statuses() == [await engine.status(a) for a in sorted(APPS)]

        # A rollout in progress: interrupted while nobody holds its lock, which announces nothing.
        store.create_rollout(
            app="web", from_state=store.app_state("web"), to_colour=Colour.GREEN, to_image="web:green",
            steps=(100,), pause=0,
        )  # fmt: skip
        assert (await inventory.statuses())[2]["rollout"]["interrupted"] is True
        lock = FileLocks(config.state_dir).lock("web")
        assert lock.try_acquire()
        try:
            assert (await inventory.statuses())[2]["rollout"]["interrupted"] is False
            assert await inventory.statuses() == [await engine.status(a) for a in sorted(APPS)]
        finally:
            lock.release()
        assert (await inventory.statuses())[2]["rollout"]["interrupted"] is True
    finally:
        store.close()
        await served.aclose()


async def test_requests_at_once_share_one_listing_and_none_uses_one_older_than_its_last_event(
    world: Path,
) -> None:
    config, store, served, containers, _ = await _deployed(world)
    inventory = Inventory(adapters=_adapters(config, served, containers), max_age=60)
    try:
        containers.calls.clear()
        containers.gate = asyncio.Event()
        early = [asyncio.create_task(inventory.statuses()) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert containers.calls == ["list_all"]
        # An event while that listing is in flight: a request from now on needs a listing asked for later.
        inventory.invalidate()
        late = asyncio.create_task(inventory.statuses())
        await asyncio.sleep(0.05)
        assert containers.calls == ["list_all", "list_all"]
        containers.gate.set()
        answers = await asyncio.gather(*early, late)
        assert all(a == answers[0] for a in answers)
        # Older than max_age, and nothing happened since: answered at once, and listed again meanwhile.
        containers.gate.clear()
        inventory.max_age = 0.0
        assert await asyncio.wait_for(inventory.statuses(), 1) == answers[0]
        await asyncio.sleep(0.05)
        assert containers.calls == ["list_all"] * 3
        containers.gate.set()
    finally:
        store.close()
        await served.aclose()


async def test_the_provider_starts_with_one_listing_and_reconciles_only_apps_out_of_step(world: Path) -> None:
    config, store, served, containers, _ = await _deployed(world)
    # `api`'s only replica was restarted by Docker on a new port while the service was down: its file is
    # stale, and the new address must be probed before it is routed.
    containers.listed[1] = _container("api", Colour.BLUE, 31102)
    adapters = _adapters(config, served, containers)
    changes: list[None] = []
    provider = Provider(adapters=adapters, on_change=lambda: changes.append(None))
    probed: list[str] = []

    async def probe(app: str, info: ContainerInfo) -> bool:
        probed.append(app)
        return True

    provider._probe = probe  # type: ignore[method-assign]
    containers.calls.clear()
    task = asyncio.create_task(provider.run())
    try:
        async with asyncio.timeout(5):
            await provider.ready.wait()
        # One listing of everything; then only the apps not in step were listed one by one.
        assert containers.calls[0] == "list_all"
        assert "list web" not in containers.calls
        assert {c.split()[1] for c in containers.calls[1:]} == {"api", "off"}
        assert probed == ["api"]
        assert read_routing(dynamic_dir=config.traefik.dynamic_dir, app="api") == routing_for(
            app="api", weights={Colour.BLUE: 100}, containers=[containers.listed[1]]
        )
        # Every Docker event reaches `on_change` (the inventory); only start/die/health re-render a file.
        calls = len(containers.calls)
        provider._on_event(ContainerEvent(app="web", action="destroy", id="x", name="web-green-1"))
        await asyncio.sleep(0.05)
        assert (len(changes), len(containers.calls)) == (1, calls)
        provider._on_event(ContainerEvent(app="web", action="start", id="y", name="web-green-1"))
        await asyncio.sleep(0.05)
        assert len(changes) == 2
        assert "list web" in containers.calls[calls:]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
        await served.aclose()
