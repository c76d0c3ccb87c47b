"""The burst scenario of issue 14, against any Discord-like target: many workers sending
into the same channels, faster than the global limit.

``burst_target`` is this folder's Discord-shaped server; the same test runs against the
fake gateway by giving the fixture one with ``--rest-global-limit 20 --rest-message-bucket
5/0.5`` whose ``counters()`` reads ``GET /_fake/rest`` and ``messages()`` reads
``GET /_fake/messages?channel_id=``."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol

from shardmgr.restlimits import RestBroker
from tests.rest.discord_server import TOKEN, DiscordServer
from tests.rest.loopback import Loopback
from workers.rest.client import RestClient

GLOBAL_LIMIT = 20
BUCKET = (5, 1.0)  # 4 channels x 5/s = the global limit: both bind
WORKERS = 4
CHANNELS = ["101", "102", "103", "104"]
PER_CHANNEL = 4  # messages each worker sends into each channel


def handler_args(global_limit: int) -> tuple[str, ...]:
    """``shardmgr start`` flags for the burst in real processes: one shard per worker, each
    running ``tests.rest.burst_handler``."""
    return (
        "--shards-per-worker", "1",
        "--handler", "tests.rest.burst_handler:Bot",
        "--rest-global-limit", str(global_limit),
    )  # fmt: skip


class BurstTarget(Protocol):
    api_base: str
    token: str
    channels: list[str]

    async def counters(self) -> dict[str, Any]: ...
    async def messages(self, channel_id: str) -> list[dict[str, Any]]: ...


class LocalTarget:
    def __init__(self, server: DiscordServer, channels: list[str] | None = None) -> None:
        self.server = server
        self.api_base = server.api_base
        self.token = TOKEN
        self.channels = channels or CHANNELS

    async def counters(self) -> dict[str, Any]:
        return self.server.counters

    async def messages(self, channel_id: str) -> list[dict[str, Any]]:
        return self.server.messages[channel_id]


async def burst(
    target: BurstTarget, brokers: list[RestBroker], per_channel: int = PER_CHANNEL
) -> list[RestClient]:
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
                for i in range(per_channel)
                for w in range(WORKERS)
                for channel in target.channels
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return clients


async def assert_clean_and_in_order(target: BurstTarget, per_channel: int = PER_CHANNEL) -> None:
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
            w: list(range(per_channel)) for w in range(WORKERS)
        }
