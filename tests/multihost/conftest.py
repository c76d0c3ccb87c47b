"""Fixtures for the multi-host tests: a real redis-server per test, on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_binary
from tests.multihost.redis_server import RedisServer
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, require_binary("redis-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A redis.asyncio client of ``redis_server``, to look at what the code under test did."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def inspect(redis_client: Any) -> Any:
    """The same client under the name the identify and ownership tests use."""
    return redis_client


@pytest.fixture
async def procs() -> AsyncIterator[list[FakeGatewayProc | SupervisorProc]]:
    """Every process a test starts; stopped in reverse order whatever happens."""
    started: list[FakeGatewayProc | SupervisorProc] = []
    yield started
    for proc in reversed(started):
        await proc.close()
