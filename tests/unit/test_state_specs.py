"""Specs in the state store: recorded per rollout and for the live app, and an old state.db migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trafficshift import report
from trafficshift.models import AppState, Colour, Outcome
from trafficshift.store.aio import AsyncStateStore
from trafficshift.store.rollouts import ADDED_COLUMNS, StateStore

BLUE, GREEN = Colour.BLUE, Colour.GREEN
V1 = {"image": "shop/web:1", "image_id": "sha256:1", "environment.GREETING": "hello", "port": 8080}
V2 = {**V1, "environment.GREETING": "bonjour"}

# The tables as the first release made them (before specs were recorded).
OLD_SCHEMA = """
CREATE TABLE apps (app TEXT PRIMARY KEY, colour TEXT, image TEXT, updated_at REAL NOT NULL);
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY, app TEXT NOT NULL,
    from_colour TEXT, from_image TEXT, to_colour TEXT NOT NULL, to_image TEXT NOT NULL,
    steps TEXT NOT NULL, pause REAL NOT NULL, phase TEXT NOT NULL, step INTEGER NOT NULL,
    weights TEXT NOT NULL, abort_requested TEXT,
    outcome TEXT, reason TEXT, started_at REAL NOT NULL, updated_at REAL NOT NULL, ended_at REAL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, app TEXT NOT NULL, at REAL NOT NULL,
    phase TEXT NOT NULL, step INTEGER NOT NULL, weights TEXT NOT NULL, message TEXT NOT NULL
);
INSERT INTO apps VALUES ('web', 'blue', 'shop/web:1', 1.0);
INSERT INTO rollouts VALUES ('old1', 'web', NULL, NULL, 'blue', 'shop/web:1', '[100]', 0.0, 'done', 0,
    '{"blue": 100}', NULL, 'done', NULL, 1.0, 1.0, 1.0);
"""


def old_state(folder: Path) -> Path:
    folder.mkdir()
    db = sqlite3.connect(folder / "state.db")
    db.executescript(OLD_SCHEMA)
    db.commit()
    db.close()
    return folder


def columns(folder: Path, table: str) -> set[str]:
    db = sqlite3.connect(folder / "state.db")
    try:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    finally:
        db.close()


def test_an_old_state_folder_gets_the_spec_columns_and_keeps_its_history(tmp_path: Path) -> None:
    folder = old_state(tmp_path / "state")
    store = StateStore(folder)
    try:
        assert {"spec"} <= columns(folder, "apps")
        assert {"from_spec", "to_spec"} <= columns(folder, "rollouts")
        (old,) = store.history("web")
        assert (old.id, old.to_image, old.from_spec, old.to_spec) == ("old1", "shop/web:1", None, None)
        assert store.app_state("web") == AppState(app="web", colour=BLUE, image="shop/web:1", recorded=True)
        assert report.rollout_dict(old)["changed"] is None
        # A promote after the upgrade: no live spec was recorded, so no list of changes yet.
        r = store.create_rollout(
            app="web",
            from_state=store.app_state("web"),
            to_colour=GREEN,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V1,
        )
        assert (r.from_spec, r.to_spec) == (None, V1)
        live = AppState(app="web", colour=GREEN, image="shop/web:1")
        store.finish(r, outcome=Outcome.DONE, reason=None, live=live)
        assert store.app_state("web").spec == V1
    finally:
        store.close()
    # Opened again (also by a second process): nothing more to add, nothing lost.
    again = StateStore(folder)
    try:
        assert [r.id for r in again.history("web")][-1] == "old1"
    finally:
        again.close()


def test_a_query_only_connection_reads_a_file_not_migrated_yet(tmp_path: Path) -> None:
    folder = old_state(tmp_path / "state")
    reader = StateStore(folder, read_only=True)
    try:
        (old,) = reader.history("web")
        assert old.to_spec is None
        assert reader.app_state("web").spec is None
    finally:
        reader.close()
    assert "spec" not in columns(folder, "apps")  # it did not try to write


def test_each_rollout_records_both_specs_and_the_live_one_follows_the_outcome(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    try:
        first = store.create_rollout(
            app="web",
            from_state=store.app_state("web"),
            to_colour=BLUE,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V1,
        )
        store.finish(
            first,
            outcome=Outcome.DONE,
            reason=None,
            live=AppState(app="web", colour=BLUE, image="shop/web:1"),
        )
        change = store.create_rollout(
            app="web",
            from_state=store.app_state("web"),
            to_colour=GREEN,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V2,
        )
        assert (change.from_spec, change.to_spec) == (V1, V2)
        created = store.events(rollout_id=change.id)[0].message
        assert created.endswith("; changed: environment.GREETING"), created
        # Aborted: the spec that serves is the one that served before.
        live = AppState(app="web", colour=BLUE, image="shop/web:1")
        ended = store.finish(change, outcome=Outcome.ABORTED, reason="no", live=live)
        assert store.app_state("web").spec == V1
        assert report.rollout_dict(ended)["changed"] == ["environment.GREETING"]
        assert report.rollout_dict(ended)["spec"] is not None
        text = report.format_history(store.history("web"))
        assert "changed: environment.GREETING  no" in text
        # Another app, not compose-backed, records none and shows none.
        plain = store.create_rollout(
            app="api",
            from_state=store.app_state("api"),
            to_colour=BLUE,
            to_image="api:1",
            steps=(100,),
            pause=0.0,
        )
        assert (plain.from_spec, plain.to_spec, report.rollout_dict(plain)["changed"]) == (None, None, None)
    finally:
        store.close()


async def test_the_async_store_records_the_spec_too(tmp_path: Path) -> None:
    store = AsyncStateStore(tmp_path)
    try:
        r = await store.create_rollout(
            app="web",
            from_state=AppState(app="web"),
            to_colour=BLUE,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V1,
        )
        read = await store.rollout(r.id)
        assert read is not None
        assert read.to_spec == V1
    finally:
        await store.aclose()


def test_every_added_column_is_in_the_schema_of_a_new_file(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    for table, column, _ in ADDED_COLUMNS:
        assert column in columns(tmp_path, table)


def test_status_shows_the_live_spec_and_what_the_rollout_in_progress_changes(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    try:
        first = store.create_rollout(
            app="web",
            from_state=AppState(app="web"),
            to_colour=BLUE,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V1,
        )
        live = AppState(app="web", colour=BLUE, image="shop/web:1")
        store.finish(first, outcome=Outcome.DONE, reason=None, live=live)
        state = store.app_state("web")
        change = store.create_rollout(
            app="web",
            from_state=state,
            to_colour=GREEN,
            to_image="shop/web:1",
            steps=(100,),
            pause=0.0,
            spec=V2,
        )
    finally:
        store.close()
    status = report.app_status(
        state=state, weights={BLUE: 100}, rollout=change, interrupted=False, containers=[], listed=None
    )
    assert status["spec"] == report.rollout_dict(first)["spec"]
    text = report.format_status(status)
    assert f"web: blue (shop/web:1, spec {status['spec']})" in text
    assert "changed: environment.GREETING" in text
