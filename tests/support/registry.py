"""A tiny image registry on 127.0.0.1 for pull tests (no registry is reachable here): Docker's registry API v2
for one image, behind basic auth, recording the credentials it was sent.

The Docker engine pulls from a loopback registry over plain HTTP (127.0.0.0/8 is an insecure registry by
default). The image served is a local one, taken apart with `docker save`: its config and its one layer.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.traefik import free_port

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
API_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    user: str
    password: str
    # The Authorization header of every request, in order (None: sent without one).
    seen: list[str | None] = field(default_factory=list)

    def image(self, name: str, tag: str) -> str:
        return f"{self.host}/{name}:{tag}"

    def authorised(self) -> list[str]:
        """The user:password pairs the registry was sent (decoded)."""
        pairs = []
        for header in self.seen:
            if header and header.startswith("Basic "):
                pairs.append(base64.b64decode(header.removeprefix("Basic ")).decode())
        return pairs


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def export_image(image: str) -> tuple[bytes, list[bytes]]:
    """The config and the layers (gzipped) of a local image, by `docker save`."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None, name
            return member.read()

        (entry,) = json.loads(read("manifest.json"))
        return read(entry["Config"]), [gzip.compress(read(layer), mtime=0) for layer in entry["Layers"]]


@contextlib.asynccontextmanager
async def run_registry(
    *, image: str, name: str, tag: str, user: str = "tester", password: str = "s3cret"
) -> AsyncIterator[Registry]:
    """Serve local `image` as `<name>:<tag>` on a free loopback port, only to `user`:`password`."""
    config, layers = export_image(image)
    blobs = {_digest(b): b for b in (config, *layers)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _digest(layer),
                }
                for layer in layers
            ],
        }
    ).encode()
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    registry = Registry(host="", user=user, password=password)

    def error(status: int, code: str, message: str) -> web.Response:
        body = {"errors": [{"code": code, "message": message, "detail": None}]}
        headers = dict(API_HEADER)
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="trafficshift-test"'
        return web.json_response(body, status=status, headers=headers)

    async def handle(request: web.Request) -> web.StreamResponse:
        registry.seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != expected:
            return error(401, "UNAUTHORIZED", "authentication required")
        path = request.path
        if path == "/v2/":
            return web.json_response({}, headers=API_HEADER)
        if path.startswith(f"/v2/{name}/manifests/"):
            ref = path.rpartition("/")[2]
            if ref not in (tag, _digest(manifest)):
                return error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            headers = {**API_HEADER, "Docker-Content-Digest": _digest(manifest)}
            return web.Response(body=manifest, content_type=MANIFEST_TYPE, headers=headers)
        if path.startswith(f"/v2/{name}/blobs/"):
            blob = blobs.get(path.rpartition("/")[2])
            if blob is None:
                return error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return web.Response(body=blob, content_type="application/octet-stream", headers=API_HEADER)
        return error(404, "NAME_UNKNOWN", "repository name not known to registry")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    registry.host = f"127.0.0.1:{port}"
    try:
        yield registry
    finally:
        await runner.cleanup()
