"""The CLI's HTTP client for a running `trafficshift serve` (`schedule`; promote, abort and rollback in it).

URL: `$TRAFFICSHIFT_URL`, else `http://<service.listen>` from the config (`schedule`), else the service that
recorded itself in `<state_dir>/service.json` (`running_service`). Token: `$TRAFFICSHIFT_TOKEN`, else
`service.token_file`, else the token the service generated in the state folder. It travels only in the
Authorization header, and never across a redirect (the client follows none). An `https://` URL is verified
against the system's CAs, or `--cacert`/`$TRAFFICSHIFT_CACERT` for a private CA.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TextIO

from trafficshift.durations import parse_at
from trafficshift.errors import (
    Conflict,
    NoAnswer,
    ServiceError,
    TrafficShiftError,
    UnreachableError,
    UsageError,
)
from trafficshift.models import Config
from trafficshift.store.discovery import SERVICE_FILE, TOKEN_ENV, configured_token, read_generated_token
from trafficshift.store.folder import private_dir

URL_ENV = "TRAFFICSHIFT_URL"
CACERT_ENV = "TRAFFICSHIFT_CACERT"
TIMEOUT = 30.0
# How long `GET /healthz` of a recorded service may take before the record counts as stale.
HEALTH_TIMEOUT = 1.0


@dataclass(frozen=True)
class Frame:
    """One server-sent event: its `event` type, `data` (decoded JSON) and `id` (None when it has none)."""

    event: str
    data: Any
    id: int | None = None


@dataclass
class SseParser:
    """Lines of a `text/event-stream` in, frames out (comments and keep-alives skipped).

    A frame with an id and no data (the service's first) moves `last_id` without yielding a frame.
    """

    last_id: int | None = None
    _fields: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> Frame | None:
        line = line.rstrip("\r\n")
        if line.startswith(":"):
            return None
        if line:
            key, _, value = line.partition(":")
            self._fields[key] = value.removeprefix(" ")
            return None
        fields, self._fields = self._fields, {}
        if fields.get("id", "").isdigit():
            self.last_id = int(fields["id"])
        if "data" not in fields:
            return None
        frame_id = int(fields["id"]) if fields.get("id", "").isdigit() else None
        return Frame(event=fields.get("event", "message"), data=json.loads(fields["data"]), id=frame_id)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not followed: following it would carry the token to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Client:
    url: str
    token: str | None
    # A PEM file of the CA that signed the service's certificate (https:// only).
    cacert: str | None = None

    @classmethod
    def from_config(cls, config: Config, *, url: str | None = None, cacert: str | None = None) -> Client:
        url = url or os.environ.get(URL_ENV) or f"http://{config.service.listen}"
        configured = configured_token(config)
        token = configured[0] if configured else read_generated_token(config.state_dir)
        cacert = cacert or os.environ.get(CACERT_ENV) or None
        if cacert is not None and not os.path.isfile(cacert):
            raise UsageError(f"--cacert / ${CACERT_ENV}: no such file: {cacert}")
        return cls(url=url.rstrip("/"), token=token, cacert=cacert)

    def healthy(self) -> bool:
        """Whether `GET /healthz` answers 200 within HEALTH_TIMEOUT."""
        try:
            with self._open(urllib.request.Request(self.url + "/healthz"), HEALTH_TIMEOUT) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError, http.client.HTTPException):
            return False

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> Any:
        """Send one request; return the decoded JSON answer, or raise the matching project error.

        NoAnswer (exit 3 unless the caller knows better) when the request went out and no answer came.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._answer(method, path, data=data, headers=headers, timeout=timeout) as response:
            try:
                return json.loads(response.read() or b"null")
            except (OSError, http.client.HTTPException) as exc:
                raise NoAnswer(f"the service at {self.url} stopped answering: {exc}") from None

    def stream(self, path: str, *, last_id: int | None, timeout: float) -> Generator[str]:
        """The lines of a server-sent event stream (`Last-Event-ID: last_id`), until it ends.

        `timeout` bounds each read: a stream silent for longer (the service sends a keep-alive every 15 s)
        is lost. Errors as `call`'s; NoAnswer when the stream is cut.
        """
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        with self._answer("GET", path, data=None, headers=headers, timeout=timeout) as response:
            try:
                while raw := response.readline():
                    yield raw.decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as exc:
                raise NoAnswer(f"the stream of the service at {self.url} was cut: {exc}") from None

    def _answer(
        self, method: str, path: str, *, data: bytes | None, headers: dict[str, str], timeout: float
    ) -> Any:
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            return self._open(request, timeout)
        except urllib.error.HTTPError as exc:
            raise error_of(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise UsageError(self._tls_advice(exc.reason)) from None
            # Not connected at all (refused, no route, a name that does not resolve): nothing was sent.
            raise UnreachableError(f"cannot reach the service at {self.url}: {exc.reason}") from None
        except (OSError, TimeoutError, http.client.HTTPException) as exc:
            # Connected and sent; then the connection ended, or nothing came back in time.
            raise NoAnswer(f"the service at {self.url} did not answer: {exc or type(exc).__name__}") from None

    def _open(self, request: urllib.request.Request, timeout: float) -> Any:
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self.url.startswith("https://"):
            # Verified (certificate chain and host name); against the given CA when there is one.
            handlers.append(
                urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=self.cacert))
            )
        return urllib.request.build_opener(*handlers).open(request, timeout=timeout)

    def _tls_advice(self, error: ssl.SSLError) -> str:
        text = f"the service at {self.url} failed the TLS check: {getattr(error, 'reason', None) or error}"
        if self.cacert is None:
            text += f"; for a private CA, give its certificate with --cacert or ${CACERT_ENV}"
        return text


