"""Fixtures for the multi-host tests: a real redis-server per test, on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.multihost.redis_server import RedisServer
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: run `make system-deps`")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain client of the test's Redis, for looking at keys behind the code's back."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def procs() -> AsyncIterator[list[FakeGatewayProc | SupervisorProc]]:
    """Every process a test starts; stopped in reverse order whatever happens."""
    started: list[FakeGatewayProc | SupervisorProc] = []
    yield started
    for proc in reversed(started):
        await proc.close()
