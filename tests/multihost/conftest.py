"""Fixtures for the multi-host tests: a real redis-server per test, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.multihost.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, require_binary("redis-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
