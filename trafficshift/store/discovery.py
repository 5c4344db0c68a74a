"""How the CLI on this host finds a running service: its record (`service.json`) and its token."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import tempfile
from pathlib import Path

from trafficshift.errors import UsageError
from trafficshift.models import Config
from trafficshift.store.folder import private_dir

TOKEN_ENV = "TRAFFICSHIFT_TOKEN"
# Written when no token is configured (loopback only): the CLI on this host reads it from here.
GENERATED_TOKEN = "service.token"
# `{"pid", "url", "started_at"}` while the service listens: the CLI on this host finds it here and runs
# promote, abort and rollback through it.
SERVICE_FILE = "service.json"


def is_loopback(host: str) -> bool:
    """Whether `host` (from host:port, IPv6 in brackets) only listens on this machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name could resolve anywhere


def configured_token(config: Config) -> tuple[str, str] | None:
    """The token the user chose and where: `$TRAFFICSHIFT_TOKEN`, else `service.token_file`; else None."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    path = config.service.token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"service.token_file: cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise UsageError(f"service.token_file: {path} is empty")
    return token, str(path)


def resolve_token(config: Config, *, listen_host: str) -> tuple[str, str]:
    """The bearer token and where it came from; refuse a non-loopback address without a configured one."""
    configured = configured_token(config)
    if configured is not None:
        return configured
    if not is_loopback(listen_host):
        raise UsageError(
            f"refusing to listen on {listen_host} without a token: the API can start containers;"
            f" set ${TOKEN_ENV} or service.token_file, or listen on 127.0.0.1"
        )
    generated = private_dir(config.state_dir) / GENERATED_TOKEN
    token = secrets.token_urlsafe(32)
    _replace_private(generated, token + "\n")
    return token, f"{generated} (generated; set ${TOKEN_ENV} or service.token_file to choose one)"


def _replace_private(path: Path, text: str) -> None:
    """Put `text` in a new 0600 file renamed over `path`.

    Never rewritten in place: a descriptor someone opened on the old file (or a file planted wider, or as a
    link) must not read this token; the rename leaves them the old inode.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_generated_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / GENERATED_TOKEN).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def service_url(host: str, port: int, *, tls: bool = False) -> str:
    """The URL a client on this host reaches the listener at (a wildcard address as loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def write_service_file(state_dir: Path, *, url: str) -> Path:
    """Record this process as the service of `state_dir` (replaced atomically); return the file's path."""
    path = private_dir(state_dir) / SERVICE_FILE
    doc = {"pid": os.getpid(), "url": url, "started_at": dt.datetime.now(dt.UTC).isoformat()}
    _replace_private(path, json.dumps(doc) + "\n")  # 0600, like everything in the state folder
    return path


def remove_service_file(path: Path) -> None:
    """Remove the record, unless another service of the same state folder has replaced it since."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
