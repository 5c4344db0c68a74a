"""Durable scheduled cutovers: a `schedules` table in `<state_dir>/state.db`, over its own connection.

A schedule is `pending` until its time comes. The scheduler claims it (`firing`, one atomic update, so it
fires once) and starts its promote; then it becomes `started` (with the id of the rollout it started),
`failed` (the promote could not start), or `missed` (its time passed while the service was down, beyond
`service.schedule_grace`). A promote refused because the app is busy puts it back to `pending`, to try again
while within the grace. `cancelled` ones stay listed. A schedule left `firing` by a crash is settled at the
next start-up from the rollouts table: never fired a second time once its rollout exists.
"""

from __future__ import annotations

import datetime as dt
import enum
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trafficshift.report import iso_time
from trafficshift.store.db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, image TEXT NOT NULL, at REAL NOT NULL, at_text TEXT NOT NULL,
    state TEXT NOT NULL, created_at REAL NOT NULL, fired_at REAL, rollout_id TEXT, reason TEXT
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (state, at);
"""


class ScheduleState(enum.StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    STARTED = "started"
    FAILED = "failed"
    MISSED = "missed"
    CANCELLED = "cancelled"


FINISHED = (ScheduleState.STARTED, ScheduleState.FAILED, ScheduleState.MISSED, ScheduleState.CANCELLED)


@dataclass(frozen=True)
class Schedule:
    id: str
    app: str
    image: str
    at: float  # Unix time
    at_text: str  # as the user wrote it (keeps their offset)
    state: ScheduleState
    created_at: float
    fired_at: float | None = None
    rollout_id: str | None = None
    reason: str | None = None


def schedule_dict(s: Schedule) -> dict[str, Any]:
    """A schedule as `GET /schedules` and `schedule list --json` give it."""
    return {
        "id": s.id,
        "app": s.app,
        "image": s.image,
        "at": s.at_text,
        "state": str(s.state),
        "created_at": iso_time(s.created_at),
        "fired_at": iso_time(s.fired_at),
        "rollout": s.rollout_id,
        "reason": s.reason,
    }


def _from_row(row: sqlite3.Row) -> Schedule:
    return Schedule(
        id=row["id"],
        app=row["app"],
        image=row["image"],
        at=row["at"],
        at_text=row["at_text"],
        state=ScheduleState(row["state"]),
        created_at=row["created_at"],
        fired_at=row["fired_at"],
        rollout_id=row["rollout_id"],
        reason=row["reason"],
    )


class ScheduleStore:
    """Schedules in `<state_dir>/state.db` (the state store's file, its own table and connection)."""

    def __init__(self, state_dir: Path) -> None:
        self._db = connect(state_dir, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, *, app: str, image: str, at: dt.datetime) -> Schedule:
        schedule = Schedule(
            id=uuid.uuid4().hex[:12],
            app=app,
            image=image,
            at=at.timestamp(),
            at_text=at.isoformat(),
            state=ScheduleState.PENDING,
            created_at=time.time(),
        )
        self._db.execute(
            "INSERT INTO schedules (id, app, image, at, at_text, state, created_at) VALUES (?,?,?,?,?,?,?)",
            (schedule.id, app, image, schedule.at, schedule.at_text, schedule.state, schedule.created_at),
        )
        return schedule

    def get(self, schedule_id: str) -> Schedule | None:
        row = self._db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return _from_row(row) if row else None

    def all(self) -> list[Schedule]:
        return [_from_row(r) for r in self._db.execute("SELECT * FROM schedules ORDER BY at, id").fetchall()]

    def pending(self) -> list[Schedule]:
        rows = self._db.execute("SELECT * FROM schedules WHERE state = ? ORDER BY at, id", ("pending",))
        return [_from_row(r) for r in rows.fetchall()]

    def firing(self) -> list[Schedule]:
        rows = self._db.execute("SELECT * FROM schedules WHERE state = ? ORDER BY at, id", ("firing",))
        return [_from_row(r) for r in rows.fetchall()]

    def claim(self, schedule_id: str) -> bool:
        """Pending -> firing, atomically: True for the one caller that may start its promote."""
        cursor = self._db.execute(
            "UPDATE schedules SET state = 'firing', fired_at = ? WHERE id = ? AND state = 'pending'",
            (time.time(), schedule_id),
        )
        return bool(cursor.rowcount == 1)

    def unclaim(self, schedule_id: str, *, reason: str) -> bool:
        """Firing -> pending again (its promote was not started, e.g. the app was busy): try later."""
        cursor = self._db.execute(
            "UPDATE schedules SET state = 'pending', fired_at = NULL, reason = ?"
            " WHERE id = ? AND state = 'firing'",
            (reason, schedule_id),
        )
        return bool(cursor.rowcount == 1)

    def prune_finished(self, *, before: float, limit: int) -> int:
        """Delete up to `limit` finished schedules due (and fired) before `before`; return how many.

        Finished: started, failed, missed or cancelled. Pending and firing ones are never touched.
        """
        cursor = self._db.execute(
            "DELETE FROM schedules WHERE id IN (SELECT id FROM schedules WHERE state IN (?, ?, ?, ?)"
            " AND MAX(at, COALESCE(fired_at, at)) < ? ORDER BY at LIMIT ?)",
            (*FINISHED, before, limit),
        )
        return int(cursor.rowcount)

    def settle(
        self,
        schedule_id: str,
        *,
        state: ScheduleState,
        rollout_id: str | None = None,
        reason: str | None = None,
        was: ScheduleState = ScheduleState.PENDING,
    ) -> bool:
        """Move a schedule from `was` to `state`; False when it was not in `was` any more (e.g. cancelled)."""
        fired = None if state is ScheduleState.CANCELLED else time.time()
        cursor = self._db.execute(
            "UPDATE schedules SET state = ?, fired_at = COALESCE(fired_at, ?), rollout_id = ?, reason = ?"
            " WHERE id = ? AND state = ?",
            (state, fired, rollout_id, reason, schedule_id, was),
        )
        return bool(cursor.rowcount == 1)
