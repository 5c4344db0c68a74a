"""`trafficshift init`: the starter files of a project, written beside its compose file, never over one.

The Traefik files are the repository's own `docker-compose.traefik.yml` and `traefik/traefik.yml`, copied as
they are (the wheel carries them as package data, see pyproject.toml), so that what `init` writes is what
the README and the tests run. The apps come from Compose's own reading of the compose file
(`compose/runner.normalise`: `.env`, interpolation and `extends` as everywhere else).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

import trafficshift
from trafficshift.compose.runner import normalise
from trafficshift.config import DEFAULT_CONFIG, load_config
from trafficshift.errors import ConfigError, UsageError

# The files copied from the package, as paths relative to the project folder (and to the repository root).
STARTER_FILES = ("docker-compose.traefik.yml", "traefik/traefik.yml")
# Where the wheel carries them (pyproject.toml's force-include maps each one here).
PACKAGE_DATA = "starter"
DYNAMIC_DIR = "traefik/dynamic"
# What docker-compose.traefik.yml gives: the network Traefik is on, and its API and metrics on loopback.
NETWORK = "traefik"
API_URL = "http://127.0.0.1:8080"
METRICS_URL = "http://127.0.0.1:8082/metrics"
# Compose's own lookup order for a project's file; the override file is merged only without -f, so the
# app lists it itself when it is there.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = tuple(name.replace(".y", ".override.y") for name in COMPOSE_FILES)

_APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_PLAIN = re.compile(r"[A-Za-z_./][A-Za-z0-9_./-]*")


@dataclass(frozen=True)
class ProposedApp:
    """One app `init` writes: the compose service it takes its spec from, and the port Traefik reaches."""

    name: str
    service: str
    port: int


@dataclass(frozen=True)
class Proposal:
    apps: tuple[ProposedApp, ...]
    notes: tuple[str, ...]  # services left out and keys `check` will refuse, each saying why


def starter_source(relative: str) -> Path:
    """The packaged copy of a starter file: inside the installed package, else at a source checkout's root."""
    package_dir = Path(trafficshift.__file__).parent
    packaged = package_dir / PACKAGE_DATA / relative
    return packaged if packaged.is_file() else package_dir.parent / relative


def find_compose_files(folder: Path) -> list[str]:
    """The compose file Compose itself would pick in `folder` (and its override file), as names; or none."""
    main = next((name for name in COMPOSE_FILES if (folder / name).is_file()), None)
    if main is None:
        return []
    override = next((name for name in OVERRIDE_FILES if (folder / name).is_file()), None)
    return [main, override] if override else [main]


def app_name(service: str) -> str | None:
    """A valid app name (`^[a-z][a-z0-9-]{0,39}$`) for a compose service name, or None when none is left."""
    name = re.sub(r"[^a-z0-9-]+", "-", service.lower())
    name = name.lstrip("-0123456789")[:40].rstrip("-")
    return name if _APP_NAME.fullmatch(name) else None


def _first_port(expose: Any, ports: Any) -> int | None:
    """The container port Traefik should reach: the first of `expose` (`8080`, `8080/tcp`, `9000-9001`),
    else the target of the first TCP entry of `ports`."""
    for entry in expose or []:
        match = re.match(r"(\d+)", str(entry))
        if match and "/udp" not in str(entry):
            return int(match[1])
    for entry in ports or []:
        if isinstance(entry, Mapping) and entry.get("protocol", "tcp") == "tcp" and entry.get("target"):
            return int(entry["target"])
    return None


def propose(services: Mapping[str, Any], *, compose_file: str) -> Proposal:
    """The apps for Compose's normalised services: one per service with a port and no `container_name`."""
    apps: list[ProposedApp] = []
    notes: list[str] = []
    taken: set[str] = set()
    for service, body in services.items():
        body = body if isinstance(body, Mapping) else {}
        where = f"{compose_file}: services.{service}"
        port = _first_port(body.get("expose"), body.get("ports"))
        if port is None:
            notes.append(f"{where}: left out: it has no port (`expose` or `ports`) for Traefik to reach")
            continue
        if body.get("container_name"):
            notes.append(
                f"{where}: left out: it has a container_name, and two colours cannot share one name"
                " (remove it to deploy the service with trafficshift)"
            )
            continue
        name = app_name(service)
        if name is None:
            notes.append(f"{where}: left out: no app name can be made of its name")
            continue
        unique, n = name, 2
        while unique in taken:
            unique = f"{name[: 40 - len(str(n)) - 1]}-{n}"
            n += 1
        taken.add(unique)
        apps.append(ProposedApp(name=unique, service=service, port=port))
        if body.get("ports"):
            notes.append(
                f"{where}.ports: remove it before `trafficshift check`: trafficshift does not let"
                f" Compose publish the app (Traefik reaches it on the `{NETWORK}` network)"
            )
    return Proposal(apps=tuple(apps), notes=tuple(notes))


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when YAML reads it back as that string, else JSON-quoted."""
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


_HEADER = f"""\
# Written by `trafficshift init`. Every key: README, "Config reference"; `trafficshift check` validates it.
traefik:
  dynamic_dir: ./{DYNAMIC_DIR}          # docker-compose.traefik.yml mounts ./traefik at /etc/traefik
  api_url: {API_URL}         # each weight change is confirmed through Traefik's API
  metrics_url: {METRICS_URL}   # Traefik's metrics: `analysis` of a rollout
