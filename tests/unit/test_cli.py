from __future__ import annotations

from pathlib import Path

import pytest

from trafficshift.cli import main

VALID = (
    "traefik: {dynamic_dir: ./dyn}\n"
    "apps:\n"
    "  web: {image: 'a:1', port: 8080, rule: 'Host(`w`)', publish: 127.0.0.1}\n"
)


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_flag_works_before_or_after_the_command(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(VALID)
    args = ["-c", str(config), "check"] if where == "before" else ["check", "-c", str(config)]
    assert main(args) == 0
    assert capsys.readouterr() == ("", "")


def test_config_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(VALID.replace("port: 8080", "port: 0"))
    monkeypatch.setenv("TRAFFICSHIFT_CONFIG", str(config))
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "ts.yml:3: apps.web.port: must be 1..65535, got 0" in err
    assert "Traceback" not in err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["promote", "web", "--steps", "10,5"])
    assert exc.value.code == 2
    assert "rise strictly" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["reconcile"], "name one app, or give --all"),
        (["reconcile", "web", "--all"], "name one app, or give --all"),
        (["reconcile", "nope"], "unknown app 'nope'"),
    ],
)
def test_reconcile_needs_one_app_or_all(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(VALID)
    assert main([*args, "-c", str(config)]) == 2
    assert says in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.yml"]  # nothing created


@pytest.mark.parametrize("which", ["web", "--all"])
def test_reconcile_without_docker_exits_3(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(VALID)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert main(["reconcile", which, "-c", str(config)]) == 3
    err = capsys.readouterr().err
    assert "Docker" in err
    assert "Traceback" not in err
    assert not (tmp_path / "dyn").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["promote"], "name one APP, or --all"),
        (["promote", "web", "--all"], "name one APP, or --all"),
        (["promote", "web", "--parallel", "2"], "--parallel goes with --all"),
        (["promote", "--all", "--image", "a:2"], "--image does not go with --all"),
        (["promote", "web", "--build", "--image", "a:2"], "--image does not go with --build"),
        (["promote", "web", "--build"], "it is not compose-backed; there is nothing to build"),
        (["promote", "--all"], "ts.yml has no compose-backed app (compose:)"),
    ],
)
def test_promote_flags_that_do_not_go_together_exit_2_before_anything(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ts.yml"
    config.write_text(VALID)
    assert main([*argv, "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert not (tmp_path / ".trafficshift").exists()  # nothing opened or created


def test_parallel_takes_a_positive_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--all", "--parallel", "0"])
    assert exc.value.code == 2
    assert "at least 1" in capsys.readouterr().err
