"""Run the real `trafficshift` command (a subprocess, as users do) without blocking the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.traefik import TraefikProc

BIN = Path(sys.executable).parent / "trafficshift"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        """The JSON events a `--json` rollout printed, one per line."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


async def start(*args: str, config: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start the command; `env` adds to (or, with an empty value, removes from) this process's environment."""
    environment = {**os.environ, **(env or {})}
    environment = {key: value for key, value in environment.items() if value != ""}
    return await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )


async def finish(proc: asyncio.subprocess.Process, *, within: float = 120) -> Result:
    async with asyncio.timeout(within):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def wait_for_line(proc: asyncio.subprocess.Process, needle: bytes, *, within: float = 60) -> None:
    """Read the process's stdout until a line contains `needle` (e.g. a step's "confirmed" event)."""
    assert proc.stdout is not None
    async with asyncio.timeout(within):
        while line := await proc.stdout.readline():
            if needle in line:
                return
    raise AssertionError(f"{needle!r} never printed")


async def run(*args: str, config: Path, within: float = 120, env: dict[str, str] | None = None) -> Result:
    return await finish(await start(*args, config=config, env=env), within=within)


async def run_json(*args: str, config: Path, env: dict[str, str] | None = None) -> Any:
    """Run a data command (`status`, `history`) with `--json`; it must succeed: its output, decoded."""
    result = await run(*args, "--json", config=config, env=env)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def rollout_policy(**overrides: Any) -> dict[str, Any]:
    """An app's `rollout:` section with the tests' fast timings; `overrides` replace single keys."""
    return {"steps": [10, 50, 100], "pause": "1s", "drain": "1s", "stop_timeout": "2s"} | overrides


def app_config(
    tmp_path: Path,
    traefik: TraefikProc,
    app: str,
    *,
    image: str,
    metrics: bool = False,
    extra: dict[str, Any] | None = None,
    **spec: Any,
) -> Path:
    """`<tmp_path>/trafficshift.yml` with one app on `image`; `spec` keys replace write_config's defaults."""
    return write_config(
        tmp_path / "trafficshift.yml",
        traefik=traefik,
        apps={app: {"image": image, **spec}},
        metrics=metrics,
        extra=extra,
    )


async def first_deploy(
    tmp_path: Path, traefik: TraefikProc, app: str, *, image: str, metrics: bool = False, **spec: Any
) -> Path:
    """Write app_config and run the app's first deploy (`promote`: blue, 100%), which must succeed."""
    config = app_config(tmp_path, traefik, app, image=image, metrics=metrics, **spec)
    first = await run("promote", app, config=config)
    assert first.code == 0, first.stderr
    return config


def write_config(
    path: Path,
    *,
    traefik: TraefikProc | None,
    apps: dict[str, dict[str, Any]],
    dynamic_dir: Path | None = None,
    metrics: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A trafficshift.yml for `apps` in front of the test's Traefik, with fast test timings as defaults.

    `metrics` sets traefik.metrics_url (needed by `analysis`); `extra` adds top-level keys (`webhooks`).
    """
    defaults: dict[str, Any] = {
        "port": 8080,
        "publish": "127.0.0.1",
        "health": {"path": "/healthz", "interval": "200ms", "healthy_threshold": 2, "start_timeout": "20s"},
        "rollout": rollout_policy(),
    }
    section: dict[str, Any] = {
        "dynamic_dir": str(dynamic_dir or (traefik.dynamic_dir if traefik else path.parent))
    }
    if traefik is not None:
        section["api_url"] = traefik.api_url
        section["entrypoint_url"] = traefik.web_url
        if metrics:
            section["metrics_url"] = traefik.metrics_url
    doc = {
        "traefik": section,
        "state_dir": str(path.parent / "state"),
        "apps": {
            name: {**defaults, "rule": f"Host(`{name}.localhost`)", **spec} for name, spec in apps.items()
        },
    }
    doc.update(extra or {})
    if any("network" in spec for spec in apps.values()):
        for name, spec in apps.items():
            if "network" in spec:
                doc["apps"][name].pop("publish", None)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
