"""The SQLite connection that every store of `<state_dir>/state.db` opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trafficshift.errors import UsageError
from trafficshift.store.folder import create_private_file, private_dir, private_file

DB_FILE = "state.db"
# SQLite's companions of the database: its write-ahead log, the shared memory of its locks, and the rollback
# journal (only while switching to WAL).
_COMPANIONS = ("-wal", "-shm", "-journal")


def connect(state_dir: Path, schema: str, *, query_only: bool = False) -> sqlite3.Connection:
    """A connection to `<state_dir>/state.db` (with `schema` created if need be), rows by column name.

    Autocommit mode: each statement (or explicit transaction) is durable when it returns. A `query_only`
    connection refuses every write (the async store's reader: its writes belong to the writer's thread).
    The folder is private (`folder.private_dir`) and so is every file of the database: SQLite gives its -wal
    and -shm files the mode of the database file, so that one is created 0600 before SQLite opens it; the
    chmod after (by path: never a descriptor of a file SQLite may hold locks on) covers the files an older
    version left 0644.
    """
    private_dir(state_dir)
    path = state_dir / DB_FILE
    db: sqlite3.Connection | None = None
    try:
        create_private_file(path)
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
        for suffix in ("", *_COMPANIONS):
            private_file(path.with_name(DB_FILE + suffix))
        if query_only:
            db.execute("PRAGMA query_only=ON")
    except (OSError, sqlite3.Error) as exc:
        if db is not None:
            db.close()
        raise UsageError(f"cannot open the state store in {state_dir} (state_dir): {exc}") from None
    return db
