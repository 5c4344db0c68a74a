"""Webhooks and the confirm gate through a real promote (CLI, Docker, Traefik), received on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.support import cli
from tests.support.hooks import run_receiver
from tests.support.load import Load, load_app
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

SECRET = b"webhook-secret"


def _hooks(tmp_path: Path, hooks_url: str) -> dict[str, Any]:
    """The config's `webhooks` and `confirm` sections, both to `hooks_url`, signed with SECRET."""
    secret = tmp_path / "hook-secret"
    secret.write_bytes(SECRET + b"\n")
    hooks = {
        "webhooks": [
            {"url": f"{hooks_url}/events", "secret_file": str(secret), "timeout": "5s", "retries": 3}
        ],
        "confirm": {"url": f"{hooks_url}/confirm", "secret_file": str(secret), "timeout": "5s", "retries": 1},
    }
    return hooks


async def test_every_transition_is_delivered_signed_and_retried_and_each_increase_confirmed(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    def answer(path: str, body: dict[str, Any], attempt: int) -> tuple[int, str]:
        # Every transition fails once: each must arrive anyway, on a retry.
        return (500, "try again") if path == "/events" and attempt == 1 else (200, "ok")

    async with run_receiver(secret=SECRET, answer=answer) as receiver:
        config = cli.app_config(
            tmp_path, traefik, prefix, image=app_images["v1"], extra=_hooks(tmp_path, receiver.url)
        )
        assert (await cli.run("promote", prefix, config=config)).code == 0
        receiver.received.clear()
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)

    assert result.code == 0, result.stderr
    assert receiver.signed()
    events = result.events()
    delivered = [r for r in receiver.on("/events") if r.status == 200]
    # All of them, by the time the CLI exits; each after one 500.
    assert sorted(r.body["event"]["seq"] for r in delivered) == [e["seq"] for e in events]
    assert len(receiver.on("/events")) == 2 * len(events)
    assert all(r.event_header == "rollout.transition" for r in delivered)
    assert delivered[-1].body["rollout"]["id"] == events[-1]["rollout"]
    assert any(r.body["event"]["state"] == "done" for r in delivered)

    # The gate was asked before each increase of green's weight, in order, and said yes each time.
    asked = [r.body["weights"].get("green") for r in receiver.on("/confirm")]
    assert asked == [10, 50, 100]
    messages = [e["message"] for e in events]
    for percent, step in ((10, 1), (50, 2), (100, 3)):
        approved = messages.index(f"{receiver.url}/confirm approved {percent}% on green")
        assert approved < messages.index(f"step {step}/3: {percent}% on green")


async def test_a_confirm_hook_that_says_no_stops_the_rollout(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    def answer(path: str, body: dict[str, Any], attempt: int) -> tuple[int, str]:
        if path == "/confirm" and body["weights"].get("green", 0) > 10:
            return 403, "change freeze until Monday"
        return 200, "ok"

    async with run_receiver(secret=SECRET, answer=answer) as receiver:
        config = cli.app_config(
            tmp_path, traefik, prefix, image=app_images["v1"], extra=_hooks(tmp_path, receiver.url)
        )
        assert (await cli.run("promote", prefix, config=config)).code == 0
        receiver.received.clear()
        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=20)
            result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
            after = Load.mark()
            await load.wait_for(requests=load.total + 50)

    assert result.code == 1, result.stderr
    assert "change freeze until Monday" in result.stderr
    green = {e["weights"]["green"] for e in result.events() if "green" in e["weights"]}
    assert max(green) == 10
    assert load.summary().failed == 0
    assert load.share("v1", since=after) == 1.0
    history = await cli.run_json("history", prefix, config=config)
    assert history[0]["outcome"] == "aborted"
    assert "said no: HTTP 403: change freeze until Monday" in history[0]["reason"]
    ended = [r.body for r in receiver.on("/events") if r.body["event"]["state"] == "aborted"]
    assert ended
    assert "change freeze" in ended[0]["rollout"]["reason"]
    assert receiver.signed()
