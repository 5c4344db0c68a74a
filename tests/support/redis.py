"""A real Redis (Debian's redis-server, installed by .ci/run) on a loopback port, for the Redis backend."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.traefik import free_port

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class RedisProc:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is missing: `apt-get install redis-server` (.ci/run installs it)")
    return found


@contextlib.asynccontextmanager
async def run_redis(work_dir: Path, *, notifications: str = "KEA") -> AsyncIterator[RedisProc]:
    """Run redis-server (no persistence, `notify-keyspace-events` as given) until the block ends."""
    proc = _start(work_dir, notifications=notifications)
    try:
        await _wait_started(proc)
        yield proc
    finally:
        proc.process.terminate()
        await asyncio.to_thread(proc.process.wait)


def _start(work_dir: Path, *, notifications: str) -> RedisProc:
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(work_dir), "--notify-keyspace-events", notifications]
    with (work_dir / "redis.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return RedisProc(port=port, process=process)


async def _wait_started(proc: RedisProc) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.process.returncode} at start")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await reader.readline()
            writer.close()
            if answer.startswith(b"+PONG"):
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT}s")
