"""The registry credentials Docker itself would use for a pull, looked up as the Docker CLI looks them up.

`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: a credential helper named for the registry
(`credHelpers`), else the default one (`credsStore`), else the file's own `auths` entry (docker/cli,
cli/config/configfile/file.go `GetCredentialsStore`). A helper is asked with `docker-credential-<name> get`
and the server address on stdin, and answers `{"ServerURL", "Username", "Secret"}` (a `<token>` username
makes the secret an identity token). Secrets never reach a message or a log line; what was found, and where,
does (`Lookup.note`), so that a refused pull can say whose credentials were offered.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Docker Hub's key in config.json and for helpers (docker/cli registry.IndexServer).
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB = "docker.io"
HELPER_TIMEOUT = 30.0
# What a helper prints when it has nothing for the server (docker-credential-helpers' ErrCredentialsNotFound).
_NOT_FOUND = "credentials not found in native keychain"
_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """What Docker sends a registry: a user and password, or an identity token."""

    server: str  # the server address, as config.json keys it
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def auth(self) -> dict[str, str]:
        """The JSON of Docker's `X-Registry-Auth` header (base64-encoded by the client)."""
        if self.identity_token:
            return {"identitytoken": self.identity_token, "serveraddress": self.server}
        return {"username": self.username, "password": self.password, "serveraddress": self.server}


@dataclass(frozen=True)
class Lookup:
    """The credentials for one registry, if any, and a note for people on where they came from."""

    registry: str
    credentials: Credentials | None
    note: str


@dataclass(frozen=True)
class DockerConfig:
    """The parts of config.json that say where credentials are."""

    auths: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    creds_store: str = ""
    cred_helpers: Mapping[str, str] = field(default_factory=dict)


# A helper run: (program, server address) -> (exit code, stdout, stderr). Tests pass their own.
HelperRun = Callable[[str, str], tuple[int, str, str]]


# ------------------------------------------------------------ pure


def registry_of(image: str) -> str:
    """The registry an image reference is pulled from (`docker.io` when it names none), as Docker decides.

    The first path component is a registry when it has a dot or a port, or is `localhost`
    (distribution/reference `splitDockerDomain`).
    """
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first == "index.docker.io" else first
    return DOCKER_HUB


def qualified(image: str) -> str:
    """The reference with its registry spelled out (`busybox` -> `docker.io/library/busybox`): Docker names
    the pulled image as it would the short one."""
    if registry_of(image) != DOCKER_HUB or image.startswith(f"{DOCKER_HUB}/"):
        return image
    path = image.removeprefix("index.docker.io/")
    return f"{DOCKER_HUB}/{path if '/' in path.split(':')[0].split('@')[0] else 'library/' + path}"


def server_key(registry: str) -> str:
    """The key Docker files a registry's credentials under (Docker Hub has its historic URL)."""
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def parse_config(text: str) -> DockerConfig:
    """config.json's credential settings; ValueError when it is not the JSON object Docker writes."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    auths, helpers, store = doc.get("auths") or {}, doc.get("credHelpers") or {}, doc.get("credsStore") or ""
    if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
        raise ValueError("auths: expected an object of objects")
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise ValueError("credHelpers: expected an object of helper names")
    if not isinstance(store, str):
        raise ValueError("credsStore: expected a helper name")
    return DockerConfig(auths=auths, creds_store=store, cred_helpers=helpers)


def hostname(key: str) -> str:
    """A config.json key as a host: `https://reg.example/v1/` -> `reg.example` (ConvertToHostname)."""
    for scheme in ("http://", "https://"):
        key = key.removeprefix(scheme)
    return key.split("/", 1)[0]


def file_credentials(config: DockerConfig, key: str) -> Credentials | None:
    """The `auths` entry for `key` (also one written as a URL of the same host), decoded; None without one."""
    entry = config.auths.get(key)
    if entry is None:
        entry = next((v for k, v in config.auths.items() if hostname(k) == hostname(key)), None)
    if entry is None:
        return None
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if encoded := entry.get("auth"):
        try:
            username, _, password = base64.b64decode(str(encoded), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"auths.{key}.auth: not base64 of user:password") from None
    token = str(entry.get("identitytoken") or "")
    if not (username or password or token):
        return None  # a marker Docker writes beside a credsStore: the store has them
    return Credentials(server=key, username=username, password=password, identity_token=token)


def helper_answer(key: str, code: int, stdout: str, stderr: str, *, program: str) -> Credentials | None:
    """A helper's answer: its credentials, None when it has none for `key`; ValueError when it failed."""
    if code != 0:
        said = (stdout.strip() or stderr.strip() or f"exit {code}").splitlines()[0]
        if _NOT_FOUND in said:
            return None
        raise ValueError(f"{program} get failed: {said}")
    try:
        doc = json.loads(stdout)
        username, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    except (ValueError, AttributeError):
        raise ValueError(f"{program} get printed something that is not its JSON answer") from None
    if not secret:
        return None
    if username == _TOKEN_USER:
        return Credentials(server=key, identity_token=secret)
    return Credentials(server=key, username=username, password=secret)


# ------------------------------------------------------------ I/O


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where Docker reads its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    env = os.environ if environ is None else environ
    folder = env.get("DOCKER_CONFIG") or str(Path(env.get("HOME") or Path.home()) / ".docker")
    return Path(folder) / "config.json"


def run_helper(program: str, server: str) -> tuple[int, str, str]:
    """Run `program get` with `server` on stdin (the helper protocol)."""
    try:
        done = subprocess.run(
            [program, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return 127, "", f"{program} is not on PATH"
    except subprocess.TimeoutExpired:
        return 124, "", f"{program} did not answer within {HELPER_TIMEOUT:g}s"
    except OSError as exc:
        return 126, "", f"cannot run {program}: {exc.strerror or exc}"
    return done.returncode, done.stdout, done.stderr


def lookup(image: str, *, path: Path | None = None, helper: HelperRun = run_helper) -> Lookup:
    """The credentials Docker would use to pull `image`; never raises (a problem becomes the note)."""
    registry = registry_of(image)
    key = server_key(registry)
    path = path or config_path()
    try:
        config = parse_config(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Lookup(registry, None, f"no credentials: {path} does not exist")
    except (OSError, ValueError) as exc:
        return Lookup(registry, None, f"no credentials: cannot read {path}: {exc}")
    name = config.cred_helpers.get(key) or config.cred_helpers.get(registry) or config.creds_store
    try:
        if name:
            program = f"docker-credential-{name}"
            found = helper_answer(key, *helper(program, key), program=program)
            where = f"from {program}"
        else:
            found, where = file_credentials(config, key), f"from {path}"
    except ValueError as exc:
        return Lookup(registry, None, f"no credentials: {exc}")
    if found is None:
        return Lookup(registry, None, f"no credentials for {registry} {where.replace('from', 'in', 1)}")
    return Lookup(registry, found, f"credentials for {registry} {where}")
