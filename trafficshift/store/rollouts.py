"""Durable state of apps, rollouts and their events (SQLite from the standard library).

Every rollout transition is committed here before the side effect it announces, so a crash at any point
leaves a record that `status` explains and `abort` or `promote` completes: invariants 6 and 4
(docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from trafficshift.errors import LockedError
from trafficshift.models import AppState, Colour, Event, Outcome, Phase, Rollout
from trafficshift.store.db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    app TEXT PRIMARY KEY, colour TEXT, image TEXT, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY, app TEXT NOT NULL,
    from_colour TEXT, from_image TEXT, to_colour TEXT NOT NULL, to_image TEXT NOT NULL,
    steps TEXT NOT NULL, pause REAL NOT NULL, phase TEXT NOT NULL, step INTEGER NOT NULL,
    weights TEXT NOT NULL, abort_requested TEXT,
    outcome TEXT, reason TEXT, started_at REAL NOT NULL, updated_at REAL NOT NULL, ended_at REAL
);
CREATE INDEX IF NOT EXISTS rollouts_app ON rollouts (app, started_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, app TEXT NOT NULL, at REAL NOT NULL,
    phase TEXT NOT NULL, step INTEGER NOT NULL, weights TEXT NOT NULL, message TEXT NOT NULL
);
-- One rollout's events (the engine's reports, a CLI following the service) without scanning every app's;
-- IF NOT EXISTS: a state folder from before it gets it when first opened.
CREATE INDEX IF NOT EXISTS events_rollout ON events (rollout_id, seq);
"""


def _weights_json(weights: Mapping[Colour, int]) -> str:
    return json.dumps({str(c): w for c, w in weights.items()})


def _weights_from(text: str) -> dict[Colour, int]:
    return {Colour(c): int(w) for c, w in json.loads(text).items()}


