"""The CLI following a rollout in the service: a service that dies before it answers the POST.

Killed -9 right after it recorded the rollout (the chaos suite does that to `serve`), the service never
answers: that is not exit 3 ("could not be reached before anything changed") when the rollout was recorded.
The CLI follows it, finds that nobody drives it, and exits 5, as it does when the service dies later.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factories import BASE_CONFIG
from trafficshift import remote
from trafficshift.client import Client
from trafficshift.config import parse_config_text
from trafficshift.errors import RolloutStuck, UnreachableError
from trafficshift.models import AppState, Colour, Config
from trafficshift.store.rollouts import StateStore


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config_text(BASE_CONFIG, source="trafficshift.yml", base_dir=tmp_path)


@contextlib.contextmanager
def _dying_service(config: Config, *, records: bool) -> Iterator[str]:
    """A service that reads the POST, records a rollout of `web` (if `records`), then dies without a word."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if records:
                store = StateStore(config.state_dir)
                try:
                    store.create_rollout(
                        app="web",
                        from_state=AppState(app="web", colour=Colour.BLUE, image="web:1"),
                        to_colour=Colour.GREEN,
                        to_image="web:2",
                        steps=(10, 100),
                        pause=1.0,
                    )
                finally:
                    store.close()
            self.close_connection = True  # and no answer: the connection just ends

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
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


async def test_a_service_dying_after_it_recorded_the_rollout_is_exit_5(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "POLL", 0.01)
    monkeypatch.setattr(remote, "DRIVER_GRACE", 0.05)
    StateStore(config.state_dir).close()
    with _dying_service(config, records=True) as url:
        with pytest.raises(RolloutStuck, match="no longer drives it") as raised:
            await _promote(config, url)
        assert raised.value.exit_code == 5


async def test_a_service_dying_before_it_recorded_anything_is_exit_3(config: Config) -> None:
    StateStore(config.state_dir).close()
    with _dying_service(config, records=False) as url:
        with pytest.raises(UnreachableError) as raised:
            await _promote(config, url)
        assert raised.value.exit_code == 3
