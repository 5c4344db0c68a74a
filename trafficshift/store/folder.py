"""The state folder is private to the user who runs trafficshift: 0700, its files 0600.

Anyone who can open `state.db-shm` (even read-only) can take SQLite's WAL locks and block every rollout;
anyone who can write the folder can replace its lock files, its record of the service or the database
itself. So the folder is created 0700, an existing one that others can only read (0755, as older versions
made it) is tightened, and one that others can write, or that belongs to another user, is refused: nothing
could tell what they changed in it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from trafficshift.errors import UsageError

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (0700) or check an existing one (tightened to 0700); UsageError when it is not safe.

    Parents that do not exist are created with the usual mode: only the folder itself holds state.
    """
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the umask can only narrow 0700
    except FileExistsError:
        pass  # something else than a folder: said below
    except OSError as exc:
        raise UsageError(
            f"cannot create the state folder {path} (state_dir): {exc.strerror or exc}"
        ) from None
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read the state folder {path} (state_dir): {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"the state folder {path} (state_dir) is not a folder")
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"the state folder {path} (state_dir) belongs to uid {info.st_uid}, not to this user"
            f" (uid {os.geteuid()}): run trafficshift as its owner, or choose another state_dir"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"the state folder {path} (state_dir) is writable by other users (mode {mode:04o}): they could"
            f" change its rollouts and locks; check its content, then run `chmod 700 {path}`"
        )
    if mode != DIR_MODE:
        try:
            path.chmod(DIR_MODE)  # readable by others (an older version's 0755): ours, so tighten it
        except OSError as exc:
            raise UsageError(f"cannot make the state folder {path} (state_dir) private: {exc}") from None
    return path


def private_file(path: Path) -> None:
    """Make an existing file of the state folder 0600 (a missing one is left alone)."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            path.chmod(FILE_MODE)
    except FileNotFoundError:
        pass


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists: before a library creates it with a wider mode.

    Never opens a file that exists: closing a descriptor of a file drops every POSIX lock this process
    holds on it, and SQLite's locks on its database are such locks (a connection of this process that
    lost them lets another process delete the WAL under it, and its writes are lost).
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE))
