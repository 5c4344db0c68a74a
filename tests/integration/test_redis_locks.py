"""The per-app lease in Redis (store/redis_locks.py) against a real redis-server: no Docker, no Traefik."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.factories import make_app
from tests.support.redis import RedisProc, run_redis
from trafficshift.errors import LockedError
from trafficshift.models import Colour, ColourRoute, LockRole, Routing
from trafficshift.store.redis_locks import RedisLocks
from trafficshift.traefik.redis_routes import RedisRoutes
from trafficshift.traefik.render import expected_document

APP = make_app("web")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RedisProc]:
    async with run_redis(tmp_path / "redis") as proc:
        yield proc


def _locks(store: RedisProc, folder: Path, *, lease: float = 15.0) -> RedisLocks:
    """A controller's locks: its own state folder (another machine's), the shared Redis."""
    return RedisLocks(state_dir=folder, url=store.url, root="traefik", lease=lease)


async def test_a_second_controller_is_refused_and_sees_the_holders_role(
    tmp_path: Path, store: RedisProc
) -> None:
    one, two = _locks(store, tmp_path / "a"), _locks(store, tmp_path / "b")
    held = one.lock("web")
    assert held.try_acquire()
    other = two.lock("web")
    assert not other.try_acquire()
    assert other.is_held_elsewhere()
    assert other.holder() is LockRole.ROLLOUT
    with pytest.raises(LockedError):
        await other.acquire_waiting(wait=5.0)  # a rollout holds it: at once, no wait
    held.release()
    assert other.try_acquire()
    other.release()
    one.close()
    two.close()


async def test_the_lease_is_renewed_while_held_and_a_lost_one_fences_the_write(
    tmp_path: Path, store: RedisProc
) -> None:
    one, two = _locks(store, tmp_path / "a", lease=0.6), _locks(store, tmp_path / "b", lease=0.6)
    routes = RedisRoutes(url=store.url)
    doc = expected_document(app=APP, routing=_routing(), entrypoints=["web"])
    held = one.lock("web")
    assert held.try_acquire()
    await asyncio.sleep(1.5)  # past two leases: still held, renewed by its thread
    assert not two.lock("web").try_acquire()
    await routes.write("web", doc, fence=one.fence("web"))

    # The holder is cut off (its renewals stop), its lease expires and another controller takes the app:
    assert held._renewer is not None
    held._renewer.stop()
    await asyncio.sleep(1.0)
    taker = two.lock("web")
    assert taker.try_acquire()
    with pytest.raises(LockedError):  # the old holder's late write is refused inside its transaction
        await routes.write("web", None, fence=one.fence("web"))
    assert await routes.document("web") == doc
    await routes.write("web", None, fence=two.fence("web"))
    taker.release()
    held.release()
    await routes.aclose()
    one.close()
    two.close()


async def test_a_holder_dead_on_this_host_is_not_waited_for(tmp_path: Path, store: RedisProc) -> None:
    # A holder in another process that dies without letting go (kill -9): its lease is still in Redis.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from trafficshift.store.redis_locks import RedisLocks\n"
        f"lock = RedisLocks(state_dir=Path(sys.argv[1]), url={store.url!r}, root='traefik').lock('web')\n"
        "assert lock.try_acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(tmp_path / "a"), stdout=asyncio.subprocess.PIPE
    )
    locks = _locks(store, tmp_path / "b")
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"held\n"
        mine = locks.lock("web")
        assert not mine.try_acquire()
    finally:
        proc.kill()
        await proc.wait()
    started = time.monotonic()
    assert mine.try_acquire()  # at once, not after the 15 s lease
    assert time.monotonic() - started < 1.0
    mine.release()
    locks.close()


def _routing() -> Routing:
    return Routing(app="web", routes=(ColourRoute(Colour.BLUE, 100, ("http://127.0.0.1:9",)),))
