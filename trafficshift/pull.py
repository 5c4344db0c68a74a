"""Pull an image as `docker pull` would: with the credentials Docker itself uses, progress for a person,
and, when the registry refuses, an error that names the image, the registry and what it answered.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp

from trafficshift import credentials
from trafficshift.errors import ImageError, UnreachableError

ProgressSink = Callable[[str], None]
_MB = 1_000_000
# Docker's statuses of a layer that is on the host now.
_LAYER_DONE = ("Pull complete", "Already exists")
_LAYER_ID = re.compile(r"[0-9a-f]{12}")


@dataclass
class PullProgress:
    """Folds Docker's pull stream (one JSON object per layer update) into one line for a person."""

    image: str
    _layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (bytes done, bytes total)
    _done: set[str] = field(default_factory=set)

    def update(self, chunk: Mapping[str, Any]) -> str | None:
        """The line to show after `chunk`, or None when it says nothing new (a digest, a status line)."""
        layer, status = str(chunk.get("id") or ""), str(chunk.get("status") or "")
        if not _LAYER_ID.fullmatch(layer):
            return None  # "Pulling from library/x" (its id is the tag), "Digest: ...": not about a layer
        if status.startswith(_LAYER_DONE):
            self._done.add(layer)
            _, total = self._layers.get(layer, (0, 0))
            self._layers[layer] = (total, total)
        elif status in ("Downloading", "Extracting"):
            detail = chunk.get("progressDetail") or {}
            current, total = int(detail.get("current") or 0), int(detail.get("total") or 0)
            if status == "Downloading" and total:
                self._layers[layer] = (current, total)
        else:
            self._layers.setdefault(layer, (0, 0))  # "Pulling fs layer", "Waiting", "Verifying Checksum"
        return self.text()

    def text(self) -> str:
        done = sum(d for d, _ in self._layers.values())
        total = sum(t for _, t in self._layers.values())
        size = f", {done / _MB:.1f} of {total / _MB:.1f} MB" if total else ""
        return f"pulling {self.image}: {len(self._done)}/{len(self._layers)} layers{size}"


def pull_failed(image: str, *, registry: str, answer: str, note: str) -> str:
    """The message of a refused pull: the image, the registry, its answer (as Docker relays it), the creds."""
    return (
        f"image {image} is not on this host and pulling it from {registry} failed: {answer.strip()} ({note})"
    )


async def pull(docker: aiodocker.Docker, image: str, *, on_progress: ProgressSink | None = None) -> None:
    """Pull `image`; ImageError naming the registry's answer when it refuses; DockerError (e.g. the engine
    unreachable, status 900) otherwise, for the caller to translate."""
    found = await asyncio.to_thread(credentials.lookup, image)
    auth = found.credentials.auth() if found.credentials else None
    # aiodocker sends credentials only for a reference that names its registry; Docker names the image
    # it pulls as it would name the short reference.
    reference = credentials.qualified(image) if auth else image
    try:
        if on_progress is None:
            await docker.images.pull(reference, auth=auth)
            return
        progress = PullProgress(image)
        on_progress(f"pulling {image} from {found.registry}")
        async for chunk in docker.images.pull(reference, auth=auth, stream=True):
            if text := progress.update(chunk):
                on_progress(text)
    except aiodocker.DockerError as exc:
        if exc.status == 900:  # aiodocker's "could not connect": the engine, not the registry
            raise
        raise ImageError(
            pull_failed(image, registry=found.registry, answer=exc.message, note=found.note)
        ) from exc


async def image_present(image: str) -> bool:
    """Whether `image` is on this host (no pull): UnreachableError when the Docker engine is not there."""
    try:
        docker = aiodocker.Docker()
    except Exception as exc:  # aiodocker raises plain ValueError/OSError when it finds no socket
        raise UnreachableError(f"cannot reach the Docker engine: {exc}") from None
    try:
        try:
            await docker.images.inspect(image)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            if exc.status == 900:
                raise UnreachableError(
                    f"image {image}: the Docker engine is unreachable: {exc.message}"
                ) from exc
            raise ImageError(f"image {image}: Docker refuses it: {exc.message}") from exc
        except aiohttp.ClientError as exc:
            raise UnreachableError(f"image {image}: the Docker engine is unreachable: {exc}") from exc
        return True
    finally:
        await docker.close()
