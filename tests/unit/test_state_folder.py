"""The state folder is private to its owner: 0700, its files 0600; one that others can write is refused."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from trafficshift.cli import main
from trafficshift.errors import UsageError
from trafficshift.models import AppState, Colour
from trafficshift.store.discovery import write_service_file
from trafficshift.store.locks import AppLock
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleStore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), under which files are world-readable unless made private on purpose."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def use_everything(state: Path) -> None:
    """Everything trafficshift keeps in the state folder, each made the way the program makes it."""
    store = StateStore(state)
    store.create_rollout(
        app="web",
        from_state=AppState(app="web"),
        to_colour=Colour.BLUE,
        to_image="a:1",
        steps=(100,),
        pause=0,
    )
    ScheduleStore(state).close()
    lock = AppLock(state, "web")
    assert lock.try_acquire()
    write_service_file(state, url="http://127.0.0.1:8700")
    # Checked while the database is open: SQLite's -wal and -shm exist only then.
    assert mode(state) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm", "locks/web.lock", "service.json"):
        assert mode(state / name) == 0o600, name
    assert mode(state / "locks") == 0o700
    lock.release()
    store.close()


def test_a_new_state_folder_and_its_files_are_private(tmp_path: Path) -> None:
    use_everything(tmp_path / "a" / "state")


def test_a_folder_an_older_version_made_world_readable_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "locks").mkdir(mode=0o755)
    old = sqlite3.connect(state / "state.db")  # as 0.1 made it: 0644, WAL files alike
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    assert mode(state) == 0o755
    assert mode(state / "state.db") == 0o644
    assert mode(state / "state.db-shm") == 0o644
    try:
        use_everything(state)
    finally:
        old.close()


@pytest.mark.parametrize("wide", [0o777, 0o775, 0o757, 0o1777])
def test_a_folder_others_can_write_is_refused(tmp_path: Path, wide: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(wide)
    for open_it in (StateStore, ScheduleStore, lambda s: AppLock(s, "web").try_acquire()):
        with pytest.raises(UsageError, match=rf"{state} \(state_dir\) is writable by other users") as info:
            open_it(state)
        assert f"chmod 700 {state}" in str(info.value)
        assert info.value.exit_code == 2
    assert mode(state) == wide  # refused, not "fixed": someone may have changed what is inside
    assert list(state.iterdir()) == []


def test_a_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    owner = state.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # as another user would run it
    with pytest.raises(UsageError, match=rf"{state} \(state_dir\) belongs to uid {owner}, not to this user"):
        StateStore(state)


def test_the_cli_refuses_it_with_exit_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(
        "traefik: {dynamic_dir: ./dyn}\n"
        "state_dir: ./state\n"
        "apps:\n"
        "  web: {image: 'a:1', port: 8080, rule: 'Host(`w`)', publish: 127.0.0.1}\n"
    )
    (tmp_path / "state").mkdir()
    (tmp_path / "state").chmod(0o777)
    assert main(["history", "web", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'state'} (state_dir) is writable by other users (mode 0777)" in err
    assert f"chmod 700 {tmp_path / 'state'}" in err
    assert "Traceback" not in err


def _write_and_close(state: str) -> None:
    store = StateStore(Path(state))
    store.request_abort("none", reason="a write")
    store.close()  # the last connection, as far as SQLite can tell: it checkpoints and deletes the WAL


def _read(state: str, rollout_id: str, seen: multiprocessing.queues.Queue[bool]) -> None:
    seen.put(StateStore(Path(state)).rollout(rollout_id) is not None)


def test_opening_a_second_store_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """A process that opens the database again must not open and close the file itself: closing any
    descriptor of it drops every POSIX lock the process holds on it, SQLite's too. Another process then
    takes itself for the last user, deletes the WAL, and what this process writes next goes to the
    deleted one: lost (seen as a service whose rollouts the CLI could not find)."""
    # Spawned, not forked: a forked child inherits SQLite's own record of this process's locks.
    ctx = multiprocessing.get_context("spawn")
    store = StateStore(tmp_path)
    schedules = ScheduleStore(tmp_path)  # as the service opens both
    writer = ctx.Process(target=_write_and_close, args=(str(tmp_path),))
    writer.start()
    writer.join(10)
    empty = AppState(app="web")
    r = store.create_rollout(
        app="web", from_state=empty, to_colour=Colour.BLUE, to_image="a:1", steps=(100,), pause=0
    )
    seen: multiprocessing.queues.Queue[bool] = ctx.Queue()
    reader = ctx.Process(target=_read, args=(str(tmp_path), r.id, seen))
    reader.start()
    reader.join(10)
    assert seen.get(timeout=5), "another process does not see what this one wrote"
    schedules.close()
    store.close()
