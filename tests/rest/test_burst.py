"""Many workers (and hosts) sending into the same channels, faster than the global limit:
the supervisor's ledger keeps every bucket and the global limit, and order per channel.

``burst_target`` is this folder's Discord-shaped server; the same test runs against the
fake gateway by giving the fixture one with ``--rest-global-limit 20 --rest-message-bucket
5/0.5`` whose ``counters()`` reads ``GET /_fake/rest`` and ``messages()`` reads
``GET /_fake/messages?channel_id=``."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from shardmgr.restlimits import LocalGlobal, RestBroker
from tests.rest.discord_server import TOKEN, DiscordServer
from tests.rest.loopback import Loopback
from workers.rest.client import RestClient

GLOBAL_LIMIT = 20
BUCKET = (5, 0.5)
WORKERS = 4
CHANNELS = ["101", "102", "103", "104"]
PER_CHANNEL = 4  # messages each worker sends into each channel


class BurstTarget(Protocol):
    api_base: str
    token: str
    channels: list[str]

    async def counters(self) -> dict[str, Any]: ...
    async def messages(self, channel_id: str) -> list[dict[str, Any]]: ...


class LocalTarget:
    def __init__(self, server: DiscordServer) -> None:
        self.server = server
        self.api_base = server.api_base
        self.token = TOKEN
        self.channels = CHANNELS

    async def counters(self) -> dict[str, Any]:
        return self.server.counters

    async def messages(self, channel_id: str) -> list[dict[str, Any]]:
        return self.server.messages[channel_id]


@pytest.fixture
async def burst_target() -> AsyncIterator[BurstTarget]:
    server = DiscordServer(GLOBAL_LIMIT, *BUCKET)
    await server.start()
    try:
        yield LocalTarget(server)
    finally:
        await server.stop()


async def burst(target: BurstTarget, brokers: list[RestBroker]) -> list[RestClient]:
    """WORKERS workers spread over the brokers, each sending everything at once."""
    clients = [
        RestClient(
            target.token, target.api_base, Loopback(brokers[w % len(brokers)], w).coordinator
        )
        for w in range(WORKERS)
    ]

    async def send(w: int, channel: str, i: int) -> None:
        await clients[w].request(
            "POST",
            "/channels/{channel_id}/messages",
            channel_id=channel,
            json={"content": f"{w}:{i}"},
        )

    try:
        await asyncio.gather(
            *(
                send(w, channel, i)
                for i in range(PER_CHANNEL)
                for w in range(WORKERS)
                for channel in target.channels
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return clients


async def assert_clean_and_in_order(target: BurstTarget) -> None:
    counters = await target.counters()
    assert counters["limit_violations"] == 0
    assert counters["global_violations"] == 0
    assert counters["rate_limited"] == 0
    for channel in target.channels:
        seen: dict[str, list[int]] = collections.defaultdict(list)
        for message in await target.messages(channel):
            worker, i = message["content"].split(":")
            seen[worker].append(int(i))
        assert {w: seen[str(w)] for w in range(WORKERS)} == {
            w: list(range(PER_CHANNEL)) for w in range(WORKERS)
        }


async def test_four_workers_burst_into_four_channels_without_a_violation(
    burst_target: BurstTarget,
) -> None:
    broker = RestBroker(LocalGlobal(GLOBAL_LIMIT))
    try:
        await burst(burst_target, [broker])
    finally:
        await broker.aclose()
    await assert_clean_and_in_order(burst_target)


async def test_key_ownership_moves_between_workers_with_its_bucket_state(
    burst_target: BurstTarget,
) -> None:
    broker = RestBroker(LocalGlobal(GLOBAL_LIMIT))
    a, b = (
        RestClient(burst_target.token, burst_target.api_base, Loopback(broker, w).coordinator)
        for w in (1, 2)
    )
    try:
        # The second worker's first request must know what the first one spent.
        for n in range(BUCKET[0]):
            await a.request(
                "POST",
                "/channels/{channel_id}/messages",
                channel_id="101",
                json={"content": f"a{n}"},
            )
        await b.request(
            "POST", "/channels/{channel_id}/messages", channel_id="101", json={"content": "b"}
        )
        assert b.stats.waits == 1
    finally:
        await a.aclose()
        await b.aclose()
        await broker.aclose()
    assert (await burst_target.counters())["limit_violations"] == 0