def running_service(config: Config, *, cacert: str | None = None) -> Client | None:
    """The service that runs promote, abort and rollback for this config, or None: run them here.

    `$TRAFFICSHIFT_URL`, when set, names it: it must answer (else exit 3). Otherwise the service recorded
    in `<state_dir>/service.json` while it listens; a record whose process is gone or whose `/healthz`
    does not answer within HEALTH_TIMEOUT is stale (a killed service): None.
    """
    explicit = os.environ.get(URL_ENV, "").strip()
    if explicit:
        client = Client.from_config(config, url=explicit, cacert=cacert)
        try:
            client.call("GET", "/healthz", timeout=HEALTH_TIMEOUT)
        except UsageError:
            raise  # e.g. its certificate failed the check: the message says what to do
        except TrafficShiftError:
            raise UnreachableError(
                f"cannot reach the service at {client.url} (${URL_ENV}); unset it or pass --local"
            ) from None
        return client
    # A record in a folder others can write could send this user's token anywhere: refused (exit 2).
    private_dir(config.state_dir)
    try:
        doc = json.loads((config.state_dir / SERVICE_FILE).read_text(encoding="utf-8"))
        pid, url = int(doc["pid"]), str(doc["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    client = Client.from_config(config, url=url, cacert=cacert)
    return client if client.healthy() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists (another user's)
    except (OSError, OverflowError):
        return False
    return pid > 0


def error_of(status: int, raw: bytes) -> TrafficShiftError:
    """The project error for an error answer of the service (its `{"error", "field"}` document)."""
    try:
        doc = json.loads(raw)
        message = str(doc.get("error") or doc)
        field = doc.get("field")
    except (ValueError, AttributeError):
        message, field = raw.decode("utf-8", "replace")[:200], None
    text = f"{field}: {message}" if field else message
    if status == 401:
        return UsageError(f"the service refused the token ({message}); set ${TOKEN_ENV}")
    if status == 409:
        return Conflict(message)
    if status < 500:
        return UsageError(f"HTTP {status}: {text}")
    if status == 503:
        # Docker or Traefik unreachable, or the service is stopping: it started nothing.
        return UnreachableError(f"the service cannot do it now (HTTP 503): {text}")
    return ServiceError(f"the service failed (HTTP {status}): {text}")


def schedule_command(
    config: Config,
    *,
    args: list[str],
    image: str | None,
    at: str | None,
    as_json: bool,
    out: TextIO,
    cacert: str | None = None,
) -> int:
    """`schedule APP --image IMAGE --at TIME`, `schedule list`, `schedule cancel ID`; the exit code."""
    client = Client.from_config(config, cacert=cacert)
    if args == ["list"] and image is None and at is None:
        schedules = client.call("GET", "/schedules")
        if as_json:
            print(json.dumps(schedules, indent=2), file=out)
        elif not schedules:
            print("no schedules", file=out)
        for s in [] if as_json else schedules:
            rollout = f"  rollout {s['rollout']}" if s["rollout"] else ""
            reason = f"  ({s['reason']})" if s["reason"] else ""
            print(
                f"{s['id']}  {s['at']}  {s['app']} -> {s['image']}  {s['state']}{rollout}{reason}", file=out
            )
        return 0
    if len(args) == 2 and args[0] == "cancel" and image is None and at is None:
        cancelled = client.call("DELETE", f"/schedules/{urllib.parse.quote(args[1], safe='')}")
        print(json.dumps(cancelled, indent=2) if as_json else f"cancelled {cancelled['id']}", file=out)
        return 0
    if len(args) != 1 or image is None or at is None:
        raise UsageError(
            "usage: trafficshift schedule APP --image IMAGE --at TIME | schedule list | schedule cancel ID"
        )
    try:
        parse_at(at)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None
    created = client.call("POST", "/schedules", {"app": args[0], "image": image, "at": at})
    if as_json:
        print(json.dumps(created, indent=2), file=out)
    else:
        print(f"scheduled {created['id']}: {args[0]} -> {image} at {at}", file=out)
    return 0
