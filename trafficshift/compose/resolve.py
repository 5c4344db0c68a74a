"""Give each compose-backed app of a config its ContainerSpec, read through Compose; errors exit 2.

Apps that share the same files and project are read with one run of Compose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from trafficshift.compose.parse import Refused, parse_service
from trafficshift.compose.runner import normalise
from trafficshift.compose.spec import ContainerSpec
from trafficshift.errors import ComposeError, ComposeMissing, ConfigError
from trafficshift.models import AppSpec, Config

# Docker's own grace when a compose file sets no stop_grace_period.
DEFAULT_STOP_GRACE = 10.0


def resolve_compose(config: Config) -> Config:
    """The config with every compose-backed app's spec read; ConfigError names each problem and where."""
    groups: dict[tuple[tuple[Path, ...], str | None], list[AppSpec]] = {}
    for app in config.apps.values():
        if app.compose is not None:
            groups.setdefault((app.compose.files, app.compose.project), []).append(app)
    if not groups:
        return config
    apps = dict(config.apps)
    messages: list[str] = []
    for (files, project), members in groups.items():
        refs = [app.compose for app in members if app.compose is not None]
        try:
            doc = normalise(files=files, project=project, services=sorted({r.service for r in refs}))
        except ComposeMissing as exc:
            raise ConfigError([f"{refs[0].where}: {exc}"]) from None
        except ComposeError as exc:
            for app in members:
                messages += _located(app, exc.lines, said_by_compose=True)
            continue
        for app in members:
            try:
                apps[app.name] = resolve_app(app, doc)
            except Refused as exc:
                messages += _located(app, exc.problems, said_by_compose=False)
    if messages:
        raise ConfigError(messages)
    return dataclasses.replace(config, apps=apps)


def resolve_app(app: AppSpec, doc: Mapping[str, object]) -> AppSpec:
    """`app` with its service's spec from Compose's JSON `doc`; raise Refused for what cannot be applied."""
    assert app.compose is not None
    spec = parse_service(doc, service=app.compose.service, replicas=app.replicas)
    if missing := _missing_files(spec):
        raise Refused(missing)
    grace = DEFAULT_STOP_GRACE if spec.stop_grace_period is None else spec.stop_grace_period
    return dataclasses.replace(
        app,
        image=spec.image,
        container=spec,
        rollout=dataclasses.replace(app.rollout, stop_timeout=grace),
    )


def _missing_files(spec: ContainerSpec) -> list[str]:
    """Secrets and configs (binds that must exist): Compose only warns, Docker would fail every start."""
    return [
        f"services.{spec.service}: {m.source} does not exist (to be mounted at {m.target})"
        for m in spec.mounts
        if m.type == "bind" and not m.create_host_path and not Path(m.source).exists()
    ]


def _located(app: AppSpec, lines: tuple[str, ...], *, said_by_compose: bool) -> list[str]:
    """Prefix where the app names its compose files, and the files: `ts.yml:12: apps.web.compose: f.yml: `."""
    ref = app.compose
    assert ref is not None
    files = " + ".join(_display(f) for f in ref.files)
    if said_by_compose:
        return [f"{ref.where}: Compose refused {files}: {lines[0]}", *(f"  {line}" for line in lines[1:])]
    return [f"{ref.where}: {files}: {line}" for line in lines]


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def reread_app(config: Config, name: str) -> Config:
    """`config` with app `name` read through Compose again (its files as they are now), the rest as it was.

    `serve` reads every compose file when it starts; a promote it runs later must deploy the file as it is
    then. ConfigError (exit 2, HTTP 400) as at start-up when Compose refuses it now.
    """
    app = config.apps[name]
    if app.compose is None:
        return config
    fresh = resolve_compose(dataclasses.replace(config, apps={name: app}))
    return dataclasses.replace(config, apps={**config.apps, name: fresh.apps[name]})
