"""A pull's progress line and its error text (the real pulls run against Docker in the integration tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from trafficshift.errors import ImageError
from trafficshift.pull import PullProgress, pull, pull_failed

# Docker's pull stream, as `POST /images/create` sends it (abridged).
STREAM: list[dict[str, Any]] = [
    {"status": "Pulling from acme/web", "id": "2"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Already exists", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {"status": "Waiting", "progressDetail": {}, "id": "cccccccccccc"},
    {
        "status": "Downloading",
        "progressDetail": {"current": 1_000_000, "total": 4_000_000},
        "id": "aaaaaaaaaaaa",
    },
    {
        "status": "Downloading",
        "progressDetail": {"current": 500_000, "total": 2_000_000},
        "id": "cccccccccccc",
    },
    {"status": "Download complete", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {
        "status": "Extracting",
        "progressDetail": {"current": 4_000_000, "total": 4_000_000},
        "id": "aaaaaaaaaaaa",
    },
    {"status": "Pull complete", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Digest: sha256:" + "d" * 64},
    {"status": "Status: Downloaded newer image for ghcr.io/acme/web:2"},
]


def test_the_progress_line_counts_layers_and_megabytes() -> None:
    progress = PullProgress("ghcr.io/acme/web:2")
    lines = [progress.update(chunk) for chunk in STREAM]
    assert lines[0] is None  # not about a layer
    assert lines[1] == "pulling ghcr.io/acme/web:2: 0/1 layers"
    assert lines[2] == "pulling ghcr.io/acme/web:2: 1/2 layers"
    assert lines[5] == "pulling ghcr.io/acme/web:2: 1/3 layers, 1.5 of 6.0 MB"
    assert lines[8] == "pulling ghcr.io/acme/web:2: 2/3 layers, 4.5 of 6.0 MB"
    assert lines[9:] == [None, None]


def test_a_refused_pull_names_the_image_the_registry_and_its_answer() -> None:
    text = pull_failed(
        "ghcr.io/acme/web:9",
        registry="ghcr.io",
        answer="manifest for ghcr.io/acme/web:9 not found: manifest unknown\n",
        note="credentials for ghcr.io from docker-credential-pass",
    )
    assert text == (
        "image ghcr.io/acme/web:9 is not on this host and pulling it from ghcr.io failed:"
        " manifest for ghcr.io/acme/web:9 not found: manifest unknown"
        " (credentials for ghcr.io from docker-credential-pass)"
    )


class _Images:
    """Stands in for aiodocker's images API: records each pull, answers with `error` or a stream."""

    def __init__(self, error: aiodocker.DockerError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any, bool]] = []

    def pull(self, reference: str, *, auth: Any = None, stream: bool = False) -> Any:
        self.calls.append((reference, auth, stream))
        if stream:
            return self._stream()
        return self._once()

    async def _once(self) -> list[Any]:
        if self.error:
            raise self.error
        return []

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in STREAM[:3]:
            yield chunk
        if self.error:
            raise self.error


class _Docker:
    def __init__(self, images: _Images) -> None:
        self.images = images


def _write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder / "config.json"


async def test_credentials_are_sent_with_the_registry_spelled_out(docker_config: Path) -> None:
    _write(docker_config, json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}}))
    images = _Images()
    shown: list[str] = []
    await pull(_Docker(images), "example/web:2", on_progress=shown.append)  # type: ignore[arg-type]
    auth = {"username": "u", "password": "p", "serveraddress": "https://index.docker.io/v1/"}
    assert images.calls == [("docker.io/example/web:2", auth, True)]
    assert shown == [
        "pulling example/web:2 from docker.io",
        "pulling example/web:2: 0/1 layers",
        "pulling example/web:2: 1/2 layers",
    ]


async def test_without_credentials_the_reference_goes_as_it_is_and_a_refusal_says_so(
    docker_config: Path,
) -> None:
    refused = aiodocker.DockerError(404, "pull access denied for example/web, repository does not exist")
    images = _Images(refused)
    with pytest.raises(ImageError) as info:
        await pull(_Docker(images), "example/web:2")  # type: ignore[arg-type]
    assert images.calls == [("example/web:2", None, False)]
    assert str(info.value) == (
        "image example/web:2 is not on this host and pulling it from docker.io failed: pull access denied for"
        f" example/web, repository does not exist (no credentials: {docker_config} does not exist)"
    )
    assert info.value.field == "image"


async def test_an_error_in_the_stream_is_the_registrys_answer_too(docker_config: Path) -> None:
    _write(docker_config, "{}")
    images = _Images(aiodocker.DockerError(500, "unauthorized: authentication required"))
    with pytest.raises(ImageError, match=r"from ghcr\.io failed: unauthorized: authentication required \(no"):
        await pull(_Docker(images), "ghcr.io/acme/web:2", on_progress=lambda _: None)  # type: ignore[arg-type]


async def test_an_unreachable_engine_is_not_the_registrys_fault(docker_config: Path) -> None:
    images = _Images(aiodocker.DockerError(900, "Cannot connect to Docker"))
    with pytest.raises(aiodocker.DockerError):
        await pull(_Docker(images), "busybox")  # type: ignore[arg-type]