"""

_EXAMPLE = """\
# No app yet. An app from an image: replace `apps: {}` with these lines, uncommented.
# apps:
#   web:
#     image: example/web:1.0             # the first deploy; `promote web --image ...` for the next ones
#     port: 8080                         # the port it listens on inside the container
#     rule: "Host(`web.localhost`)"      # Traefik router rule
#     network: traefik                   # docker-compose.traefik.yml's network: Traefik reaches it there
#     health: {path: /healthz}           # readiness: GET must answer 2xx (else: the image's HEALTHCHECK)
#     rollout: {steps: [10, 50, 100], pause: 30s}
apps: {}
"""


def render_config(apps: Sequence[ProposedApp], *, compose_files: Sequence[str]) -> str:
    """The text of trafficshift.yml: the Traefik section, then the apps, or a commented example app."""
    if not apps:
        return _HEADER + _EXAMPLE
    files = [f"./{name}" for name in compose_files]
    file_value = _scalar(files[0]) if len(files) == 1 else f"[{', '.join(_scalar(f) for f in files)}]"
    lines = [_HEADER + "apps:"]
    for app in apps:
        lines += [
            f"  {app.name}:",
            f"    compose: {{file: {file_value}, service: {_scalar(app.service)}}}",
            f"    port: {app.port}",
            f'    rule: "Host(`{app.name}.localhost`)"',
            f"    network: {NETWORK}                  # docker-compose.traefik.yml's network",
            "    # health: {path: /healthz}        # readiness; else its healthcheck, else running",
            "    # rollout: {steps: [10, 50, 100], pause: 30s}",
        ]
    return "\n".join(lines) + "\n"


def _write_new(path: Path, data: bytes) -> bool:
    """Create `path` with `data` unless it exists (never overwritten, also in a race): whether it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("xb") as handle:
            handle.write(data)
    except FileExistsError:
        return False
    return True


def init_project(folder: Path, *, out: TextIO) -> int:
    """Write the starter files into `folder`, keeping any that exist; print what it did and what next."""
    if not folder.is_dir():
        raise UsageError(f"init: {folder} is not a folder")
    compose_files = find_compose_files(folder)
    proposal = Proposal(apps=(), notes=())
    if compose_files:
        model = normalise(files=[folder / name for name in compose_files], project=None, services=())
        services = model.get("services") or {}
        proposal = propose(services, compose_file=compose_files[0])
    config_text = render_config(proposal.apps, compose_files=compose_files)

    written: list[str] = []
    kept: list[str] = []
    outputs = [(DEFAULT_CONFIG, config_text.encode("utf-8"))]
    outputs += [(name, starter_source(name).read_bytes()) for name in STARTER_FILES]
    for name, data in outputs:
        (written if _write_new(folder / name, data) else kept).append(name)
    dynamic = folder / DYNAMIC_DIR
    (kept if dynamic.is_dir() else written).append(DYNAMIC_DIR + "/")
    dynamic.mkdir(parents=True, exist_ok=True)

    for name in written:
        print(f"wrote {name}", file=out)
    for name in kept:
        print(f"kept  {name} (it exists; not overwritten)", file=out)
    if not compose_files:
        print("no compose file here: trafficshift.yml has a commented example app to fill in", file=out)
    for note in proposal.notes:
        print(f"note: {note}", file=out)
    if DEFAULT_CONFIG in written and proposal.apps:
        _report_check(folder / DEFAULT_CONFIG, out=out)
    _print_next(folder, proposal.apps, out=out)
    return 0


def _report_check(config: Path, *, out: TextIO) -> None:
    """What `trafficshift check` will say of the new config, so that `init` is not the last to know."""
    try:
        load_config(config)
    except ConfigError as exc:
        print("`trafficshift check` refuses it as it is; to fix:", file=out)
        for line in exc.messages:
            print(f"  {line}", file=out)


def _print_next(folder: Path, apps: Sequence[ProposedApp], *, out: TextIO) -> None:
    here = folder.resolve() == Path.cwd().resolve()
    traefik_file = "docker-compose.traefik.yml" if here else str(folder / "docker-compose.traefik.yml")
    config = "" if here else f" -c {folder / DEFAULT_CONFIG}"
    target = apps[0].name if len(apps) == 1 else "--all" if apps else "web"
    print("next:", file=out)
    if not apps:
        print(f"  (edit {folder / DEFAULT_CONFIG}: an app)", file=out)
    print(f"  docker compose -f {traefik_file} up -d   # Traefik, watching {DYNAMIC_DIR}/", file=out)
    print(f"  trafficshift{config} promote {target}   # the first deploy", file=out)
