"""The SQLite connection that every store of `<state_dir>/state.db` opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trafficshift.errors import UsageError


def connect(state_dir: Path, schema: str, *, query_only: bool = False) -> sqlite3.Connection:
    """A connection to `<state_dir>/state.db` (with `schema` created if need be), rows by column name.

    Autocommit mode: each statement (or explicit transaction) is durable when it returns. A `query_only`
    connection refuses every write (the async store's reader: its writes belong to the writer's thread).
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(state_dir / "state.db", isolation_level=None, timeout=10.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
        if query_only:
            db.execute("PRAGMA query_only=ON")
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"cannot open the state store in {state_dir} (state_dir): {exc}") from None
    return db
