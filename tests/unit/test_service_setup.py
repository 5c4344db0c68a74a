"""Where the service listens and which token it takes: loopback by default, never open to the network."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trafficshift.config import parse_config_text
from trafficshift.errors import UsageError
from trafficshift.models import Config
from trafficshift.service.app import split_listen
from trafficshift.store.discovery import TOKEN_ENV, is_loopback, read_generated_token, resolve_token


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),  # a name could resolve anywhere
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_split_listen() -> None:
    assert split_listen("127.0.0.1:8700") == ("127.0.0.1", 8700)
    assert split_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("127.0.0.1", "::1:80", "host:99999"):
        with pytest.raises(UsageError, match="--listen"):
            split_listen(bad)


def _config(tmp_path: Path, service: str = "") -> Config:
    text = f"traefik:\n  dynamic_dir: ./dyn\napps: {{}}\n{service}"
    return parse_config_text(text, source="ts.yml", base_dir=tmp_path)


def test_the_env_token_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "  s3cret\n")
    assert resolve_token(_config(tmp_path), listen_host="0.0.0.0") == ("s3cret", f"${TOKEN_ENV}")


def test_a_token_file_is_read_and_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    (tmp_path / "token").write_text("from-file\n")
    config = _config(tmp_path, "service:\n  token_file: ./token\n")
    assert resolve_token(config, listen_host="10.0.0.1")[0] == "from-file"
    (tmp_path / "token").write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        resolve_token(config, listen_host="127.0.0.1")


def test_no_token_on_a_non_loopback_address_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(UsageError, match="refusing to listen") as info:
            resolve_token(_config(tmp_path), listen_host=host)
        assert info.value.exit_code == 2


def test_on_loopback_without_a_token_one_is_generated_for_this_host_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = _config(tmp_path)
    token, source = resolve_token(config, listen_host="127.0.0.1")
    path = config.state_dir / "service.token"
    assert len(token) >= 32
    assert str(path) in source
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_generated_token(config.state_dir) == token
    assert resolve_token(config, listen_host="127.0.0.1")[0] != token  # a new one each start


def test_a_generated_token_file_that_existed_with_a_wider_mode_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = _config(tmp_path)
    path = config.state_dir / "service.token"
    config.state_dir.mkdir(parents=True)
    path.write_text("old\n")
    path.chmod(0o644)  # e.g. left by an older version, or copied with the folder
    token, _ = resolve_token(config, listen_host="127.0.0.1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_generated_token(config.state_dir) == token


def test_a_new_token_never_reaches_a_descriptor_open_on_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is replaced (a new 0600 inode renamed over it), not rewritten in place."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = _config(tmp_path)
    first, _ = resolve_token(config, listen_host="127.0.0.1")
    path = config.state_dir / "service.token"
    with path.open(encoding="utf-8") as old:
        second, _ = resolve_token(config, listen_host="127.0.0.1")
        assert old.read().strip() == first  # still the old file's content, not the new token
    assert second != first
    assert read_generated_token(config.state_dir) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in config.state_dir.iterdir() if "token" in p.name] == ["service.token"]
