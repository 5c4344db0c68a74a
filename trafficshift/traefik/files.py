"""Atomic writes (and reads) of the dynamic files that Traefik's file provider watches."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from trafficshift.models import Routing
from trafficshift.traefik.render import parse_dynamic, router_options

STAGING_DIR_NAME = ".trafficshift-staging"
# Should a temp file have to live inside the watched folder, its name must not look like config to Traefik.
_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".tmp"


def dynamic_path(*, dynamic_dir: Path, app: str) -> Path:
    """Return the path of the app's dynamic file: `<dynamic_dir>/<app>.yml`."""
    return dynamic_dir / f"{app}.yml"


def read_routing(*, dynamic_dir: Path, app: str) -> Routing | None:
    """What the app's file routes now (no routes when there is no file); None when it is not readable."""
    path = dynamic_path(dynamic_dir=dynamic_dir, app=app)
    try:
        return parse_dynamic(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Routing(app=app, routes=())
    except (OSError, ValueError):
        return None


def read_options(*, dynamic_dir: Path, app: str) -> Any:
    """The router options the app's file has now (render.router_options); None without a readable file."""
    path = dynamic_path(dynamic_dir=dynamic_dir, app=app)
    try:
        return router_options(yaml.safe_load(path.read_text(encoding="utf-8")), app)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def write_dynamic(*, dynamic_dir: Path, app: str, text: str | None) -> bool:
    """Replace the app's dynamic file atomically with `text`, or remove it when `text` is None.

    `app` is the file's stem: the app's name, or `names.mirror_file(app)` for its mirror file.

    The other half of invariant 3 (docs/ARCHITECTURE.md): Traefik sees the old file or the new one, whole.

    Returns whether anything changed: an identical file is left alone, so Traefik sees no event and the
    providers throttle is not spent on a no-op.
    """
    path = dynamic_path(dynamic_dir=dynamic_dir, app=app)
    if text is None:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(dynamic_dir)
        return True
    data = text.encode("utf-8")
    dynamic_dir.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    staging = _staging_dir(dynamic_dir)
    # The app's file has one writer at a time (its lock): a temp file of the app found here was left by
    # a writer that was killed mid-write.
    for leftover in staging.glob(f"{_TEMP_PREFIX}{app}.*{_TEMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=staging, prefix=f"{_TEMP_PREFIX}{app}.", suffix=_TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # Traefik reads files as they are, so make them readable like any config file, not mkstemp's 0600.
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dynamic_dir)
    return True


def _staging_dir(dynamic_dir: Path) -> Path:
    """Return the folder where temp files are staged.

    Each event in the watched folder (a temp file being created counts) can use up the slot of Traefik's
    providers throttle and delay the real change, so the temp file lives in a sibling folder. os.replace
    only works within one filesystem: when the sibling is on another device, stage inside after all, under
    a dot-name with a non-YAML suffix that the file provider ignores.
    """
    staging = dynamic_dir.resolve().parent / STAGING_DIR_NAME
    try:
        staging.mkdir(exist_ok=True)
        if staging.stat().st_dev == dynamic_dir.stat().st_dev:
            return staging
    except OSError:
        pass
    return dynamic_dir


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk: a crash must not revive the old file.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
