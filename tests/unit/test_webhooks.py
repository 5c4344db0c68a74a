"""Webhook deliveries against a local receiver on 127.0.0.1: signatures, retries with backoff, bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.factories import make_rollout
from tests.support.hooks import run_receiver
from trafficshift import webhooks
from trafficshift.errors import ConfirmDenied
from trafficshift.models import AppSpec, Colour, Config, ConfirmSpec, Event, Phase, TraefikSpec, WebhookSpec

SECRET = b"s3cret"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "FIRST_BACKOFF", 0.05)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = webhooks.encode("rollout.transition", {"x": 1})
    signature = webhooks.sign(SECRET, body)
    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64
    assert webhooks.verify(SECRET, body, signature)
    assert not webhooks.verify(SECRET, body + b" ", signature)
    assert not webhooks.verify(b"other", body, signature)
    assert not webhooks.verify(SECRET, body, None)


def test_bodies_carry_an_id_and_a_timestamp_for_replay_protection() -> None:
    import json

    first, second = (json.loads(webhooks.encode("t", {"a": 1})) for _ in range(2))
    assert first["id"] != second["id"]
    assert abs(first["timestamp"] - time.time()) < 5
    assert first["type"] == "t"
    assert first["a"] == 1


async def test_retries_5xx_with_growing_backoff_then_succeeds(session: aiohttp.ClientSession) -> None:
    def answer(path: str, body: dict[str, Any], attempt: int) -> tuple[int, str]:
        return (500, "busy") if attempt < 3 else (200, "ok")

    async with run_receiver(secret=SECRET, answer=answer) as receiver:
        body = webhooks.encode("rollout.transition", {"n": 1})
        result = await webhooks.deliver(
            session=session, url=receiver.url + "/hook", secret=SECRET, body=body, within=5, retries=3
        )
    assert result.ok
    assert result.attempts == 3
    assert [r.status for r in receiver.received] == [500, 500, 200]
    # The same delivery each time: same bytes, same id, valid signature.
    assert {r.raw for r in receiver.received} == {body}
    assert receiver.signed()
    assert {r.delivery_header for r in receiver.received} == {receiver.received[0].body["id"]}
    assert {r.event_header for r in receiver.received} == {"rollout.transition"}
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1


async def test_gives_up_after_the_retries(session: aiohttp.ClientSession) -> None:
    async with run_receiver(secret=SECRET, answer=lambda *_: (503, "down")) as receiver:
        result = await webhooks.deliver(
            session=session, url=receiver.url, secret=SECRET, body=b'{"id":"x"}', within=5, retries=2
        )
    assert not result.ok
    assert result.attempts == 3
    assert result.status == 503
    assert "HTTP 503: down (after 3 attempts)" in result.detail


async def test_a_4xx_is_an_answer_and_is_not_retried(session: aiohttp.ClientSession) -> None:
    async with run_receiver(secret=SECRET, answer=lambda *_: (403, "no")) as receiver:
        result = await webhooks.deliver(
            session=session, url=receiver.url, secret=SECRET, body=b'{"id":"x"}', within=5, retries=3
        )
    assert not result.ok
    assert result.attempts == 1
    assert len(receiver.received) == 1


async def test_a_hanging_receiver_never_holds_longer_than_the_timeout(session: aiohttp.ClientSession) -> None:
    async with run_receiver(secret=SECRET, answer=lambda *_: None) as receiver:
        started = time.monotonic()
        result = await webhooks.deliver(
            session=session, url=receiver.url, secret=SECRET, body=b'{"id":"x"}', within=0.5, retries=5
        )
        took = time.monotonic() - started
    assert not result.ok
    assert "no answer within 0.5s" in result.detail
    assert took < 0.8


async def test_unreachable_receiver_is_retried_within_the_timeout(session: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    result = await webhooks.deliver(
        session=session, url="http://127.0.0.1:9/", secret=SECRET, body=b'{"id":"x"}', within=1, retries=2
    )
    assert not result.ok
    assert result.attempts == 3
    assert time.monotonic() - started < 1.2


def _event(seq: int, phase: Phase) -> Event:
    return Event(
        seq=seq,
        rollout_id="r1",
        app="web",
        at=time.time(),
        phase=phase,
        step=0,
        weights={Colour.BLUE: 90, Colour.GREEN: 10},
        message=f"event {seq}",
    )


def _config(url: str, *, app_hooks: tuple[WebhookSpec, ...] = (), timeout: float = 2) -> Config:
    spec = AppSpec(name="web", image="web:1", port=80, rule="r", publish="127.0.0.1", webhooks=app_hooks)
    return Config(
        path=Path("/x/trafficshift.yml"),
        traefik=TraefikSpec(dynamic_dir=Path("/x/dyn")),
        state_dir=Path("/x/state"),
        apps={"web": spec},
        webhooks=(WebhookSpec(url=url + "/all", secret=SECRET, timeout=timeout),),
    )


async def test_notifier_sends_each_transition_to_the_hooks_that_want_it(
    session: aiohttp.ClientSession,
) -> None:
    async with run_receiver(secret=SECRET) as receiver:
        only_done = WebhookSpec(url=receiver.url + "/done", secret=SECRET, events=frozenset({"done"}))
        notifier = webhooks.Notifier(config=_config(receiver.url, app_hooks=(only_done,)), session=session)
        notifier.notify(_event(1, Phase.SHIFTING), make_rollout())
        notifier.notify(_event(2, Phase.DONE), make_rollout(phase=Phase.DONE))
        await notifier.aclose()
    assert sorted(r.body["event"]["seq"] for r in receiver.on("/all")) == [1, 2]
    assert [r.body["event"]["state"] for r in receiver.on("/done")] == ["done"]
    assert receiver.signed()
    first = receiver.on("/all")[0].body
    assert first["type"] == "rollout.transition"
    assert first["rollout"]["id"] == "r1"


async def test_notifier_close_is_bounded_by_the_hook_timeout(session: aiohttp.ClientSession) -> None:
    async with run_receiver(secret=SECRET, answer=lambda *_: None) as receiver:
        config = _config(receiver.url, timeout=0.5)
        notifier = webhooks.Notifier(config=config, session=session)
        notifier.notify(_event(1, Phase.SHIFTING), None)
        await asyncio.sleep(0.1)  # the delivery is under way
        started = time.monotonic()
        await notifier.aclose()
        assert time.monotonic() - started < config.webhooks[0].timeout + 0.7


@pytest.mark.parametrize(
    ("status", "answered", "words"),
    [(403, True, "said no: HTTP 403: change freeze"), (503, False, "did not confirm: HTTP 503")],
)
async def test_confirm_gate_denies_on_anything_but_2xx(
    session: aiohttp.ClientSession, status: int, answered: bool, words: str
) -> None:
    async with run_receiver(secret=SECRET, answer=lambda *_: (status, "change freeze")) as receiver:
        gate = ConfirmSpec(url=receiver.url + "/confirm", secret=SECRET, timeout=2, retries=1)
        with pytest.raises(ConfirmDenied) as info:
            await webhooks.confirm_step(
                session=session, gate=gate, rollout=make_rollout(), step=1, weights={Colour.GREEN: 50}
            )
    assert info.value.answered is answered
    assert words in str(info.value)
    body = receiver.received[0].body
    assert body["type"] == "rollout.confirm"
    assert (body["step"], body["steps"]) == (2, 3)
    assert body["weights"] == {"green": 50}
    assert body["current_weights"] == {"blue": 90, "green": 10}
    assert receiver.signed()


async def test_confirm_gate_says_yes_with_a_2xx(session: aiohttp.ClientSession) -> None:
    async with run_receiver(secret=SECRET) as receiver:
        gate = ConfirmSpec(url=receiver.url + "/confirm", secret=SECRET)
        result = await webhooks.confirm_step(
            session=session, gate=gate, rollout=make_rollout(), step=0, weights={Colour.GREEN: 10}
        )
    assert result.ok