def _rollout_from(row: sqlite3.Row) -> Rollout:
    return Rollout(
        id=row["id"],
        app=row["app"],
        from_colour=Colour(row["from_colour"]) if row["from_colour"] else None,
        from_image=row["from_image"],
        to_colour=Colour(row["to_colour"]),
        to_image=row["to_image"],
        steps=tuple(json.loads(row["steps"])),
        pause=row["pause"],
        phase=Phase(row["phase"]),
        step=row["step"],
        weights=_weights_from(row["weights"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        reason=row["reason"],
        ended_at=row["ended_at"],
    )


def _event_from(row: sqlite3.Row) -> Event:
    return Event(
        seq=row["seq"],
        rollout_id=row["rollout_id"],
        app=row["app"],
        at=row["at"],
        phase=Phase(row["phase"]),
        step=row["step"],
        weights=_weights_from(row["weights"]),
        message=row["message"],
    )


class StateStore:
    """Apps, rollouts and their events, in `<state_dir>/state.db`.

    Blocking, and bound to the thread that opened it: code on an event loop reaches it through
    `store.aio.AsyncStateStore`, which keeps its commits (each an fsync) off the loop.
    """

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        self.state_dir = state_dir
        self._db = connect(state_dir, _SCHEMA, query_only=read_only)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -------------------------------------------------------------- apps

    def app_state(self, app: str) -> AppState:
        row = self._db.execute("SELECT colour, image FROM apps WHERE app = ?", (app,)).fetchone()
        if row is None:
            return AppState(app=app)
        colour = Colour(row["colour"]) if row["colour"] else None
        return AppState(app=app, colour=colour, image=row["image"], recorded=True)

    # -------------------------------------------------------------- rollouts

    def create_rollout(
        self,
        *,
        app: str,
        from_state: AppState,
        to_colour: Colour,
        to_image: str,
        steps: tuple[int, ...],
        pause: float,
    ) -> Rollout:
        now = time.time()
        weights = {from_state.colour: 100} if from_state.colour else {}
        rollout = Rollout(
            id=uuid.uuid4().hex[:12],
            app=app,
            from_colour=from_state.colour,
            from_image=from_state.image,
            to_colour=to_colour,
            to_image=to_image,
            steps=steps,
            pause=pause,
            phase=Phase.STARTING,
            step=-1,
            weights=weights,
            started_at=now,
            updated_at=now,
        )
        with self._transaction() as db:
            active = db.execute(
                "SELECT id FROM rollouts WHERE app = ? AND outcome IS NULL", (app,)
            ).fetchone()
            if active is not None:
                raise LockedError(app)
            db.execute(
                "INSERT INTO rollouts (id, app, from_colour, from_image, to_colour, to_image, steps, pause,"
                " phase, step, weights, started_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rollout.id,
                    app,
                    rollout.from_colour,
                    rollout.from_image,
                    to_colour,
                    to_image,
                    json.dumps(list(steps)),
                    pause,
                    rollout.phase,
                    rollout.step,
                    _weights_json(weights),
                    now,
                    now,
                ),
            )
            self._append_event(db, rollout, f"rollout {rollout.id}: {app} -> {to_image} ({to_colour})")
        return rollout

    def advance(
        self,
        rollout: Rollout,
        *,
        message: str,
        phase: Phase | None = None,
        step: int | None = None,
        weights: Mapping[Colour, int] | None = None,
    ) -> Rollout:
        """Record a transition (before its side effect) and return the new rollout."""
        changes: dict[str, Any] = {"updated_at": time.time()}
        if phase is not None:
            changes["phase"] = phase
        if step is not None:
            changes["step"] = step
        if weights is not None:
            changes["weights"] = dict(weights)
        new = replace(rollout, **changes)
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET phase = ?, step = ?, weights = ?, updated_at = ? WHERE id = ?",
                (new.phase, new.step, _weights_json(new.weights), new.updated_at, new.id),
            )
            self._append_event(db, new, message)
        return new

    def finish(self, rollout: Rollout, *, outcome: Outcome, reason: str | None, live: AppState) -> Rollout:
        """End a rollout and record what serves the app now, in one transaction."""
        now = time.time()
        phase = {Outcome.DONE: Phase.DONE, Outcome.ABORTED: Phase.ABORTED, Outcome.FAILED: Phase.FAILED}
        new = replace(
            rollout, phase=phase[outcome], outcome=outcome, reason=reason, updated_at=now, ended_at=now
        )
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET phase = ?, weights = ?, outcome = ?, reason = ?, updated_at = ?,"
                " ended_at = ? WHERE id = ?",
                (new.phase, _weights_json(new.weights), outcome, reason, now, now, new.id),
            )
            db.execute(
                "INSERT INTO apps (app, colour, image, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT (app) DO UPDATE SET colour = excluded.colour, image = excluded.image,"
                " updated_at = excluded.updated_at",
                (live.app, live.colour, live.image, now),
            )
            message = f"{outcome}" + (f": {reason}" if reason else "")
            self._append_event(db, new, message)
        return new

    def active_rollout(self, app: str) -> Rollout | None:
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE app = ? AND outcome IS NULL ORDER BY started_at DESC", (app,)
        ).fetchone()
        return _rollout_from(row) if row else None

    def rollout_of(self, *, app: str, image: str, since: float) -> Rollout | None:
        """The first rollout of `app` to `image` started at or after `since` (a schedule's), if any."""
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE app = ? AND to_image = ? AND started_at >= ? ORDER BY started_at",
            (app, image, since),
        ).fetchone()
        return _rollout_from(row) if row else None

    def rollout(self, rollout_id: str) -> Rollout | None:
        row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return _rollout_from(row) if row else None

    def history(self, app: str, *, limit: int = 100) -> list[Rollout]:
        rows = self._db.execute(
            "SELECT * FROM rollouts WHERE app = ? ORDER BY started_at DESC LIMIT ?", (app, limit)
        ).fetchall()
        return [_rollout_from(r) for r in rows]

    def outcome_counts(self) -> dict[tuple[str, str], int]:
        """Finished rollouts by (app, outcome), for the service's metrics."""
        rows = self._db.execute(
            "SELECT app, outcome, COUNT(*) AS n FROM rollouts WHERE outcome IS NOT NULL GROUP BY app, outcome"
        ).fetchall()
        return {(row["app"], row["outcome"]): int(row["n"]) for row in rows}

    def request_abort(self, rollout_id: str, *, reason: str) -> None:
        self._db.execute(
            "UPDATE rollouts SET abort_requested = ? WHERE id = ? AND outcome IS NULL", (reason, rollout_id)
        )

    def abort_requested(self, rollout_id: str) -> str | None:
        row = self._db.execute("SELECT abort_requested FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return row["abort_requested"] if row else None

    # -------------------------------------------------------------- events

    def _append_event(self, db: sqlite3.Connection, rollout: Rollout, message: str) -> None:
        db.execute(
            "INSERT INTO events (rollout_id, app, at, phase, step, weights, message) VALUES (?,?,?,?,?,?,?)",
            (
                rollout.id,
                rollout.app,
                rollout.updated_at,
                rollout.phase,
                rollout.step,
                _weights_json(rollout.weights),
                message,
            ),
        )

    def prune_events(self, *, ended_before: float, limit: int) -> int:
        """Delete up to `limit` events of rollouts that ended before `ended_before`; return how many.

        Never an event of a rollout in progress (its record is what a crash resumes from). Sequence numbers
        are never reused (AUTOINCREMENT), so a stream that resumes after a pruned id misses nothing new.
        """
        cursor = self._db.execute(
            "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events AS e JOIN rollouts AS r"
            " ON r.id = e.rollout_id WHERE r.outcome IS NOT NULL AND r.ended_at < ? ORDER BY e.seq LIMIT ?)",
            (ended_before, limit),
        )
        return int(cursor.rowcount)

    def last_event_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def events(self, *, after: int = 0, rollout_id: str | None = None, limit: int = -1) -> list[Event]:
        """Events after sequence number `after`, oldest first; at most `limit` of them (-1: all)."""
        if rollout_id is None:
            rows = self._db.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE seq > ? AND rollout_id = ? ORDER BY seq LIMIT ?",
                (after, rollout_id, limit),
            )
        return [_event_from(r) for r in rows.fetchall()]
