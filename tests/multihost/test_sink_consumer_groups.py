"""The sink never trims what a consumer group has not acknowledged: with a group that stops
reading, the writer waits (backpressure) instead, and once the group catches up every
(session, shard) it read is contiguous."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shardmgr.sinks.redis_stream import RedisStreamSink
from shardmgr.sinks.stream_script import full_key
from tests.multihost.redis_server import RedisServer
from tests.multihost.sink_helpers import events_for, sink_url

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


async def read_group(client: Any, count: int, ack: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Read ``count`` new entries as group ``bot``; acknowledge the first ``ack`` of them."""
    reply = await client.xreadgroup("bot", "c1", {"events": ">"}, count=count, block=50)
    entries = reply[0][1] if reply else []
    if ack and entries:
        await client.xack("events", "bot", *[entry_id for entry_id, _ in entries[:ack]])
    return list(entries)


def seqs(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[bytes, int, int]]:
    return [(f[b"session"], int(f[b"shard"]), int(f[b"seq"])) for _, f in entries]


async def test_unacknowledged_entries_are_kept_and_the_writer_waits_until_the_group_acks(
    redis_server: RedisServer, redis_client: Any
) -> None:
    client = redis_client
    await client.xgroup_create("events", "bot", id="0", mkstream=True)
    refused = asyncio.Event()
    sink = RedisStreamSink(
        sink_url(redis_server, maxlen=300),
        retry_cap_s=0.05,
        on_backpressure=lambda full: refused.set() if full else None,
    )
    blocked: asyncio.Task[None] | None = None
    try:
        await sink.handle_batch(events_for(0, 1, 200))
        got = await read_group(client, 100, ack=50)  # reads 100, acknowledges seq 1-50
        await sink.handle_batch(events_for(0, 201, 100))  # fills the stream to maxlen
        blocked = asyncio.create_task(sink.handle_batch(events_for(0, 301, 100)))
        await asyncio.wait_for(refused.wait(), timeout=10)
        assert not blocked.done() and sink.backpressure
        assert await client.exists(full_key("events"))
        # Only what the group acknowledged went: seq 51 (pending) onwards is all there.
        kept = [int(f[b"seq"]) for _, f in await client.xrange("events")]
        assert kept == list(range(51, 301))

        # The group catches up: acknowledges what it had read, then reads on.
        await client.xack("events", "bot", *[entry_id for entry_id, _ in got[50:]])
        while not blocked.done():
            got += await read_group(client, 50, ack=50)
        await blocked
        got += await read_group(client, 1000, ack=1000)
        assert not sink.backpressure
        assert seqs(got) == [(b"s1", 0, seq) for seq in range(1, 401)]
        assert not await client.exists(full_key("events"))
    finally:
        if blocked is not None:
            blocked.cancel()
            await asyncio.gather(blocked, return_exceptions=True)
        await sink.close()


async def test_the_slowest_of_several_groups_decides_what_is_trimmed(
    redis_server: RedisServer, redis_client: Any
) -> None:
    client = redis_client
    await client.xgroup_create("events", "bot", id="0", mkstream=True)
    await client.xgroup_create("events", "fast", id="0")
    sink = RedisStreamSink(sink_url(redis_server, maxlen=100), retry_cap_s=0.05)
    try:
        await sink.handle_batch(events_for(1, 1, 100))
        fast = await client.xreadgroup("fast", "f", {"events": ">"}, count=1000)
        await client.xack("events", "fast", *[i for i, _ in fast[0][1]])
        await read_group(client, 30, ack=30)  # "bot" has acknowledged only seq 1-30
        await sink.handle_batch(events_for(1, 101, 30))
        assert [int(f[b"seq"]) for _, f in await client.xrange("events")] == list(range(31, 131))
    finally:
        await sink.close()
