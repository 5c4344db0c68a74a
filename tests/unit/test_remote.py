"""The CLI following a rollout in the service through its API only: a service that dies before it answers.

Killed -9 right after it recorded the rollout (the chaos suite does that to `serve`), the service never
answers the POST: that is not exit 3 ("could not be reached before anything changed") when the rollout was
recorded. The CLI asks the service (`GET /apps/{app}`) which rollout runs, follows it, finds that nobody
drives it, and exits 5, as it does when the service dies later. A service that answers that no rollout was
recorded is exit 3; one that cannot be asked any more is exit 5 (what it did is not known).

A stand-in HTTP server plays the service (the real one is in tests/integration/test_service_cli.py): the
CLI shares no state folder with it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import BASE_CONFIG
from trafficshift import remote
from trafficshift.client import Client, SseParser
from trafficshift.config import parse_config_text
from trafficshift.errors import RolloutStuck, UnreachableError
from trafficshift.models import Config

ROLLOUT = {
    "id": "r1",
    "app": "web",
    "state": "starting",
    "step": -1,
    "steps": [10, 100],
    "weights": {"blue": 100},
    "to_colour": "green",
    "interrupted": True,
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config_text(BASE_CONFIG, source="trafficshift.yml", base_dir=tmp_path / "cli")


@contextlib.contextmanager
def _dying_service(*, recorded: bool, answers_after: bool = True) -> Iterator[str]:
    """A service that reads the POST and dies without a word; afterwards it says whether a rollout of `web`
    was recorded (`GET /apps/web`), or, without `answers_after`, answers nothing at all any more."""
    posted = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/events"):
                self._send(200, b": stream\nid: 7\n\n", "text/event-stream")
            elif self.path == "/apps/web" and (answers_after or not posted.is_set()):
                self._send(200, json.dumps({"rollout": ROLLOUT if recorded else None}).encode())
            else:
                self.close_connection = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posted.set()
            self.close_connection = True  # and no answer: the connection just ends

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def _promote(config: Config, url: str) -> None:
    await remote.run_in_service(
        config,
        Client(url=url, token="t"),
        command="promote",
        app="web",
        body={"image": "web:2"},
        on_event=lambda event: None,
        on_progress=lambda text: None,
        install_signals=lambda interrupt: None,
    )


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "DRIVER_CHECK", 0.05)
    monkeypatch.setattr(remote, "DRIVER_GRACE", 0.1)
    monkeypatch.setattr(remote, "RECONNECT_FOR", 0.3)
    monkeypatch.setattr(remote, "RETRY_EVERY", 0.05)


async def test_a_service_dying_after_it_recorded_the_rollout_is_exit_5(config: Config) -> None:
    with _dying_service(recorded=True) as url:
        with pytest.raises(RolloutStuck, match="no longer drives it") as raised:
            await _promote(config, url)
        assert raised.value.exit_code == 5
    assert not config.state_dir.exists()  # the CLI never looked for the service's state


async def test_a_service_dying_before_it_recorded_anything_is_exit_3(config: Config) -> None:
    with _dying_service(recorded=False) as url:
        with pytest.raises(UnreachableError) as raised:
            await _promote(config, url)
        assert raised.value.exit_code == 3


async def test_a_service_that_cannot_be_asked_after_the_post_is_exit_5(config: Config) -> None:
    with _dying_service(recorded=False, answers_after=False) as url:
        with pytest.raises(RolloutStuck, match="not known here") as raised:
            await _promote(config, url)
        assert raised.value.exit_code == 5


def _frames(text: str, parser: SseParser) -> list[Any]:
    return [frame for line in text.splitlines(keepends=True) if (frame := parser.feed(line))]


def test_sse_frames_ids_and_comments() -> None:
    parser = SseParser()
    frames = _frames(
        ': hello\nid: 4\n\nid: 5\nevent: rollout\ndata: {"a": 1}\n\n: keep-alive\n\n'
        'event: progress\ndata: {"b": 2}\n\n',
        parser,
    )
    assert [(f.event, f.data, f.id) for f in frames] == [
        ("rollout", {"a": 1}, 5),
        ("progress", {"b": 2}, None),
    ]
    assert parser.last_id == 5  # a frame without an id (progress) leaves it
