"""The CLI's HTTP client for a running `trafficshift serve` (the `schedule` commands).

URL: `$TRAFFICSHIFT_URL`, else `http://<service.listen>` from the config. Token: `$TRAFFICSHIFT_TOKEN`, else
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

from .errors import TrafficShiftError, UnreachableError, UsageError
from .models import Config
from .schedules import parse_at
from .service import TOKEN_ENV, configured_token, read_generated_token

URL_ENV = "TRAFFICSHIFT_URL"
TIMEOUT = 30.0


class ServiceError(TrafficShiftError):
    """The service answered with an error (a 5xx)."""


@dataclass(frozen=True)
class Client:
    url: str
    token: str | None

    @classmethod
    def from_config(cls, config: Config) -> Client:
        url = os.environ.get(URL_ENV) or f"http://{config.service.listen}"
        configured = configured_token(config)
        token = configured[0] if configured else read_generated_token(config.state_dir)
        return cls(url=url.rstrip("/"), token=token)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON answer, or raise the matching project error."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError(f"cannot reach the service at {self.url}: {reason}") from None


def _error(status: int, raw: bytes) -> TrafficShiftError:
    try:
        doc = json.loads(raw)
        message = str(doc.get("error") or doc)
        field = doc.get("field")
    except (ValueError, AttributeError):
        message, field = raw.decode("utf-8", "replace")[:200], None
    text = f"{field}: {message}" if field else message
    if status == 401:
        return UsageError(f"the service refused the token ({message}); set ${TOKEN_ENV}")
    if status < 500:
        return UsageError(f"HTTP {status}: {text}")
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
