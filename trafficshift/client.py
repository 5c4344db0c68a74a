"""The CLI's HTTP client for a running `trafficshift serve` (`schedule`; promote, abort and rollback in it).

URL: `$TRAFFICSHIFT_URL`, else `http://<service.listen>` from the config (`schedule`), else the service that
recorded itself in `<state_dir>/service.json` (`running_service`). Token: `$TRAFFICSHIFT_TOKEN`, else
`service.token_file`, else the token the service generated in the state folder.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO

from trafficshift.durations import parse_at
from trafficshift.errors import Conflict, ServiceError, TrafficShiftError, UnreachableError, UsageError
from trafficshift.models import Config
from trafficshift.store.discovery import SERVICE_FILE, TOKEN_ENV, configured_token, read_generated_token
from trafficshift.store.folder import private_dir

URL_ENV = "TRAFFICSHIFT_URL"
TIMEOUT = 30.0
# How long `GET /healthz` of a recorded service may take before the record counts as stale.
HEALTH_TIMEOUT = 1.0


@dataclass(frozen=True)
class Client:
    url: str
    token: str | None

    @classmethod
    def from_config(cls, config: Config, *, url: str | None = None) -> Client:
        url = url or os.environ.get(URL_ENV) or f"http://{config.service.listen}"
        configured = configured_token(config)
        token = configured[0] if configured else read_generated_token(config.state_dir)
        return cls(url=url.rstrip("/"), token=token)

    def healthy(self) -> bool:
        """Whether `GET /healthz` answers 200 within HEALTH_TIMEOUT."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=HEALTH_TIMEOUT) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError):
            return False

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> Any:
        """Send one request; return the decoded JSON answer, or raise the matching project error."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise error_of(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError(f"cannot reach the service at {self.url}: {reason}") from None


def running_service(config: Config) -> Client | None:
    """The service that runs promote, abort and rollback for this config, or None: run them here.

    `$TRAFFICSHIFT_URL`, when set, names it: it must answer (else exit 3). Otherwise the service recorded
    in `<state_dir>/service.json` while it listens; a record whose process is gone or whose `/healthz`
    does not answer within HEALTH_TIMEOUT is stale (a killed service): None.
    """
    explicit = os.environ.get(URL_ENV, "").strip()
    if explicit:
        client = Client.from_config(config, url=explicit)
        if not client.healthy():
            raise UnreachableError(
                f"cannot reach the service at {client.url} (${URL_ENV}); unset it or pass --local"
            )
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
    client = Client.from_config(config, url=url)
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
    config: Config, *, args: list[str], image: str | None, at: str | None, as_json: bool, out: TextIO
) -> int:
    """`schedule APP --image IMAGE --at TIME`, `schedule list`, `schedule cancel ID`; the exit code."""
    client = Client.from_config(config)
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
