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

from trafficshift import stepping
from trafficshift.compose.fingerprint import changed_keys, describe
from trafficshift.compose.spec import SpecDoc
from trafficshift.errors import LockedError, NothingToDo, UsageError
from trafficshift.models import UNTIL_RESUMED, AppState, Colour, Event, Outcome, Phase, Requests, Rollout
from trafficshift.store.db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    app TEXT PRIMARY KEY, colour TEXT, image TEXT, updated_at REAL NOT NULL, spec TEXT
);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY, app TEXT NOT NULL,
    from_colour TEXT, from_image TEXT, to_colour TEXT NOT NULL, to_image TEXT NOT NULL,
    steps TEXT NOT NULL, pause REAL NOT NULL, phase TEXT NOT NULL, step INTEGER NOT NULL,
    weights TEXT NOT NULL, abort_requested TEXT,
    outcome TEXT, reason TEXT, started_at REAL NOT NULL, updated_at REAL NOT NULL, ended_at REAL,
    from_spec TEXT, to_spec TEXT, pauses TEXT, held TEXT, weight_request INTEGER
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


# Columns added since the first release: a state.db made before gets them at the first writable open (its
# old rows read as NULL: no spec recorded). (table, column, type), in the order they were added.
ADDED_COLUMNS = (
    ("apps", "spec", "TEXT"),
    ("rollouts", "from_spec", "TEXT"),
    ("rollouts", "to_spec", "TEXT"),
    # Holds (stepping.py): each step's own pause, why it is held, a set-weight its driver has not applied.
    ("rollouts", "pauses", "TEXT"),
    ("rollouts", "held", "TEXT"),
    ("rollouts", "weight_request", "INTEGER"),
)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Add the columns an older state.db lacks, in one transaction; return them as `table.column`.

    Two processes opening an old file at once: the second finds them added (BEGIN IMMEDIATE serialises).
    """
    added = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, column, kind in ADDED_COLUMNS:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                added.append(f"{table}.{column}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return added


def _spec_json(spec: SpecDoc | None) -> str | None:
    return None if spec is None else json.dumps(dict(spec), sort_keys=True, separators=(",", ":"))


def _spec_from(row: sqlite3.Row, column: str) -> SpecDoc | None:
    # A query-only connection cannot migrate: an old file it opened first has no such column yet.
    # (`in row` would look among the values: a Row's keys are only in keys().)
    text = row[column] if column in row.keys() else None  # noqa: SIM118
    return None if text is None else dict(json.loads(text))


def _column(row: sqlite3.Row, column: str) -> Any:
    """A column added since the first release; None on a query-only connection to a file not migrated yet."""
    return row[column] if column in row.keys() else None  # noqa: SIM118


def _pauses_json(pauses: tuple[float | None, ...]) -> str | None:
    # Infinity is no JSON: an until-resumed pause is kept as its config text.
    return (
        json.dumps([stepping.UNTIL_RESUMED_TEXT if p == UNTIL_RESUMED else p for p in pauses])
        if pauses
        else None
    )


def _pauses_from(text: str | None) -> tuple[float | None, ...]:
    if not text:
        return ()
    return tuple(UNTIL_RESUMED if p == stepping.UNTIL_RESUMED_TEXT else p for p in json.loads(text))


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
        from_spec=_spec_from(row, "from_spec"),
        to_spec=_spec_from(row, "to_spec"),
        pauses=_pauses_from(_column(row, "pauses")),
        held=_column(row, "held"),
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
        if not read_only:
            try:
                migrate(self._db)
            except sqlite3.Error as exc:
                self._db.close()
                raise UsageError(f"cannot update the state store in {state_dir} (state_dir): {exc}") from None

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
        row = self._db.execute("SELECT * FROM apps WHERE app = ?", (app,)).fetchone()
        if row is None:
            return AppState(app=app)
        colour = Colour(row["colour"]) if row["colour"] else None
        return AppState(
            app=app, colour=colour, image=row["image"], recorded=True, spec=_spec_from(row, "spec")
        )

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
        spec: SpecDoc | None = None,
        pauses: tuple[float | None, ...] = (),
    ) -> Rollout:
        """Record a new rollout (`starting`); `spec`: a compose-backed app's spec it deploys; `pauses`: each
        step's own pause (None: `pause`)."""
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
            from_spec=from_state.spec if spec is not None else None,
            to_spec=spec,
            pauses=pauses,
        )
        with self._transaction() as db:
            active = db.execute(
                "SELECT id FROM rollouts WHERE app = ? AND outcome IS NULL", (app,)
            ).fetchone()
            if active is not None:
                raise LockedError(app)
            db.execute(
                "INSERT INTO rollouts (id, app, from_colour, from_image, to_colour, to_image, steps, pause,"
                " phase, step, weights, started_at, updated_at, from_spec, to_spec, pauses)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    _spec_json(rollout.from_spec),
                    _spec_json(spec),
                    _pauses_json(pauses),
                ),
            )
            message = f"rollout {rollout.id}: {app} -> {to_image} ({to_colour})"
            if rollout.from_spec is not None and spec is not None:
                message += f"; changed: {describe(changed_keys(rollout.from_spec, spec))}"
            self._append_event(db, rollout, message)
        return rollout

    def advance(
        self,
        rollout: Rollout,
        *,
        message: str,
        phase: Phase | None = None,
        step: int | None = None,
        weights: Mapping[Colour, int] | None = None,
        hold: str | None = None,
    ) -> Rollout:
        """Record a transition (before its side effect) and return the new rollout; `hold`: held from then
        on, for that reason (an until-resumed step: held in the same commit that records it)."""
        changes: dict[str, Any] = {"updated_at": time.time()}
        if phase is not None:
            changes["phase"] = phase
        if step is not None:
            changes["step"] = step
        if weights is not None:
            changes["weights"] = dict(weights)
        if hold is not None:
            changes["held"] = hold
        elif phase is not None and phase not in stepping.PAUSABLE:
            changes["held"] = None  # going back, or past the point of return: no hold applies any more
        new = replace(rollout, **changes)
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET phase = ?, step = ?, weights = ?, updated_at = ? WHERE id = ?",
                (new.phase, new.step, _weights_json(new.weights), new.updated_at, new.id),
            )
            if "held" in changes:
                db.execute("UPDATE rollouts SET held = ? WHERE id = ?", (new.held, new.id))
            self._append_event(db, new, message)
        return new

    def finish(self, rollout: Rollout, *, outcome: Outcome, reason: str | None, live: AppState) -> Rollout:
        """End a rollout and record what serves the app now, in one transaction."""
        now = time.time()
        phase = {Outcome.DONE: Phase.DONE, Outcome.ABORTED: Phase.ABORTED, Outcome.FAILED: Phase.FAILED}
        new = replace(
            rollout,
            phase=phase[outcome],
            outcome=outcome,
            reason=reason,
            updated_at=now,
            ended_at=now,
            held=None,
        )
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET phase = ?, weights = ?, outcome = ?, reason = ?, updated_at = ?,"
                " ended_at = ? WHERE id = ?",
                (new.phase, _weights_json(new.weights), outcome, reason, now, now, new.id),
            )
            # An ended rollout is held by nothing, and a set-weight its driver never applied is void.
            db.execute("UPDATE rollouts SET held = NULL, weight_request = NULL WHERE id = ?", (new.id,))
            # What serves now: the new spec once done, else the one that served before (a compose-backed app).
            spec = rollout.to_spec if outcome is Outcome.DONE else rollout.from_spec
            db.execute(
                "INSERT INTO apps (app, colour, image, updated_at, spec) VALUES (?,?,?,?,?)"
                " ON CONFLICT (app) DO UPDATE SET colour = excluded.colour, image = excluded.image,"
                " updated_at = excluded.updated_at, spec = excluded.spec",
                (live.app, live.colour, live.image, now, _spec_json(spec)),
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

    # -------------------------------------------------------------- holds (stepping.py, holding.py)

    def _active_row(self, db: sqlite3.Connection, app: str) -> Rollout:
        row = db.execute(
            "SELECT * FROM rollouts WHERE app = ? AND outcome IS NULL ORDER BY started_at DESC", (app,)
        ).fetchone()
        if row is None:
            raise NothingToDo(f"no rollout of {app} is in progress")
        return _rollout_from(row)

    def hold(self, app: str, *, reason: str) -> Rollout:
        """Hold the app's rollout at its weights (recorded, with its event, before anyone reports it).

        NothingToDo when none is in progress, NotHoldable where its phase does not allow it. Holding a held
        rollout changes nothing.
        """
        with self._transaction() as db:
            r = self._active_row(db, app)
            stepping.check_pause(r)
            if r.held is not None:
                return r
            new = replace(r, held=reason, updated_at=time.time())
            db.execute("UPDATE rollouts SET held = ? WHERE id = ?", (reason, r.id))
            self._append_event(db, new, f"held at {stepping.held_at(new)}: {reason}")
        return new

    def release(self, app: str, *, reason: str) -> Rollout:
        """Resume the app's held rollout (its driver goes on at its next poll); NotHoldable when not held."""
        with self._transaction() as db:
            r = self._active_row(db, app)
            stepping.check_resume(r)
            new = replace(r, held=None, updated_at=time.time())
            db.execute("UPDATE rollouts SET held = NULL WHERE id = ?", (r.id,))
            self._append_event(db, new, f"resumed at {stepping.held_at(new)}: {reason}")
        return new

    def request_weight(self, app: str, *, weight: int) -> Rollout:
        """Ask the driver of the app's rollout to set its new colour to `weight` (and hold it there)."""
        with self._transaction() as db:
            r = self._active_row(db, app)
            stepping.check_set_weight(r, weight)
            new = replace(r, updated_at=time.time())
            db.execute("UPDATE rollouts SET weight_request = ? WHERE id = ?", (weight, r.id))
            self._append_event(db, new, f"set-weight {weight}% on {r.to_colour} asked")
        return new

    def requests(self, rollout_id: str) -> Requests:
        """An abort, hold or set-weight asked of the rollout, in one read (its driver polls it)."""
        row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            return Requests()
        return Requests(
            abort=row["abort_requested"], held=_column(row, "held"), weight=_column(row, "weight_request")
        )

    def set_weight(
        self,
        rollout: Rollout,
        *,
        steps: tuple[int, ...],
        pauses: tuple[float | None, ...],
        step: int,
        weights: Mapping[Colour, int],
        hold: str,
        message: str,
    ) -> Rollout:
        """Record a set weight as the rollout's step `step` of a new plan, held, its request served."""
        new = replace(
            rollout,
            phase=Phase.SHIFTING,
            steps=steps,
            pauses=pauses,
            step=step,
            weights=dict(weights),
            held=hold,
            updated_at=time.time(),
        )
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET phase = ?, steps = ?, pauses = ?, step = ?, weights = ?, held = ?,"
                " weight_request = NULL, updated_at = ? WHERE id = ?",
                (
                    new.phase,
                    json.dumps(list(steps)),
                    _pauses_json(pauses),
                    step,
                    _weights_json(new.weights),
                    hold,
                    new.updated_at,
                    new.id,
                ),
            )
            self._append_event(db, new, message)
        return new

    def drop_weight_request(self, rollout: Rollout, *, message: str) -> None:
        """Void a set-weight the driver cannot apply any more (the rollout moved on meanwhile)."""
        with self._transaction() as db:
            db.execute("UPDATE rollouts SET weight_request = NULL WHERE id = ?", (rollout.id,))
            self._append_event(db, replace(rollout, updated_at=time.time()), message)

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
