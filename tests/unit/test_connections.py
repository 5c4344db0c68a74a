"""The API's connection guard over real loopback sockets (aiohttp's low-level server behind it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from trafficshift.service.connections import (
    ACCEPT_ERROR,
    ConnectionGuard,
    Throttled,
    connection_cap,
    install_accept_error_log,
    raise_open_files_limit,
)

Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttled_logs_once_per_interval_with_the_count_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logs = Throttled(logging.getLogger("test.throttled"), every=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for second in (0.0, 1.0, 2.0, 9.9, 10.0, 15.0, 30.0):
            clock.now = second
            logs.warning("k", "closed %d", 7)
        logs.warning("other", "another kind")  # counted apart
    assert [r.getMessage() for r in caplog.records] == [
        "closed 7",
        "closed 7 (3 more like it since the last such message)",
        "closed 7 (1 more like it since the last such message)",
        "another kind",
    ]


@pytest.mark.parametrize(
    ("configured", "open_files", "cap"),
    [(512, 20000, 512), (512, 1024, 480), (512, 256, 96), (10, 256, 10), (512, 64, 1)],
)
def test_the_cap_leaves_the_service_half_its_descriptors(configured: int, open_files: int, cap: int) -> None:
    assert connection_cap(configured, open_files=open_files) == cap


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 128), hard))
        assert raise_open_files_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
async def served() -> AsyncIterator[tuple[ConnectionGuard, int]]:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(text="ok")

    guard = ConnectionGuard(limit=3, header_timeout=0.5)
    server = web.Server(handler)
    listener = await asyncio.get_running_loop().create_server(guard.factory(server), "127.0.0.1", 0)
    yield guard, listener.sockets[0].getsockname()[1]
    listener.close()
    await server.shutdown(0.1)


async def _connect(port: int, head: bytes) -> Socket:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def _eof(socket: Socket, within: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(within):
            return await socket[0].read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def _settled(guard: ConnectionGuard, open_count: int) -> None:
    async with asyncio.timeout(2):
        while guard.open != open_count:  # noqa: ASYNC110 (the guard offers no event)
            await asyncio.sleep(0.01)


async def test_a_head_that_never_completes_is_cut_after_the_header_timeout(
    served: tuple[ConnectionGuard, int],
) -> None:
    guard, port = served
    half = await _connect(port, b"GET / HTTP/1.1\r\nHost:")
    byte_by_byte = await _connect(port, b"G")  # slowloris: a byte now and then never buys more time
    for char in b"ET / HTTP/1.1\r\n":
        byte_by_byte[1].write(bytes([char]))
        await asyncio.sleep(0.02)
    assert not await _eof(half, within=0.1)
    assert await _eof(half, within=1.0)
    assert await _eof(byte_by_byte, within=0.5)
    await _settled(guard, 0)
    half[1].close()
    byte_by_byte[1].close()


async def test_a_request_in_pieces_is_answered_and_its_connection_kept(
    served: tuple[ConnectionGuard, int],
) -> None:
    guard, port = served
    reader, writer = await _connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(0.1)
    writer.write(b"\r\n")  # the empty line that ends the head, in its own packet
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.8)  # past the header timeout: the head came in time, keep-alive applies now
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"ok" in await reader.readuntil(b"ok")
    assert (guard.open, guard.waiting) == (1, 0)
    writer.close()


async def test_at_the_cap_the_oldest_half_open_connection_makes_room(
    served: tuple[ConnectionGuard, int],
) -> None:
    guard, port = served
    busy = await _connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a request: never evicted
    await busy[0].readuntil(b"ok")
    first = await _connect(port, b"GET / HT")
    second = await _connect(port, b"GET / HT")
    await _settled(guard, 3)
    third = await _connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"ok" in await third[0].readuntil(b"ok")
    assert await _eof(first, within=0.3)
    assert not await _eof(second, within=0.1)
    assert not await _eof(busy, within=0.1)
    # Every place taken by a connection that sent its request: a new one is closed at once, unanswered.
    second[1].write(b"TP/1.1\r\nHost: x\r\n\r\n")
    await second[0].readuntil(b"ok")
    refused = await _connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await refused[0].read() == b""
    assert (guard.open, guard.waiting) == (3, 0)
    for _, writer in (busy, first, second, third, refused):
        writer.close()
    await _settled(guard, 0)


async def test_accept_errors_are_logged_throttled_and_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _, context: seen.append(str(context["message"])))
    restore = install_accept_error_log(loop, Throttled(logging.getLogger("test.accept"), every=60.0))
    with caplog.at_level(logging.WARNING, logger="test.accept"):
        for _ in range(5):
            loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": OSError(24, "Too many")})
        loop.call_exception_handler({"message": "something else"})
    restore()
    loop.call_exception_handler({"message": "after"})
    assert [r.getMessage() for r in caplog.records] == [
        "API: cannot accept connections: [Errno 24] Too many; trying again"
    ]
    assert seen == ["something else", "after"]
    loop.set_exception_handler(None)
