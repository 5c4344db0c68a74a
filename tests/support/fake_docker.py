"""A Docker engine API on a unix socket that is slow or silent on purpose: what the real engine cannot be made
to do on demand (a hung or overloaded daemon). Everything else is tested against the real engine.

It knows one managed container, `web-green-1`, running. Each answer can be delayed, or never given.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
from aiohttp import web

from trafficshift.containers import LABEL_APP, LABEL_COLOUR, LABEL_IMAGE, LABEL_PORT

CONTAINER_ID = "c0ffee" * 10 + "abcd"
NAME = "web-green-1"
HANG = float("inf")

# (method, path without the API version) -> the name tests use to slow it down or silence it.
ROUTES = [
    ("GET", r"/version", "version"),
    ("GET", r"/containers/json", "list"),
    ("GET", r"/containers/[^/]+/json", "inspect"),
    ("GET", r"/images/[^/]+(/[^/]+)*/json", "image"),
    ("POST", r"/images/create", "pull"),
    ("POST", r"/containers/create", "create"),
    ("POST", r"/containers/[^/]+/start", "start"),
    ("POST", r"/containers/[^/]+/stop", "stop"),
    ("DELETE", r"/containers/[^/]+", "delete"),
    ("GET", r"/containers/[^/]+/logs", "logs"),
]


def container(status: str = "running") -> dict[str, Any]:
    """`web-green-1` as Docker's inspect shows it (what containers.py reads of it)."""
    return {
        "Id": CONTAINER_ID,
        "Name": f"/{NAME}",
        "Image": "sha256:1111",
        "RestartCount": 0,
        "State": {"Status": status, "ExitCode": 0 if status == "running" else 3, "Error": ""},
        "Config": {
            "Image": "example/web:1",
            "Labels": {
                LABEL_APP: "web",
                LABEL_COLOUR: "green",
                LABEL_IMAGE: "example/web:1",
                LABEL_PORT: "8080",
            },
        },
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40000"}]}},
    }


@dataclass
class FakeDocker:
    """Delays by route name (seconds, or HANG); `inspect_delays` delays the n-th inspect (then `delays`)."""

    delays: dict[str, float] = field(default_factory=dict)
    inspect_delays: list[float] = field(default_factory=list)
    status: str = "running"
    image_present: bool = True
    calls: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = re.sub(r"^/v[0-9.]+", "", request.path)
        route = next((n for m, p, n in ROUTES if m == request.method and re.fullmatch(p, path)), "other")
        self.calls.append(route)
        delay = self.delays.get(route, 0.0)
        if route == "inspect" and self.inspect_delays:
            delay = self.inspect_delays.pop(0)
        if delay == HANG:
            await asyncio.Event().wait()  # a daemon that never answers
        await asyncio.sleep(delay)
        return self.answer(route)

    def answer(self, route: str) -> web.StreamResponse:
        if route == "version":
            return web.json_response({"ApiVersion": "1.41", "Version": "20.10.24"})
        if route == "list":
            return web.json_response([{"Id": CONTAINER_ID, "Names": [f"/{NAME}"]}])
        if route == "inspect":
            return web.json_response(container(self.status))
        if route == "image":
            if self.image_present:
                return web.json_response({"Id": "sha256:1111"})
            return web.json_response({"message": "No such image"}, status=404)
        if route == "create":
            return web.json_response({"Id": CONTAINER_ID, "Warnings": []}, status=201)
        if route in ("start", "stop", "delete"):
            return web.Response(status=204)
        return web.json_response({"message": f"not faked: {route}"}, status=500)


@contextlib.asynccontextmanager
async def fake_docker(fake: FakeDocker, folder: Path) -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client of `fake`, served on `<folder>/docker.sock`; both closed on exit."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    socket = folder / "docker.sock"
    await web.UnixSite(runner, str(socket)).start()
    client = aiodocker.Docker(url=f"unix://{socket}")
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()
