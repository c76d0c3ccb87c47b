"""The admin port's admission rules, against a real HttpApi on 127.0.0.1: idle and half-sent
requests are closed, a full port evicts idle connections rather than refusing a probe,
descriptors near the limit are kept for the workers, and refusals are logged at a bounded
rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from shardmgr import httpapi
from shardmgr.httpapi import HttpApi
from shardmgr.httpguard import ConnectionGuard
from shardmgr.logthrottle import LogThrottle
from tests.unit.shardmgr.test_httpapi import Metrics, Source
from workers.clock import FakeClock

SHORT_S = 0.3


class CommandSource(Source):
    """Its broadcast blocks until released: a request held inside a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def runs_shard(self, shard_id: int) -> bool:
        return True

    async def send_command(self, shard_id: int, op: int, d: bytes) -> bool:
        return True

    async def broadcast_command(self, op: int, d: bytes) -> tuple[int, int]:
        self.inside += 1
        self.entered.set()
        await self.release.wait()
        return 1, 1


async def _api(
    guard: ConnectionGuard, secret: str | None = None, source: Source | None = None
) -> HttpApi:
    api = HttpApi(source or CommandSource(), Metrics(), admin_secret=secret, guard=guard)
    await api.start("127.0.0.1", 0)
    return api


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


async def _open(
    api: HttpApi, first: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert api.address is not None
    reader, writer = await asyncio.open_connection(*api.address)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


LIVEZ = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


async def _admitted(api: HttpApi) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one answer and now idles (kept alive)."""
    reader, writer = await _open(api, LIVEZ)
    await reader.readuntil(b"alive\n")
    return reader, writer


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() -> None:
    api = await _api(ConnectionGuard(idle_timeout_s=SHORT_S))
    try:
        reader, writer = await _open(api)
        assert await _closed_within(reader, 3.0) >= SHORT_S * 0.9
        assert api.guard.timed_out == 1
        writer.close()
    finally:
        await api.stop()


async def test_a_connection_that_sends_half_its_headers_is_closed() -> None:
    api = await _api(ConnectionGuard(idle_timeout_s=SHORT_S))
    try:
        reader, writer = await _open(api, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await _closed_within(reader, 3.0)
        assert api.guard.timed_out == 1
        writer.close()
    finally:
        await api.stop()


async def test_an_idle_keep_alive_connection_is_closed_after_its_response() -> None:
    api = await _api(ConnectionGuard(idle_timeout_s=SHORT_S))
    try:
        reader, writer = await _admitted(api)
        await _closed_within(reader, 3.0)
        assert api.guard.timed_out == 1
        writer.close()
    finally:
        await api.stop()


async def test_a_full_port_evicts_the_oldest_idle_connection_so_livez_answers(
    client: aiohttp.ClientSession,
) -> None:
    api = await _api(ConnectionGuard(max_connections=4))
    held = [await _admitted(api) for _ in range(4)]
    try:
        async with client.get(api.url + "/livez") as resp:
            assert resp.status == 200
        assert api.guard.evicted == 1
        assert await _closed_within(held[0][0], 2.0) < 2.0
    finally:
        for _, writer in held:
            writer.close()
        await api.stop()


async def test_a_full_port_of_requests_inside_handlers_refuses_new_connections() -> None:
    source = CommandSource()
    api = await _api(ConnectionGuard(max_connections=2), "s3cret-admin", source)
    body = b'{"status": "idle"}'
    request = (
        b"POST /presence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-admin\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    held = []
    try:
        for _ in range(2):
            source.entered.clear()
            held.append(await _open(api, request))
            await asyncio.wait_for(source.entered.wait(), 2.0)
        reader, writer = await _open(api)
        await _closed_within(reader, 2.0)
        writer.close()
        assert (api.guard.refused, api.guard.evicted) == (1, 0)
    finally:
        source.release.set()
        for _, writer in held:
            writer.close()
        await api.stop()


async def test_descriptors_near_the_limit_are_kept_for_the_workers() -> None:
    fds = {"open": 10}
    guard = ConnectionGuard(
        fd_reserve=5, fd_recount_s=0.0, count_fds=lambda: fds["open"], limit_fds=lambda: 20
    )
    api = await _api(guard)
    try:
        first = await _admitted(api)
        fds["open"] = 15  # the reserve reached: only by evicting may a connection come in
        second = await _open(api, LIVEZ)
        assert b"200 OK" in await second[0].readuntil(b"alive\n")
        assert api.guard.evicted == 1
        await _closed_within(first[0], 2.0)
        for _, writer in (first, second):
            writer.close()
    finally:
        await api.stop()


async def test_a_body_that_never_arrives_is_answered_400_after_the_body_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(httpapi, "BODY_TIMEOUT_S", SHORT_S)
    api = await _api(ConnectionGuard(), secret="s3cret-admin")
    try:
        reader, writer = await _open(
            api,
            b"POST /presence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-admin\r\n"
            b"Content-Length: 50\r\n\r\n{",
        )
        async with asyncio.timeout(3.0):
            assert b" 400 " in await reader.readline()
        writer.close()
    finally:
        await api.stop()


async def test_a_log_throttle_logs_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    throttle = LogThrottle(logging.getLogger("t"), interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t"):
        logged = [throttle.warning("refused") for _ in range(50)]
        await clock.advance(10.0)
        logged.append(throttle.warning("refused"))
    assert logged.count(True) == 2
    assert len(caplog.records) == 2
    assert caplog.records[1].extra_fields["suppressed"] == 49  # type: ignore[attr-defined]


async def test_accept_errors_are_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    api = await _api(ConnectionGuard())
    loop = asyncio.get_running_loop()
    try:
        handler = loop.get_exception_handler()
        assert handler is not None
        with caplog.at_level(logging.WARNING):
            for _ in range(100):
                handler(
                    loop,
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                    },
                )
        accept_lines = [r for r in caplog.records if "cannot accept" in r.getMessage()]
        assert len(accept_lines) == 1
        assert not any(r.exc_info for r in caplog.records)
    finally:
        await api.stop()
    assert loop.get_exception_handler() is None
