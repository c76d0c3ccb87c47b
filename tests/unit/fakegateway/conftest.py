from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from fakegateway import FakeConfig, FakeGateway
from tests.unit.fakegateway.client import OPEN_CLIENTS
from workers.clock import REAL_CLOCK, Clock

# Short intervals everywhere: the rules under test are the same at any scale.
FAST: dict[str, Any] = {
    "heartbeat_interval_s": 0.3,
    "heartbeat_timeout_slack": 0.2,
    "identify_window_s": 0.2,
    "invalid_session_delay_s": 0.05,
    "reconnect_close_after_s": 0.3,
    "close_timeout_s": 1.0,
}

Factory = Callable[..., Awaitable[FakeGateway]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[Factory]:
    started: list[FakeGateway] = []

    async def factory(clock: Clock = REAL_CLOCK, **overrides: Any) -> FakeGateway:
        fg = FakeGateway(FakeConfig(**(FAST | overrides)), clock=clock)
        await fg.start()
        started.append(fg)
        return fg

    yield factory
    for fg in started:
        await fg.stop()


@pytest.fixture
async def fg(make_gateway: Factory) -> FakeGateway:
    return await make_gateway(shards=2)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
        while OPEN_CLIENTS:
            await OPEN_CLIENTS.pop().close(1000)
