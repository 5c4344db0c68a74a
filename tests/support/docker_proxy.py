"""A second Docker "host" for tests: a TCP listener on 127.0.0.1 that forwards to the local engine's socket.

The local engine reached through its unix socket and through this proxy is two Docker endpoints, as two
hosts of `hosts:` would be (containers tell them apart by their `trafficshift.host` label). `stop()` closes
the listener and cuts every connection through it (event streams, waits), as a host lost on the network;
the port then refuses connections.

    async with docker_proxy() as proxy:
        ... hosts: [{name: b, docker: proxy.url, address: 127.0.0.1}]
        await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

DOCKER_SOCKET = "/var/run/docker.sock"


def local_socket() -> str:
    """The local engine's unix socket (DOCKER_HOST's, when it names one)."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else DOCKER_SOCKET


class DockerProxy:
    """Forwards every connection to 127.0.0.1:<port> to the engine's unix socket, byte for byte."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_writer)
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(self._socket_path)
        except OSError:
            client_writer.transport.abort()
            self._discard(task, client_writer)
            return
        self._writers.add(engine_writer)
        try:
            await asyncio.gather(_pump(client_reader, engine_writer), _pump(engine_reader, client_writer))
        finally:
            for writer in (client_writer, engine_writer):
                writer.transport.abort()
                self._writers.discard(writer)
            self._discard(task, client_writer)

    def _discard(self, task: asyncio.Task[None], writer: asyncio.StreamWriter) -> None:
        self._tasks.discard(task)
        self._writers.discard(writer)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        with contextlib.suppress(OSError):
            writer.write_eof()


@contextlib.asynccontextmanager
async def docker_proxy() -> AsyncIterator[DockerProxy]:
    proxy = DockerProxy(local_socket())
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
