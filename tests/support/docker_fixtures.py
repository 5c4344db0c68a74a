"""Pytest fixtures over the real Docker engine: a client that fails (never skips) without one, test images.

Every container and network whose name (or `trafficshift.app` label) starts with the test's `prefix` is
removed when the `docker` fixture is torn down, even when the test failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.support.images import REQUEST_LINE, build_app_image

IMAGE_REPO = "trafficshift-test/app"


@pytest.fixture(scope="session")
def app_images() -> dict[str, str]:
    """Build the app images once per session (cached across runs by an input-hash label)."""

    def build(key: str, **kw: Any) -> str:
        return build_app_image(tag=f"{IMAGE_REPO}:{key}", **kw)

    return {
        "v1": build("v1", version="v1"),
        "v2": build("v2", version="v2"),
        "never_ready": build("never_ready", version="never-ready", ready=False),
        "slow_start": build("slow_start", version="slow-start", start_delay=1.5),
        "healthcheck": build("healthcheck", version="healthcheck", healthcheck=True),
        "unhealthy": build("unhealthy", version="unhealthy", ready=False, healthcheck=True),
        "error_500": build("error_500", version="error-500", status_500=True),
        "slow": build("slow", version="slow", slow=1.0),
    }


@pytest.fixture
async def docker(prefix: str) -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client; fails the test when the engine does not answer. Cleans up `prefix` resources."""
    client = aiodocker.Docker()
    try:
        async with asyncio.timeout(10):
            await client.version()
    except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        await client.close()
        pytest.fail(f"the Docker engine does not answer ({exc!r}); Docker tests need a running engine")
    try:
        yield client
    finally:
        try:
            await remove_prefixed(client, prefix=prefix)
        finally:
            await client.close()


async def remove_prefixed(client: aiodocker.Docker, *, prefix: str) -> None:
    """Force-remove every container and network of this test run (by name or `trafficshift.app` label)."""
    for container in await client.containers.list(all=True):
        names = [n.lstrip("/") for n in container["Names"]]
        app = (container["Labels"] or {}).get("trafficshift.app", "")
        if app.startswith(prefix) or any(n.startswith(prefix) for n in names):
            try:
                await container.delete(force=True, v=True)
            except aiodocker.DockerError as exc:
                if exc.status not in (404, 409):  # already gone, or removal already in progress
                    raise
    for network in await client.networks.list(filters={"name": prefix}):
        if network["Name"].startswith(prefix):
            try:
                await (await client.networks.get(network["Id"])).delete()
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
async def docker_network(docker: aiodocker.Docker, prefix: str) -> str:
    """A user-defined bridge network named `<prefix>-net` (removed with the test's other resources)."""
    name = f"{prefix}-net"
    await docker.networks.create({"Name": name, "Driver": "bridge"})
    return name


async def colours_of(docker: aiodocker.Docker, app: str) -> dict[str, set[str]]:
    """The app's containers as Docker has them: colour -> images (labels per the contract)."""
    found: dict[str, set[str]] = {}
    for c in await docker.containers.list(all=True, filters={"label": [f"trafficshift.app={app}"]}):
        labels = c["Labels"]
        found.setdefault(labels["trafficshift.colour"], set()).add(labels["trafficshift.image"])
    return found


async def requests_logged(docker: aiodocker.Docker, app: str, colour: str) -> list[tuple[str, str, int]]:
    """(method, URI, status) of each request the colour's containers logged (images with `log_requests`)."""
    found: list[tuple[str, str, int]] = []
    filters = {"label": [f"trafficshift.app={app}", f"trafficshift.colour={colour}"]}
    for c in await docker.containers.list(all=True, filters=filters):
        lines = await c.log(stdout=True)
        for line in "".join(lines).splitlines():
            if line.startswith(REQUEST_LINE):
                _, _, method, uri, status = line.split()
                found.append((method, uri, int(status)))
    return found
