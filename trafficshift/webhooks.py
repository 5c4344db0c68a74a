"""Signed JSON webhooks: one POST per rollout transition (in the background), and the `confirm` gate.

Every body is signed with HMAC-SHA256 over its exact bytes, in `X-Trafficshift-Signature: sha256=<hex>`.
Bodies carry a unique `id` (the same on every retry of one delivery) and a `timestamp` (Unix seconds), so a
receiver can reject replays: check the signature, then that the timestamp is recent and the id unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from trafficshift import report
from trafficshift.errors import ConfirmDenied
from trafficshift.models import Colour, Config, ConfirmSpec, Event, Rollout, WebhookSpec

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Trafficshift-Signature"
EVENT_HEADER = "X-Trafficshift-Event"
DELIVERY_HEADER = "X-Trafficshift-Delivery"
TRANSITION = "rollout.transition"
CONFIRM = "rollout.confirm"
# Backoff between attempts: 0.5 s, 1 s, 2 s, ... capped; every attempt stays within the hook's timeout.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 8.0
# Enough of an answer to explain a "no" (e.g. "change freeze until Monday").
ANSWER_CHARS = 300


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=<hex of HMAC-SHA256(secret, body)>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str | None) -> bool:
    """True when `signature` (the header's value) signs `body` with `secret`; for receivers and tests."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


def encode(kind: str, data: Mapping[str, Any]) -> bytes:
    """A delivery body: a fresh `id`, `type`, `timestamp` (Unix seconds) and `sent_at`, then `data`."""
    now = time.time()
    envelope = {
        "id": uuid.uuid4().hex,
        "type": kind,
        "timestamp": int(now),
        "sent_at": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat(timespec="milliseconds"),
        **data,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Delivery:
    """How one delivery ended: `ok` on a 2xx; `status` of the last answer (None: none came)."""

    ok: bool
    status: int | None
    attempts: int
    detail: str


def _retryable(status: int) -> bool:
    # A 4xx is the receiver's answer and would not change; 408/429 and 5xx may.
    return status >= 500 or status in (408, 429)


async def deliver(
    *, session: aiohttp.ClientSession, url: str, secret: bytes, body: bytes, within: float, retries: int
) -> Delivery:
    """POST the signed `body`; retry errors, timeouts, 5xx, 408 and 429 with backoff, within `within` s."""
    envelope = json.loads(body)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_HEADER: str(envelope.get("type", "")),
        DELIVERY_HEADER: str(envelope.get("id", "")),
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    backoff = FIRST_BACKOFF
    attempts = 0
    while True:
        attempts += 1
        status: int | None = None
        try:
            async with asyncio.timeout_at(deadline):
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                    status = response.status
                    answer = (await response.content.read(ANSWER_CHARS)).decode("utf-8", "replace").strip()
            if 200 <= status < 300:
                return Delivery(ok=True, status=status, attempts=attempts, detail=f"HTTP {status}")
            detail = f"HTTP {status}" + (f": {answer}" if answer else "")
            if not _retryable(status):
                return Delivery(ok=False, status=status, attempts=attempts, detail=detail)
        except TimeoutError:
            detail = f"no answer within {within:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
        if attempts > retries or loop.time() + backoff >= deadline:
            why = f"{detail} (after {attempts} attempt{'s' if attempts > 1 else ''})"
            return Delivery(ok=False, status=status, attempts=attempts, detail=why)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


async def confirm_step(
    *,
    session: aiohttp.ClientSession,
    gate: ConfirmSpec,
    rollout: Rollout,
    step: int,
    weights: Mapping[Colour, int],
) -> Delivery:
    """Ask the gate whether the rollout may move to `weights` at `step` (0-based); ConfirmDenied if not."""
    body = encode(
        CONFIRM,
        {
            "rollout": report.rollout_dict(rollout),
            "step": step + 1,
            "steps": len(rollout.steps),
            "weights": report.weights_dict(weights),
            "current_weights": report.weights_dict(rollout.weights),
        },
    )
    result = await deliver(
        session=session,
        url=gate.url,
        secret=gate.secret,
        body=body,
        within=gate.timeout,
        retries=gate.retries,
    )
    if not result.ok:
        answered = result.status is not None and not _retryable(result.status)
        raise ConfirmDenied(url=gate.url, detail=result.detail, answered=answered)
    return result


class Notifier:
    """Sends each rollout transition to the webhooks that want it, each delivery a task of its own.

    A rollout never waits for them; `aclose` waits for those in flight, at most the longest hook timeout
    (every delivery is bounded by its own timeout), and then gives up on any left.
    """

    def __init__(self, *, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self._tasks: set[asyncio.Task[Delivery]] = set()

    def notify(self, event: Event, rollout: Rollout | None) -> None:
        spec = self.config.apps.get(event.app)
        hooks = self.config.webhooks_of(spec) if spec is not None else self.config.webhooks
        wanted = [h for h in hooks if h.events is None or str(event.phase) in h.events]
        if not wanted:
            return
        data: dict[str, Any] = {"event": report.event_dict(event)}
        if rollout is not None:
            data["rollout"] = report.rollout_dict(rollout)
        for hook in wanted:
            task = asyncio.create_task(self._send(hook, encode(TRANSITION, data)), name=f"webhook {hook.url}")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    async def confirm(
        self, *, gate: ConfirmSpec, rollout: Rollout, step: int, weights: Mapping[Colour, int]
    ) -> None:
        """Ask the confirm gate before a weight increase; ConfirmDenied unless it answers 2xx."""
        await confirm_step(session=self.session, gate=gate, rollout=rollout, step=step, weights=weights)

    def _done(self, task: asyncio.Task[Delivery]) -> None:
        self._tasks.discard(task)
        # Nobody awaits a delivery: a bug in one must reach the log, not vanish with the task.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("webhook delivery %s crashed", task.get_name(), exc_info=exc)

    async def _send(self, hook: WebhookSpec, body: bytes) -> Delivery:
        result = await deliver(
            session=self.session,
            url=hook.url,
            secret=hook.secret,
            body=body,
            within=hook.timeout,
            retries=hook.retries,
        )
        if not result.ok:
            log.warning("webhook %s: delivery failed: %s", hook.url, result.detail)
        return result

    async def aclose(self) -> None:
        """Let deliveries in flight finish, within the longest timeout of the hooks; cancel the rest."""
        if not self._tasks:
            return
        hooks = [*self.config.webhooks, *(h for app in self.config.apps.values() for h in app.webhooks)]
        bound = max((h.timeout for h in hooks), default=0.0) + 0.5
        _, pending = await asyncio.wait(set(self._tasks), timeout=bound)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pending:
            log.warning("gave up on %d webhook deliveries still in flight", len(pending))
