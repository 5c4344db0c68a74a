"""The per-app lock when several trafficshift controllers drive one Redis (`traefik.provider: redis`).

The lock file (store/locks.py) keeps one rollout per app among the processes of ONE machine. Controllers on
two machines share only Redis, so the app is also leased there: `SET <key> <value> NX PX <lease>`, where
the value carries a fencing token (INCR of a counter per app, so every new holder has a larger one), the
holder's host and pid, and its role. The lease is renewed by a thread while held; every routing write checks
inside its transaction that the key still holds this value (traefik/redis_routes.py), so a controller
whose lease expired (paused, cut off) can never write over the one that took the app after it.

A holder that died on THIS host (its pid is gone) is not waited out: the kernel says so at once, as it drops
the lock file. One on another host keeps the app until its lease expires (LEASE seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from trafficshift.errors import LockedError, UnreachableError
from trafficshift.models import LockRole
from trafficshift.store.locks import LOCK_POLL, AppLock
from trafficshift.traefik.redis_routes import own_prefix

if TYPE_CHECKING:
    import redis

# How long a holder that vanished without letting go keeps the app (a controller on another machine that
# lost power); renewed every LEASE/3 while held, so a holder survives two missed renewals.
LEASE = 15.0
# Sync calls on the event loop (ports.Lock is synchronous): a Redis that does not answer holds it this long.
REDIS_TIMEOUT = 1.0

# Renew, or delete, only while the key still holds our value: another holder's lease is never touched.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then"
    " return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Take over a lease whose holder is known dead, only if it is still that holder's.
_TAKE_OVER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])"
    " end return false"
)


class RedisLocks:
    """The live `ports.Locks` of a Redis fleet: each app's lock file AND its lease in Redis."""

    def __init__(self, *, state_dir: Path, url: str, root: str, lease: float = LEASE) -> None:
        import redis

        self.state_dir = state_dir
        self.url = url
        self.lease = lease
        self.prefix = own_prefix(root) + "lock:"
        self.client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT, decode_responses=True
        )
        self._held: dict[str, str] = {}  # app -> the value of the lease this process holds

    def lock(self, app: str) -> FleetLock:
        return FleetLock(self, app)

    def fence(self, app: str) -> tuple[str, str]:
        """The app's lease key and the value this process set: a write checks it in its transaction.

        LockedError when this process does not hold the app's lease (its caller must hold the lock).
        """
        value = self._held.get(app)
        if value is None:
            raise LockedError(app)
        return self.prefix + app, value

    def close(self) -> None:
        self.client.close()


class FleetLock:
    """One app's lock across machines: the local lock file first, then the Redis lease."""

    def __init__(self, locks: RedisLocks, app: str) -> None:
        self.locks = locks
        self.app = app
        self.key = locks.prefix + app
        self.file = AppLock(locks.state_dir, app)
        self._value: str | None = None
        self._renewer: _Renewer | None = None

    async def acquire_waiting(self, *, wait: float, role: LockRole = LockRole.ROLLOUT) -> None:
        deadline = time.monotonic() + wait
        while not self.try_acquire(role):
            if self.holder() is LockRole.ROLLOUT or time.monotonic() >= deadline:
                raise LockedError(self.app)
            await asyncio.sleep(LOCK_POLL)

    def try_acquire(self, role: LockRole = LockRole.ROLLOUT) -> bool:
        if not self.file.try_acquire(role):
            return False
        try:
            taken = self._take(role)
        except BaseException:
            self.file.release()
            raise
        if not taken:
            self.file.release()
        return taken

    def _take(self, role: LockRole) -> bool:
        import redis.exceptions

        client, px = self.locks.client, int(self.locks.lease * 1000)
        try:
            token = client.incr(self.locks.prefix + "fence:" + self.app)
            value = f"{token} {socket.gethostname()} {os.getpid()} {role}"
            taken = bool(client.set(self.key, value, nx=True, px=px))
            if not taken:
                current = client.get(self.key)
                if current is not None and _dead_here(str(current)):
                    taken = bool(client.eval(_TAKE_OVER, 1, self.key, str(current), value, px))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise UnreachableError(
                f"cannot reach Redis at {self.locks.url} for the lock of {self.app}: {exc}"
            ) from None
        if taken:
            self._value = value
            self.locks._held[self.app] = value
            self._renewer = _Renewer(self.locks, self.key, value)
        return taken

    def release(self) -> None:
        import redis.exceptions

        if self._value is not None:
            assert self._renewer is not None
            self._renewer.stop()
            self.locks._held.pop(self.app, None)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):  # expires within the lease
                self.locks.client.eval(_RELEASE, 1, self.key, self._value)
            self._value, self._renewer = None, None
        self.file.release()

    def holder(self) -> LockRole | None:
        local = self.file.holder()
        if local is not None:
            return local
        value = self._other()
        if value is None:
            return None
        try:
            return LockRole(value.split()[-1])
        except ValueError:
            return LockRole.ROLLOUT

    def is_held_elsewhere(self) -> bool:
        return self.file.is_held_elsewhere() or self._other() is not None

    def _other(self) -> str | None:
        """The lease's value when another live holder has it; None when free, ours, or its holder is dead."""
        import redis.exceptions

        if self._value is not None:
            return None
        try:
            value = self.locks.client.get(self.key)
        except (redis.exceptions.RedisError, OSError):
            return "? ? ? rollout"  # cannot tell: the conservative answer, as store/locks.py does
        if value is None or _dead_here(str(value)):
            return None
        return str(value)

    def __enter__(self) -> Self:
        if self._value is None and not self.try_acquire():  # else taken already by `acquire_waiting`
            raise LockedError(self.app)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _dead_here(value: str) -> bool:
    """Whether the lease's holder ran on this host and its process is gone."""
    parts = value.split()
    if len(parts) != 4 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _Renewer:
    """Extends one lease every lease/3 seconds until stopped (a thread: the Lock protocol is synchronous,
    and a CLI rollout's loop may be busy for a while)."""

    def __init__(self, locks: RedisLocks, key: str, value: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(locks, key, value), name=f"lease {key}", daemon=True
        )
        self._thread.start()

    def _run(self, locks: RedisLocks, key: str, value: str) -> None:
        import redis.exceptions

        px = int(locks.lease * 1000)
        while not self._stop.wait(locks.lease / 3):
            try:
                if not locks.client.eval(_RENEW, 1, key, value, px):
                    return  # lost: the next write's fence check refuses it
            except (redis.exceptions.RedisError, OSError):
                continue  # Redis briefly away: try again before the lease runs out

    def stop(self) -> None:
        self._stop.set()
