"""What the chaos suite (tests/chaos) checks after a fault, and the faults it needs beyond Docker's own.

The end state users care about: one colour serves, alone, in the record, in Docker, in the app's file (to
exactly its running containers) and in what Traefik runs; nothing of the other colour or of a write is left
behind. And the requests that failed, counted outside the windows when a fault made failing unavoidable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import aiodocker
import aiohttp

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Sample
from trafficshift.models import Phase
from trafficshift.store.rollouts import StateStore
from trafficshift.traefik.api import TraefikApi
from trafficshift.traefik.files import STAGING_DIR_NAME
from trafficshift.traefik.render import parse_dynamic


async def assert_serves_alone(
    *,
    config: Path,
    docker: aiodocker.Docker,
    dynamic_dir: Path,
    api_url: str,
    app: str,
    colour: str,
    image: str,
) -> None:
    """`colour` (on `image`) serves the app alone, as the record, Docker, the file and Traefik all say."""
    status = await cli.run_json("status", app, config=config)
    assert status["rollout"] is None, status
    assert (status["colour"], status["image"], status["weights"]) == (colour, image, {colour: 100}), status
    assert await colours_of(docker, app) == {colour: {image}}
    urls = sorted(c["url"] for c in status["containers"])
    assert all(c["running"] for c in status["containers"]), status["containers"]
    routing = parse_dynamic((dynamic_dir / f"{app}.yml").read_text())
    assert [(str(r.colour), r.weight, tuple(sorted(r.servers))) for r in routing.routes] == [
        (colour, 100, tuple(urls))
    ], routing
    async with aiohttp.ClientSession() as session:
        observed = await TraefikApi(api_url=api_url, session=session).read_routing(app)
    assert observed.matches(routing), observed
    assert not leftovers(dynamic_dir, app)


def leftovers(dynamic_dir: Path, app: str) -> list[str]:
    """Files of the app's writes left behind: temp files in the folder, or in the staging folder beside it."""
    staging = dynamic_dir.parent / STAGING_DIR_NAME
    found = [p for p in dynamic_dir.iterdir() if p.name != f"{app}.yml"]
    if staging.is_dir():
        found += [p for p in staging.iterdir() if p.name.startswith(f".{app}.")]
    return [str(p) for p in found]


def failed_outside(samples: Iterable[Sample], windows: Iterable[tuple[float, float]]) -> list[Sample]:
    """Failed requests that started outside every `(start, end)` window (on `Load.mark()`'s clock)."""
    spans = list(windows)
    return [s for s in samples if s.failed and not any(a <= s.started <= b for a, b in spans)]


# ---------------------------------------------------------------- the state store, as serve records it


async def wait_for_phase(
    state_dir: Path, app: str, phase: Phase, *, after: int, within: float = 60, poll: float = 0.005
) -> tuple[str, int]:
    """Wait until a transition of the app into `phase` is recorded (after event `after`); its rollout and seq.

    Read straight from the store every few milliseconds: a fault lands right after the boundary.
    """
    store = StateStore(state_dir, read_only=True)
    try:
        async with asyncio.timeout(within):
            while True:
                for event in store.events(after=after):
                    after = event.seq
                    if event.app == app and event.phase is phase:
                        return event.rollout_id, event.seq
                await asyncio.sleep(poll)
    finally:
        store.close()


def last_phase(state_dir: Path, rollout_id: str) -> tuple[Phase, str]:
    """The phase and message of the rollout's last recorded transition."""
    store = StateStore(state_dir, read_only=True)
    try:
        last = store.events(rollout_id=rollout_id)[-1]
        return last.phase, last.message
    finally:
        store.close()


def last_seq(state_dir: Path) -> int:
    store = StateStore(state_dir, read_only=True)
    try:
        return store.last_event_seq()
    finally:
        store.close()


# ---------------------------------------------------------------- filesystems (we are root in the test box)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str, mode: str = "0700") -> Iterator[Path]:
    """A small tmpfs mounted at `path` (created), unmounted at the end even when the test failed.

    `mode` 0700: a state folder that others may write is refused, and a tmpfs root is 1777 by default.
    """
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", "tmpfs", str(path))
    try:
        yield path
    finally:
        # Lazy: a process of the test that still has a file open there must not keep the mount.
        _run("umount", "-l", str(path))


def remount(path: Path, *, read_only: bool) -> None:
    """Make the filesystem mounted at `path` read-only, or writable again."""
    _run("mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(path))


def fill(folder: Path, *, name: str = "filler.bin") -> Path:
    """Fill the filesystem of `folder` to the last byte with one file (ENOSPC); return that file.

    The default name is not one Traefik's file provider reads.
    """
    filler = folder / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            block = b"\0" * chunk
            with contextlib.suppress(OSError):
                while os.write(fd, block):
                    pass
    finally:
        os.close(fd)
    free = os.statvfs(folder).f_bavail
    assert free == 0, f"{folder} has {free} blocks free after it was filled"
    return filler
