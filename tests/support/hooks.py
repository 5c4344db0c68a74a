"""A webhook receiver on 127.0.0.1 for tests: records every delivery and answers from a script."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from trafficshift import webhooks

# (path, delivery body, attempt number of that delivery id) -> (status, text); None: hang until cancelled.
Answer = Callable[[str, dict[str, Any], int], tuple[int, str] | None]


@dataclass(frozen=True)
class Received:
    path: str
    at: float
    body: dict[str, Any]
    raw: bytes
    signature: str | None
    event_header: str | None
    delivery_header: str | None
    status: int | None


@dataclass
class Receiver:
    url: str
    secret: bytes
    received: list[Received] = field(default_factory=list)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def signed(self) -> bool:
        return all(webhooks.verify(self.secret, r.raw, r.signature) for r in self.received)


def always_ok(path: str, body: dict[str, Any], attempt: int) -> tuple[int, str] | None:
    return 200, "ok"


@contextlib.asynccontextmanager
async def run_receiver(*, secret: bytes, answer: Answer = always_ok) -> AsyncIterator[Receiver]:
    """Serve on a free loopback port until the block ends; `receiver.url` is its base URL."""
    attempts: dict[str, int] = {}
    receiver = Receiver(url="", secret=secret)

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        attempts[body["id"]] = attempt = attempts.get(body["id"], 0) + 1
        reply = answer(request.path, body, attempt)
        receiver.received.append(
            Received(
                path=request.path,
                at=time.monotonic(),
                body=body,
                raw=raw,
                signature=request.headers.get(webhooks.SIGNATURE_HEADER),
                event_header=request.headers.get(webhooks.EVENT_HEADER),
                delivery_header=request.headers.get(webhooks.DELIVERY_HEADER),
                status=reply[0] if reply else None,
            )
        )
        if reply is None:
            await asyncio.sleep(3600)
            reply = (500, "")
        return web.Response(status=reply[0], text=reply[1])

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@dataclass
class Gate:
    """A confirm gate the test answers by hand: each ask waits in `asks` until the test resolves it."""

    url: str
    asks: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[int]]] = field(default_factory=asyncio.Queue)

    async def next(self, *, within: float = 60.0) -> tuple[dict[str, Any], asyncio.Future[int]]:
        """The next ask (its delivery body, and the future to set to the HTTP status to answer)."""
        async with asyncio.timeout(within):
            return await self.asks.get()


@contextlib.asynccontextmanager
async def run_gate() -> AsyncIterator[Gate]:
    """A confirm gate on a free loopback port: `gate.url` is what `confirm.url` points at."""
    gate = Gate(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await gate.asks.put((json.loads(await request.read()), answer))
        return web.Response(status=await answer, text="")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gate.url = f"http://127.0.0.1:{runner.addresses[0][1]}/confirm"
    try:
        yield gate
    finally:
        await runner.cleanup()
