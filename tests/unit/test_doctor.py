"""`doctor`'s checks of folders and the token, and how a check reads (Docker and Traefik: integration)."""

from __future__ import annotations

import os
from pathlib import Path

from trafficshift.doctor import (
    Check,
    check_clock,
    check_folder,
    check_state,
    check_token,
    remove_stale_probes,
)


def test_a_check_reads_as_one_line_with_its_fix() -> None:
    assert Check("docker", True, "answers").line() == "ok    docker: answers"
    assert Check("clock", None, "no answer").line() == "skip  clock: no answer"
    assert Check("x", False, "broken", "mend it").line() == "FAIL  x: broken; fix: mend it"


def test_a_folder_is_ok_when_it_can_be_written_or_created(tmp_path: Path) -> None:
    assert check_folder("f", tmp_path).ok is True
    assert check_folder("f", tmp_path / "a" / "b").ok is True
    (tmp_path / "file").write_text("")
    assert check_folder("f", tmp_path / "file").ok is False


def test_a_state_dir_others_can_write_fails(tmp_path: Path) -> None:
    assert check_state(tmp_path).ok is True
    tmp_path.chmod(0o777)
    assert check_state(tmp_path).fix == f"check its content, then chmod 700 {tmp_path}"


def test_a_token_readable_by_others_fails(tmp_path: Path) -> None:
    token = tmp_path / "service.token"
    assert check_token(token) is None
    token.write_text("secret")
    token.chmod(0o644)
    check = check_token(token)
    assert check is not None
    assert check.fix == f"chmod 600 {token}"
    token.chmod(0o600)
    assert check_token(token) == Check("token", True, f"{token} is readable by its owner only")


def test_the_clocks_may_differ_by_two_seconds() -> None:
    assert (
        check_clock(engine=100.0, local=101.5).line()
        == "ok    clock: Docker's clock is within 1.5s of this host's"
    )
    check = check_clock(engine=100.0, local=103.0)
    assert (check.ok, check.detail) == (False, "Docker's clock is -3.0s off this host's")


def test_only_probes_a_killed_doctor_left_are_removed(tmp_path: Path) -> None:
    old, young = tmp_path / "trafficshift-doctor-0a.yml", tmp_path / "trafficshift-doctor-0b.yml"
    app = tmp_path / "web.yml"
    for path in (old, young, app):
        path.write_text("http: {}\n")
        os.utime(path, (1000.0, 1000.0))
    os.utime(young, (1990.0, 1990.0))
    remove_stale_probes(tmp_path, now=2000.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trafficshift-doctor-0b.yml", "web.yml"]
