"""The per-app lock: one rollout per app across processes, and the service's provider in between."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import time
from pathlib import Path

from trafficshift.errors import LockedError, TrafficShiftError
from trafficshift.models import LockRole
from trafficshift.store.folder import FILE_MODE, private_dir

__all__ = ["AppLock", "FileLocks", "LockRole"]

# `struct flock` on 64-bit Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
_FLOCK = struct.Struct("@hhqqi4x")


def _flock(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)  # the whole file; l_pid must be 0 for OFD locks


# How often a rollout start looks again while the provider holds the app.
LOCK_POLL = 0.05


class AppLock:
    """One rollout per app across processes: a write lock on `<state_dir>/locks/<app>.lock`.

    Invariant 5 (docs/ARCHITECTURE.md): whoever changes an app's containers or file holds it.

    An open-file-description lock (Linux): like flock it belongs to the open file, so two holders in one
    process conflict too and the kernel drops it when its holder dies (even by kill -9); unlike flock it
    can be *tested* without being taken, so `status` never makes a concurrent promote fail.

    The holder writes `<pid> <role>` into the file: a rollout start waits out the service's provider (a
    brief hold) but fails at once against another rollout.
    """

    def __init__(self, state_dir: Path, app: str) -> None:
        self.path = state_dir / "locks" / f"{app}.lock"
        self.app = app
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockedError at once (never waits)."""
        if not self.try_acquire():
            raise LockedError(self.app)

    async def acquire_waiting(
        self, *, wait: float, poll: float = LOCK_POLL, role: LockRole = LockRole.ROLLOUT
    ) -> None:
        """Take the lock for a rollout (or as `role`): while the provider holds it, wait (up to `wait`
        seconds) for it.

        LockedError at once when a rollout holds it, or when the provider still holds it after `wait`.
        """
        deadline = time.monotonic() + wait
        while not self.try_acquire(role):
            if self.holder() is LockRole.ROLLOUT or time.monotonic() >= deadline:
                raise LockedError(self.app)
            await asyncio.sleep(poll)

    def try_acquire(self, role: LockRole = LockRole.ROLLOUT) -> bool:
        """Take the lock if it is free; False when someone else holds it.

        TrafficShiftError when the holder cannot be written into the file (a full disk): the lock is let go.
        """
        fd = self._open()
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {role}".encode())
        except OSError as exc:  # e.g. the disk is full
            # Closing the descriptor drops the lock: kept open, it would lock the app until the process ends.
            os.close(fd)
            raise TrafficShiftError(
                f"cannot write the holder into the lock file {self.path}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def holder(self) -> LockRole | None:
        """Who holds the lock elsewhere: None when nobody does (or when this object holds it).

        A file that names no role is taken for a rollout (the conservative answer); an empty one is being
        written by its new holder right now: taken for the provider until it says otherwise (ask again).
        """
        if not self.is_held_elsewhere():
            return None
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return LockRole.ROLLOUT
        if not text:
            return LockRole.PROVIDER
        try:
            return LockRole(text[-1]) if len(text) > 1 else LockRole.ROLLOUT
        except ValueError:
            return LockRole.ROLLOUT

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True when another holder (a rollout, or the service writing the app's file) has the lock now."""
        if self._fd is not None:
            return False
        fd = self._open()
        try:
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK))
        finally:
            os.close(fd)
        return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)

    def _open(self) -> int:
        private_dir(self.path.parent.parent)  # the state folder: refused when others can write it
        private_dir(self.path.parent)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)

    def __enter__(self) -> AppLock:
        if self._fd is None:  # taken already by `acquire_waiting`
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FileLocks:
    """The live `ports.Locks`: each app's lock file under `<state_dir>/locks/`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def lock(self, app: str) -> AppLock:
        return AppLock(self.state_dir, app)
