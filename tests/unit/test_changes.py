"""Whether a compose-backed app's promote changes anything: the new spec's digest against the live colour's
containers' labels (changes.spec_to_deploy)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest

from trafficshift.changes import spec_to_deploy
from trafficshift.compose.fingerprint import app_doc, digest
from trafficshift.compose.spec import ComposeRef, ContainerSpec
from trafficshift.errors import Unchanged
from trafficshift.models import AppSpec, AppState, Colour, ContainerInfo
from trafficshift.ports import ContainerRuntime

PLAIN = AppSpec(name="web", image="web:1", port=8080, rule="Host(`w`)", publish="127.0.0.1", replicas=2)
BACKED = dataclasses.replace(
    PLAIN,
    compose=ComposeRef(files=(Path("/srv/shop/docker-compose.yml"),), service="web"),
    container=ContainerSpec(project="shop", service="web", image="web:1", environment=(("A", "1"),)),
)
LIVE = AppState(app="web", colour=Colour.BLUE, image="web:1", recorded=True)


class Live:
    """The live colour's containers, as the runtime lists them."""

    def __init__(self, *containers: ContainerInfo) -> None:
        self.containers = list(containers)
        self.asked: list[tuple[str, Colour | None]] = []

    async def list(self, *, app: str, colour: Colour | None = None) -> list[ContainerInfo]:
        self.asked.append((app, colour))
        return self.containers


def container(n: int, *, spec: str | None, running: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id=f"id{n}", name=f"web-blue-{n}", app="web", colour=Colour.BLUE, image="web:1", running=running,
        health=None, url=None, probe_url=None, spec=spec,
    )  # fmt: skip


def label(app: AppSpec = BACKED, image_id: str = "sha256:1") -> str:
    doc = app_doc(app, image=app.image, image_id=image_id)
    assert doc is not None
    return digest(doc)


async def deploy(
    live: Live, *, app: AppSpec = BACKED, state: AppState = LIVE, image_id: str = "sha256:1"
) -> Any:
    runtime = cast(ContainerRuntime, live)
    return await spec_to_deploy(runtime, app=app, state=state, image=app.image, image_id=image_id)


async def test_the_live_colour_running_the_same_spec_is_unchanged() -> None:
    live = Live(container(1, spec=label()), container(2, spec=label()))
    with pytest.raises(Unchanged) as info:
        await deploy(live)
    assert (
        str(info.value)
        == f"web: nothing changed: blue runs this spec already (web:1, spec {label()}); nothing started"
    )
    assert info.value.exit_code == 0
    assert live.asked == [("web", Colour.BLUE)]


@pytest.mark.parametrize(
    ("live", "image_id"),
    [
        (Live(container(1, spec=label()), container(2, spec="0" * 16)), "sha256:1"),  # one replica differs
        (Live(container(1, spec=label())), "sha256:1"),  # a replica is missing (or replicas went up)
        (Live(container(1, spec=label()), container(2, spec=label(), running=False)), "sha256:1"),
        (Live(container(1, spec=None), container(2, spec=None)), "sha256:1"),  # made before specs
        (Live(container(1, spec=label()), container(2, spec=label())), "sha256:2"),  # the tag was rebuilt
    ],
)
async def test_anything_else_is_a_change_and_gives_the_spec_to_record(live: Live, image_id: str) -> None:
    doc = await deploy(live, image_id=image_id)
    assert doc == app_doc(BACKED, image="web:1", image_id=image_id)


async def test_one_environment_variable_is_a_change() -> None:
    changed = dataclasses.replace(
        BACKED,
        container=dataclasses.replace(BACKED.container, environment=(("A", "2"),)),  # type: ignore[arg-type]
    )
    live = Live(container(1, spec=label()), container(2, spec=label()))
    assert (await deploy(live, app=changed))["environment.A"] == "2"


async def test_a_first_deploy_and_an_app_not_compose_backed_look_at_no_container() -> None:
    live = Live()
    assert await deploy(live, state=AppState(app="web")) is not None
    assert await deploy(live, app=PLAIN) is None
    assert live.asked == []
