"""Fixtures: a Discord-shaped server per test, and clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.rest.burst import BUCKET, GLOBAL_LIMIT, BurstTarget, LocalTarget
from tests.rest.discord_server import TOKEN, DiscordServer
from workers.clock import REAL_CLOCK, Clock
from workers.rest.client import RestClient
from workers.rest.limiter import Coordinator, LocalCoordinator

MakeClient = Callable[..., Awaitable[RestClient]]
LONG_S = 3600.0


class InstantClock:
    """Real monotonic time, but short sleeps only yield and are recorded (for backoff);
    long ones (the stats report interval) really wait."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return REAL_CLOCK.monotonic()

    async def sleep(self, seconds: float) -> None:
        if seconds >= LONG_S:
            await REAL_CLOCK.sleep(seconds)
            return
        self.slept.append(round(seconds, 3))
        await REAL_CLOCK.sleep(0)


@pytest.fixture
async def discord() -> AsyncIterator[DiscordServer]:
    server = DiscordServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def make_client(discord: DiscordServer) -> AsyncIterator[MakeClient]:
    clients: list[RestClient] = []

    async def make(
        coordinator: Coordinator | None = None,
        *,
        token: str = TOKEN,
        clock: Clock = REAL_CLOCK,
        invalid_limit: int = 2000,
        global_limit: int = 50,
    ) -> RestClient:
        client = RestClient(
            token,
            discord.api_base,
            coordinator or LocalCoordinator(global_limit, clock),
            invalid_limit=invalid_limit,
            clock=clock,
            report_interval_s=LONG_S,
        )
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def burst_target() -> AsyncIterator[BurstTarget]:
    server = DiscordServer(GLOBAL_LIMIT, *BUCKET)
    await server.start()
    try:
        yield LocalTarget(server)
    finally:
        await server.stop()
