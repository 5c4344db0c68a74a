"""No Docker call waits forever: a hung daemon is UnreachableError (exit 3, or the rollout goes back or is
stuck), and Docker's silence is no verdict on a container's health (readiness.check_alive).

Against a fake engine on a unix socket (tests/support/fake_docker.py): the real one cannot be made to hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_docker import HANG, NAME, FakeDocker, fake_docker
from trafficshift import containers as containers_module
from trafficshift import readiness
from trafficshift.containers import Containers
from trafficshift.errors import NotReady, UnreachableError
from trafficshift.models import AppSpec, Colour, HealthSpec, RolloutPolicy

GREEN = Colour.GREEN
APP = AppSpec(
    name="web",
    image="example/web:1",
    port=8080,
    rule="Host(`web.localhost`)",
    publish="127.0.0.1",
    health=HealthSpec(interval=0.2),
    rollout=RolloutPolicy(stop_timeout=1.0),
)
# Far above the bounds the tests set: a call still waiting then was never bounded at all.
NEVER = 5.0
SHORT = 0.3


@pytest.fixture(autouse=True)
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds of Docker calls, shortened so that a test of a hung daemon takes a fraction of a second."""
    for name in ("QUICK", "CHANGE", "PULL", "STOP_GRACE"):
        monkeypatch.setattr(containers_module, name, SHORT, raising=False)


async def _within(seconds: float, work: Awaitable[Any]) -> float:
    """Run `work`, failing the test (instead of hanging it) when it takes `seconds`; its time taken."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        pytest.fail(f"still waiting for Docker after {seconds}s: the call has no bound")
    return time.monotonic() - started


CALLS: dict[str, Callable[[Containers], Awaitable[Any]]] = {
    "ping": lambda c: c.ping(),
    "list": lambda c: c.list(app="web"),
    "list_all": lambda c: c.list_all(),
    "inspect": lambda c: c.inspect(name=NAME),
    "state": lambda c: c.state(name=NAME),
    "logs": lambda c: c.logs(name=NAME),
    "ensure_image": lambda c: c.ensure_image("example/web:1"),
    "start_colour": lambda c: c.start_colour(app=APP, colour=GREEN, image="example/web:1"),
    "stop_and_remove": lambda c: c.stop_and_remove(app="web", colour=GREEN, stop_timeout=1.0),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_every_call_to_a_hung_daemon_is_unreachable_not_a_hang(call: str, tmp_path: Path) -> None:
    fake = FakeDocker(delays={route: HANG for route in ("version", "list", "inspect", "image", "logs")})
    async with fake_docker(fake, tmp_path) as docker:
        with pytest.raises(UnreachableError, match="the Docker engine did not answer within") as info:
            await _within(NEVER, CALLS[call](Containers(docker)))
    assert info.value.exit_code == 3


@pytest.mark.parametrize(
    ("hung", "call", "what"),
    [
        ("pull", CALLS["ensure_image"], "image example/web:1"),
        ("create", CALLS["start_colour"], f"container {NAME}"),
        ("start", CALLS["start_colour"], f"container {NAME}"),
        ("stop", CALLS["stop_and_remove"], "container c0ffeec0ffee"),
        ("delete", CALLS["stop_and_remove"], "container c0ffeec0ffee"),
    ],
)
async def test_a_change_the_daemon_never_finishes_is_unreachable(
    hung: str, call: Callable[[Containers], Awaitable[Any]], what: str, tmp_path: Path
) -> None:
    # start_colour replaces the running container (its spec differs) before it creates the new one.
    fake = FakeDocker(delays={hung: HANG}, image_present=hung != "pull")
    async with fake_docker(fake, tmp_path) as docker:
        with pytest.raises(UnreachableError, match=rf"{what}: the Docker engine did not answer within"):
            await _within(NEVER, call(Containers(docker)))
    assert fake.calls[-1] == hung


async def test_a_stop_gets_the_containers_own_grace_on_top_of_the_bound(tmp_path: Path) -> None:
    """Docker answers a stop only after the app's stop_timeout (SIGTERM, then SIGKILL): that is no hang."""
    fake = FakeDocker(delays={"stop": 1.0 + SHORT / 2})  # stop_timeout 1 s: within it and the grace
    async with fake_docker(fake, tmp_path) as docker:
        took = await _within(NEVER, CALLS["stop_and_remove"](Containers(docker)))
    assert took >= 1.0
    assert fake.calls[-2:] == ["stop", "delete"]


@pytest.mark.parametrize("delay", [2.0, HANG])
async def test_docker_slow_or_silent_on_inspect_is_no_verdict_on_a_live_container(
    delay: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon busy for 2 s (or a loop that stalled as long) rolled back a healthy version: its inspect had
    1 s. Now only Docker's answer that a container stopped, restarted or is unhealthy fails the check."""
    if delay == HANG:
        monkeypatch.setattr(readiness, "ALIVE_TIMEOUT", SHORT, raising=False)
    monkeypatch.setattr(containers_module, "QUICK", NEVER, raising=False)  # the check's own bound applies
    fake = FakeDocker(inspect_delays=[delay])  # the check's one inspection does not answer in time
    async with fake_docker(fake, tmp_path) as docker:
        await _within(NEVER, readiness.check_alive(containers=Containers(docker), app=APP, colour=GREEN))
    assert fake.calls == ["version", "inspect"]


async def test_a_definite_answer_that_the_container_stopped_still_fails_the_check(tmp_path: Path) -> None:
    async with fake_docker(FakeDocker(status="exited"), tmp_path) as docker:
        with pytest.raises(NotReady, match=f"{NAME} stopped while it was taking traffic"):
            await readiness.check_alive(containers=Containers(docker), app=APP, colour=GREEN)
