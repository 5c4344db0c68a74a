"""What the benchmark and the demo share: a workspace that always cleans up, containers, dynamic files.

Every container this creates is named `<prefix>-...` (a random prefix per invocation) and removed when the
workspace closes, also after an error or Ctrl-C; the work folder (Traefik's dynamic folder, configs, state)
lives in a temporary directory that goes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import yaml

from tests.support.docker_fixtures import remove_prefixed
from trafficshift.traefik.files import write_dynamic

APP_PORT = 8080
# Label on every container the baselines start, so the emulated Docker provider can find them.
GROUP_LABEL = "trafficshift.bench.group"


def new_prefix(kind: str) -> str:
    """A random prefix for the names of everything one invocation creates."""
    return kind + secrets.token_hex(3)


@dataclass
class Workspace:
    prefix: str
    root: Path
    docker: aiodocker.Docker

    @property
    def dynamic_dir(self) -> Path:
        return self.root / "dynamic"


@contextlib.asynccontextmanager
async def open_workspace(prefix: str) -> AsyncIterator[Workspace]:
    """A Docker client and a temporary folder; on exit every `prefix` container and the folder are removed."""
    docker = aiodocker.Docker()
    try:
        async with asyncio.timeout(10):
            await docker.version()
    except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        await docker.close()
        raise SystemExit(
            f"the Docker engine does not answer ({exc!r}): start it, then run this again"
        ) from exc
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    try:
        yield Workspace(prefix=prefix, root=root, docker=docker)
    finally:
        try:
            # Shielded: a second Ctrl-C must not leave containers behind half-way through the cleanup.
            await asyncio.shield(remove_prefixed(docker, prefix=prefix))
        finally:
            await docker.close()
            shutil.rmtree(root, ignore_errors=True)


def cancel_on_signals(task: asyncio.Task[Any], *, out: Any = sys.stderr) -> None:
    """SIGINT/SIGTERM cancel `task` (its `finally` blocks clean up); later signals only say we are on it."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_signal(signum: int) -> None:
        if not seen:
            print(f"\n{signal.Signals(signum).name}: stopping and cleaning up...", file=out, flush=True)
            task.cancel()
        else:
            print("still cleaning up (containers and temp files); one moment", file=out, flush=True)
        seen.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


