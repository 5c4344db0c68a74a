"""The CLI's client over https, against a real TLS endpoint (a certificate made here with openssl).

The service's certificate is verified (chain and host name): against the system's CAs, or `--cacert` /
`$TRAFFICSHIFT_CACERT` for a private CA. The token travels only in the Authorization header, and never to
where a redirect points (the client follows none).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.tls import self_signed
from trafficshift.client import CACERT_ENV, Client
from trafficshift.config import parse_config_text
from trafficshift.errors import UsageError
from trafficshift.service.app import tls_context

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@contextlib.contextmanager
def _server(handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Recording(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []
    redirect_to: str | None = None

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + "/schedules")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_https_is_verified_against_the_given_ca_and_the_token_goes_in_the_header(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    handler = type("Handler", (_Recording,), {"seen": []})
    with _server(handler, tls_context(str(cert), str(key))) as url:
        with pytest.raises(UsageError, match=r"failed the TLS check.*--cacert") as refused:
            Client(url=url, token=TOKEN).call("GET", "/schedules")
        assert refused.value.exit_code == 2
        assert handler.seen == []  # nothing was sent before the certificate was checked
        assert Client(url=url, token=TOKEN, cacert=str(cert)).call("GET", "/schedules") == []
    assert handler.seen == [("/schedules", f"Bearer {TOKEN}")]


def test_the_ca_comes_from_the_environment_and_must_exist(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps: {}\n", source="ts.yml", base_dir=tmp_path
    )
    monkeypatch.setenv(CACERT_ENV, str(certificate[0]))
    assert Client.from_config(config, url="https://127.0.0.1:1").cacert == str(certificate[0])
    with pytest.raises(UsageError, match="no such file"):
        Client.from_config(config, url="https://127.0.0.1:1", cacert=str(tmp_path / "missing.pem"))


def test_a_redirect_is_not_followed_so_the_token_stays_put() -> None:
    elsewhere = type("Elsewhere", (_Recording,), {"seen": []})
    with _server(elsewhere, None) as other:
        redirecting = type("Redirecting", (_Recording,), {"seen": [], "redirect_to": other})
        with _server(redirecting, None) as url, pytest.raises(UsageError, match="HTTP 302"):
            Client(url=url, token=TOKEN).call("GET", "/schedules")
    assert elsewhere.seen == []


def test_a_bad_certificate_file_for_serve_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(UsageError, match="--tls-cert") as raised:
        tls_context(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert raised.value.exit_code == 2
