"""Run the real `trafficshift serve` (a subprocess, as users do) on a free loopback port, and talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import secrets
import signal
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.cli import BIN
from tests.support.traefik import free_port

START_TIMEOUT = 20.0


@dataclass
class ServiceProc:
    url: str
    token: str
    process: asyncio.subprocess.Process
    log_path: Path
    session: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def cli_env(self) -> dict[str, str]:
        """What a CLI run needs to go through this service: its token (it finds the URL in service.json)."""
        return {"TRAFFICSHIFT_TOKEN": self.token}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Send a request with the token; return the status and the decoded JSON (or text)."""
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        async with self.session.request(method, self.url + path, data=data, headers=headers, **kw) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def promote(self, app: str, **body: Any) -> str:
        """`POST /apps/{app}/promote` with `body`; it must be accepted: the rollout's id."""
        status, doc = await self.call("POST", f"/apps/{app}/promote", body)
        assert status == 202, doc
        return str(doc["id"])

    async def deploy(self, app: str, image: str) -> None:
        """Promote `image` through the API and wait until the rollout is done."""
        rollout = await self.wait_rollout(await self.promote(app, image=image))
        assert rollout["outcome"] == "done", rollout

    async def wait_rollout(self, rollout_id: str, *, within: float = 60.0) -> dict[str, Any]:
        """Poll `GET /rollouts/{id}` until it has an outcome."""
        async with asyncio.timeout(within):
            while True:
                status, doc = await self.call("GET", f"/rollouts/{rollout_id}")
                assert status == 200, doc
                if doc["outcome"] is not None:
                    return dict(doc)
                await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM, *, within: float = 40.0) -> tuple[int, float]:
        """Signal the service and wait for it; return its exit code and how long it took."""
        started = time.monotonic()
        if self.process.returncode is None:
            self.process.send_signal(sig)
        async with asyncio.timeout(within):
            code = await self.process.wait()
        return code, time.monotonic() - started


@contextlib.asynccontextmanager
async def run_service(
    config: Path,
    *,
    token: str | None = None,
    log_name: str = "service.log",
    env: dict[str, str] | None = None,
    soft_nofile: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> AsyncIterator[ServiceProc]:
    """Start `trafficshift serve -c config`, wait until `/healthz` answers; SIGTERM it at the end.

    `soft_nofile` starts it with that soft limit of open files (the hard one as it is), as a shell with a
    low `ulimit -Sn` would. `tls` (certificate, key): it serves https, and the session trusts that
    certificate.
    """
    token = token or secrets.token_urlsafe(16)
    port = free_port()
    log_path = config.parent / log_name
    environment = {**os.environ, "TRAFFICSHIFT_TOKEN": token, **(env or {})}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            str(BIN),
            "serve",
            "-c",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            *(() if tls is None else ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))),
            stdout=log,
            stderr=log,
            env=environment,
            preexec_fn=None if soft_nofile is None else functools.partial(_soft_nofile, soft_nofile),
        )
    connector = None if tls is None else aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=tls[0]))
    scheme = "http" if tls is None else "https"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), connector=connector) as session:
        service = ServiceProc(
            url=f"{scheme}://127.0.0.1:{port}",
            token=token,
            process=process,
            log_path=log_path,
            session=session,
        )
        try:
            await _wait_healthy(service)
            yield service
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(40):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


def _soft_nofile(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


async def _wait_healthy(service: ServiceProc) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.process.returncode is not None:
            raise RuntimeError(
                f"trafficshift serve exited with {service.process.returncode}:\n{service.log()}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with service.session.get(service.url + "/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"trafficshift serve did not answer within {START_TIMEOUT}s:\n{service.log()}")


async def read_sse(
    session: aiohttp.ClientSession, url: str, token: str, *, until: Any, headers: dict[str, str] | None = None
) -> list[tuple[int, str, dict[str, Any]]]:
    """Read `(id, event, data)` from an SSE stream until `until(data)` is true for an event."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    async with session.get(url, headers=all_headers, timeout=aiohttp.ClientTimeout(total=None)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line == "":
                if "data" in event:
                    data = json.loads(event["data"])
                    found.append((int(event["id"]), event.get("event", "message"), data))
                    if until(data):
                        return found
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                event[key] = value.removeprefix(" ")
    return found