def run_main(work: Callable[[], Awaitable[object]], *, interrupted: str) -> int:
    """Run `work` on a fresh event loop, SIGINT/SIGTERM cancelling it so that its cleanup runs: its int
    result (0 for anything else) is the exit code, 130 when it was interrupted."""

    async def guarded() -> object:
        task = asyncio.current_task()
        assert task is not None
        cancel_on_signals(task)
        return await work()

    try:
        result = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(interrupted, file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


# ---------------------------------------------------------------------- containers


async def run_container(
    docker: aiodocker.Docker,
    *,
    name: str,
    image: str,
    group: str,
    host_port: int | None = None,
    health_interval: float | None = None,
) -> int:
    """Create and start `image` as `name`, port 8080 published on 127.0.0.1 (`host_port`, else a random
    one); return the host port. `health_interval` gives it a Compose-style healthcheck on /healthz."""
    config: dict[str, Any] = {
        "Image": image,
        "Labels": {GROUP_LABEL: group},
        "ExposedPorts": {f"{APP_PORT}/tcp": {}},
        "HostConfig": {
            "PortBindings": {
                f"{APP_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port or "")}],
            },
        },
    }
    if health_interval is not None:
        nanos = int(health_interval * 1e9)
        config["Healthcheck"] = {
            "Test": ["CMD", "/bin/wget", "-q", "-O-", f"http://127.0.0.1:{APP_PORT}/healthz"],
            "Interval": nanos,
            "Timeout": 2_000_000_000,
            "Retries": 3,
        }
    container = await docker.containers.run(config=config, name=name)
    info = await container.show()
    bindings = info["NetworkSettings"]["Ports"][f"{APP_PORT}/tcp"]
    return int(bindings[0]["HostPort"])


async def stop_container(docker: aiodocker.Docker, *, name: str, grace: float = 10) -> None:
    """`docker stop` (SIGTERM, then SIGKILL after `grace` seconds) and `docker rm`."""
    container = await docker.containers.get(name)
    await container.stop(t=int(grace))
    await container.delete(force=True)


async def is_healthy(docker: aiodocker.Docker, *, name: str) -> bool:
    """What `docker inspect --format '{{.State.Health.Status}}'` says is "healthy"."""
    info = await (await docker.containers.get(name)).show()
    return bool(info["State"].get("Health", {}).get("Status") == "healthy")


async def running_servers(docker: aiodocker.Docker, *, group: str) -> list[str]:
    """URLs of the running containers of `group`, as Traefik's Docker provider would list them: a container
    with a healthcheck counts only once Docker says it is healthy (the provider skips it before)."""
    urls = []
    for c in await docker.containers.list(filters={"label": [f"{GROUP_LABEL}={group}"]}):
        if c["State"] != "running" or "(health: starting)" in c["Status"] or "(unhealthy)" in c["Status"]:
            continue
        for port in c["Ports"]:
            if port.get("PrivatePort") == APP_PORT and port.get("PublicPort"):
                urls.append(f"http://127.0.0.1:{port['PublicPort']}")
    return sorted(set(urls))


# ---------------------------------------------------------------------- dynamic files of the baselines


def render_load_balancer(*, name: str, servers: list[str], health: bool) -> str:
    """One router and one loadBalancer over `servers`, with the seed's retry (3 attempts).

    With `health`, Traefik's own health check every 1 s on /healthz, as the seed configures it.
    """
    service: dict[str, Any] = {"servers": [{"url": url} for url in servers], "passHostHeader": True}
    if health:
        service["healthCheck"] = {"path": "/healthz", "interval": "1s"}
    doc = {
        "http": {
            "routers": {
                name: {
                    "rule": f"Host(`{name}.localhost`)",
                    "entryPoints": ["web"],
                    "service": name,
                    "middlewares": [f"{name}-retry"],
                }
            },
            "middlewares": {f"{name}-retry": {"retry": {"attempts": 3}}},
            "services": {name: {"loadBalancer": service}},
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_file(dynamic_dir: Path, name: str, text: str | None) -> None:
    """Replace (or with None remove) `<dynamic_dir>/<name>.yml` atomically, as trafficshift does."""
    write_dynamic(dynamic_dir=dynamic_dir, app=name, text=text)


class LabelDiscovery:
    """Traefik's Docker provider, emulated through the file provider for one group of containers.

    Every running container of the group is a server of one loadBalancer (a container counts as soon as it
    runs, and stops counting when it stops): the file is rewritten within `poll` seconds of a change, and
    removed when no container runs (the Docker provider then drops the router: 404).
    """

    def __init__(self, *, docker: aiodocker.Docker, group: str, dynamic_dir: Path, poll: float = 0.1) -> None:
        self.docker = docker
        self.group = group
        self.dynamic_dir = dynamic_dir
        self.poll = poll
        self.servers: list[str] = []
        self.changes: list[tuple[float, list[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def sync(self) -> bool:
        servers = await running_servers(self.docker, group=self.group)
        if servers == self.servers:
            return False
        text = render_load_balancer(name=self.group, servers=servers, health=True) if servers else None
        write_file(self.dynamic_dir, self.group, text)
        self.servers = servers
        self.changes.append((time.monotonic(), servers))
        return True

    async def _watch(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self.poll)

    async def __aenter__(self) -> LabelDiscovery:
        await self.sync()
        self._task = asyncio.create_task(self._watch(), name=f"discovery-{self.group}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        write_file(self.dynamic_dir, self.group, None)


# ---------------------------------------------------------------------- Traefik


async def wait_serving(*, web_url: str, host: str, body: str, within: float = 30) -> float:
    """Wait until Traefik answers 2xx with `body` for `host`; return the seconds it took."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    web_url + "/", headers={"Host": host}, timeout=aiohttp.ClientTimeout(total=2)
                ) as response:
                    text = (await response.text()).strip()
                    if 200 <= response.status < 300 and text == body:
                        return time.monotonic() - started
            await asyncio.sleep(0.05)
