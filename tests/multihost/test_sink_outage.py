"""A Redis outage under traffic: nothing lost, nothing written twice, and the recovery costs
one lookup per batch (inside the write itself), never a read back through the stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from shardmgr.sinks.redis_stream import RedisStreamSink
from tests.multihost.redis_server import RedisServer
from tests.multihost.sink_helpers import events_for, sink_url

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

SHARDS = 4
PER_BATCH = 20


async def written(client: Any) -> dict[tuple[bytes, int], list[int]]:
    """Per (session, shard): the seqs in stream order."""
    out: dict[tuple[bytes, int], list[int]] = {}
    for _, f in await client.xrange("events"):
        out.setdefault((f[b"session"], int(f[b"shard"])), []).append(int(f[b"seq"]))
    return out


async def command_calls(client: Any) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def traffic(sink: RedisStreamSink, batches: int) -> None:
    """Every shard delivers ``batches`` batches in order, shards concurrently."""

    async def shard(sid: int) -> None:
        for b in range(batches):
            await sink.handle_batch(events_for(sid, 1 + b * PER_BATCH, PER_BATCH))

    await asyncio.gather(*(shard(sid) for sid in range(SHARDS)))


async def test_a_restart_with_its_data_under_traffic_loses_and_repeats_nothing_and_reads_little(
    redis_server: RedisServer,
) -> None:
    lost, back = asyncio.Event(), asyncio.Event()
    sink = RedisStreamSink(
        sink_url(redis_server),
        retry_cap_s=0.2,
        on_availability=lambda up: (back if up else lost).set(),
    )
    client = aioredis.from_url(redis_server.url)
    # A save point makes SIGTERM write a snapshot, which the restarted server loads.
    await client.config_set("save", "3600 1")
    await client.aclose()
    batches = 40
    try:
        running = asyncio.create_task(traffic(sink, batches))
        await sink.handle_batch(events_for(SHARDS, 1, PER_BATCH))  # traffic is flowing
        redis_server.stop()
        await asyncio.wait_for(lost.wait(), timeout=10)
        assert not running.done()
        redis_server.start()
        await asyncio.wait_for(running, timeout=60)
        assert back.is_set()
    finally:
        await sink.close()
    client = aioredis.from_url(redis_server.url)
    try:
        got = await written(client)
        for sid in range(SHARDS):
            assert got[(b"s1", sid)] == list(range(1, batches * PER_BATCH + 1))
        calls = await command_calls(client)  # counted since the restart, scripts included
    finally:
        await client.aclose()
    assert "xrevrange" not in calls and "xrange" in calls  # our own read above: one call
    assert calls["xrange"] == 1
    # One lookup per batch, inside the script that writes it (every completed batch ran
    # the script successfully exactly once): nothing else was read.
    assert 0 < calls["hget"] <= sink.batches
    assert set(calls) <= {
        "xrange",
        "hget",
        "xlen",
        "xadd",
        "hset",
        "exists",
        "evalsha",
        "eval",
        "script|load",
        "info",
        "ping",
        "hello",
        "client|setinfo",
    }


async def test_writes_answered_after_their_timeout_are_not_written_again(
    redis_server: RedisServer, redis_client: Any
) -> None:
    client = redis_client
    lost = asyncio.Event()
    sink = RedisStreamSink(
        sink_url(redis_server),
        retry_cap_s=0.1,
        socket_timeout_s=0.3,
        on_availability=lambda up: None if up else lost.set(),
    )
    try:
        await sink.handle_batch(events_for(SHARDS, 1, PER_BATCH))  # connected
        redis_server.pause()  # the writes below reach its socket and wait there
        pending = asyncio.create_task(traffic(sink, 3))
        await asyncio.wait_for(lost.wait(), timeout=10)
        redis_server.resume()  # it now runs every timed-out try, then the retries
        await asyncio.wait_for(pending, timeout=30)
    finally:
        await sink.close()
    assert sink.duplicates >= 1
    got = await written(client)
    for sid in range(SHARDS):
        assert got[(b"s1", sid)] == list(range(1, 3 * PER_BATCH + 1))
