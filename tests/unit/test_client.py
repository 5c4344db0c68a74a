"""How the CLI finds the service that owns its apps: `<state_dir>/service.json`, or `$TRAFFICSHIFT_URL`."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from trafficshift.client import URL_ENV, error_of, running_service
from trafficshift.config import parse_config_text
from trafficshift.errors import Conflict, UnreachableError, UsageError
from trafficshift.models import Config
from trafficshift.store.discovery import SERVICE_FILE, remove_service_file, service_url, write_service_file


def _config(tmp_path: Path) -> Config:
    text = "traefik:\n  dynamic_dir: ./dyn\napps: {}\n"
    return parse_config_text(text, source="ts.yml", base_dir=tmp_path)


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthy_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url() -> str:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthz)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}"


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _record(config: Config, *, pid: int, url: str) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / SERVICE_FILE).write_text(json.dumps({"pid": pid, "url": url, "started_at": "x"}))


def test_service_url_reaches_a_wildcard_listener_on_loopback() -> None:
    assert service_url("127.0.0.1", 8700) == "http://127.0.0.1:8700"
    assert service_url("0.0.0.0", 8700) == "http://127.0.0.1:8700"
    assert service_url("::", 8700) == "http://[::1]:8700"
    assert service_url("::1", 9000) == "http://[::1]:9000"


def test_the_record_is_written_whole_and_removed_only_by_its_writer(tmp_path: Path) -> None:
    path = write_service_file(tmp_path, url="http://127.0.0.1:8700")
    doc = json.loads(path.read_text())
    assert (doc["pid"], doc["url"]) == (os.getpid(), "http://127.0.0.1:8700")
    assert doc["started_at"]
    assert [p.name for p in tmp_path.iterdir()] == [SERVICE_FILE]  # no temp file left
    path.write_text(json.dumps({**doc, "pid": os.getpid() + 1}))  # another service took over
    remove_service_file(path)
    assert path.exists()
    write_service_file(tmp_path, url="http://127.0.0.1:8700")
    remove_service_file(path)
    assert not path.exists()
    remove_service_file(path)  # gone already: fine


def test_a_live_answering_service_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_url: str
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.setenv("TRAFFICSHIFT_TOKEN", "t0k")
    config = _config(tmp_path)
    _record(config, pid=os.getpid(), url=healthy_url)
    client = running_service(config)
    assert client is not None
    assert (client.url, client.token) == (healthy_url, "t0k")


def test_no_record_or_a_stale_one_means_no_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_url: str, dead_url: str
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    config = _config(tmp_path)
    assert running_service(config) is None
    _record(config, pid=_dead_pid(), url=healthy_url)  # killed -9: its pid is gone
    assert running_service(config) is None
    _record(config, pid=os.getpid(), url=dead_url)  # pid reused, nothing answers
    assert running_service(config) is None
    (config.state_dir / SERVICE_FILE).write_text("{not json")
    assert running_service(config) is None


def test_an_explicit_url_wins_and_must_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_url: str, dead_url: str
) -> None:
    config = _config(tmp_path)
    _record(config, pid=os.getpid(), url=dead_url)
    monkeypatch.setenv(URL_ENV, healthy_url + "/")
    client = running_service(config)
    assert client is not None
    assert client.url == healthy_url
    monkeypatch.setenv(URL_ENV, dead_url)
    with pytest.raises(UnreachableError, match="--local") as info:
        running_service(config)
    assert info.value.exit_code == 3


def test_error_answers_map_to_exit_codes() -> None:
    conflict = error_of(409, b'{"error": "no rollout of web is in progress", "field": null}')
    assert isinstance(conflict, Conflict)
    assert str(conflict) == "no rollout of web is in progress"
    bad = error_of(400, b'{"error": "expected a duration", "field": "pause"}')
    assert isinstance(bad, UsageError)
    assert "pause: expected a duration" in str(bad)
    assert error_of(503, b'{"error": "the service is shutting down", "field": null}').exit_code == 3
    assert error_of(401, b"{}").exit_code == 2
