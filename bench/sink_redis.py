"""Benchmark: the redis-stream sink's throughput against raw redis-py.

A real redis-server on a free loopback port (no persistence) receives the dispatches of the
seeded corpus. The sink (``shardmgr.sinks.redis_stream``) gets them the way a worker's
delivery loop hands them over: per shard, batches of ``workers.handlers.DEFAULT_BATCH``, one
batch in flight per shard, shards concurrent. The baseline is raw redis-py doing the least
work for the same result: the same entries, pipelined ``XADD ... MAXLEN ~`` without a
transaction, in the same batches and with the same concurrency. Both run in the same process
on uvloop, alternating, best of several rounds; the ratio is sink time / baseline time
(target <= 1.3: the sink's script (batch id, room check, XADDs) plus Event handling may
cost up to 30%).

It also reports ``sink_redis.bytes_per_entry``: Redis' ``MEMORY USAGE`` of the sink's
stream divided by its length, the number the Kubernetes example sizes the stream with.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from bench.corpus import generate_messages
from shardmgr.sinks.redis_stream import RedisStreamSink, entry
from tests.multihost.redis_server import RedisServer
from workers.events import Event
from workers.handlers import DEFAULT_BATCH

MAXLEN = 100_000
TARGET_RATIO = 1.3


class _Envelope(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")
    s: int | None = None
    t: str | None = None


def _events(count: int, shards: int) -> list[list[Event]]:
    messages, _, _ = generate_messages(count, guild_sizes=(50_000, 120_000))
    # a real session id's length: part of every entry
    session = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
    decoder = msgspec.json.Decoder(_Envelope)
    per_shard: list[list[Event]] = [[] for _ in range(shards)]
    n = 0
    for message in messages:
        env = decoder.decode(message)
        if env.op != 0 or env.t is None:
            continue
        shard = n % shards
        seq = len(per_shard[shard]) + 1
        per_shard[shard].append(Event(shard, seq, env.t, env.d, session_id=session))
        n += 1
    return per_shard


def _batches(events: Sequence[Event]) -> list[Sequence[Event]]:
    return [events[i : i + DEFAULT_BATCH] for i in range(0, len(events), DEFAULT_BATCH)]


async def _sink_run(url: str, per_shard: list[list[Event]]) -> float:
    sink = RedisStreamSink(f"{url}?stream=bench-sink&maxlen={MAXLEN}")
    await sink.start()
    try:

        async def shard(events: list[Event]) -> None:
            for batch in _batches(events):
                await sink.handle_batch(batch)

        t0 = time.perf_counter()
        await asyncio.gather(*(shard(events) for events in per_shard))
        return time.perf_counter() - t0
    finally:
        await sink.close()


async def _raw_run(url: str, per_shard: list[list[Event]]) -> float:
    client: Any = aioredis.from_url(url)
    try:

        async def shard(events: list[Event]) -> None:
            for batch in _batches(events):
                async with client.pipeline(transaction=False) as pipe:
                    for event in batch:
                        pairs = entry(event)
                        fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
                        pipe.xadd("bench-raw", fields, maxlen=MAXLEN, approximate=True)
                    await pipe.execute()

        t0 = time.perf_counter()
        await asyncio.gather(*(shard(events) for events in per_shard))
        return time.perf_counter() - t0
    finally:
        await client.aclose()


async def _measure(
    server: RedisServer, per_shard: list[list[Event]], rounds: int
) -> tuple[float, float, float]:
    redis_url = server.url
    stream_url = redis_url.replace("redis://", "redis-stream://", 1)
    runs: dict[str, list[float]] = {"sink": [], "raw": []}
    contenders: dict[str, Callable[[], Awaitable[float]]] = {
        "raw": lambda: _raw_run(redis_url, per_shard),
        "sink": lambda: _sink_run(stream_url, per_shard),
    }
    client: Any = aioredis.from_url(redis_url)
    try:
        # One untimed round first: connection set-up, script and allocator warm-up.
        for round_no in range(rounds + 1):
            for name, run in contenders.items():
                await client.delete("bench-sink", "bench-raw")
                took = await run()
                if round_no:
                    runs[name].append(took)
        # The last round's sink stream is still there: what one entry costs Redis.
        per_entry = await client.memory_usage("bench-sink", samples=0) / await client.xlen(
            "bench-sink"
        )
    finally:
        await client.aclose()
    return min(runs["sink"]), min(runs["raw"]), per_entry


def _loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return lambda coro: uvloop.run(coro)


def run(quick: bool) -> list[dict[str, Any]]:
    if shutil.which("redis-server") is None:
        return [
            {
                "name": "sink_redis.events_per_s",
                "value": None,
                "unit": "events/s",
                "baseline": None,
                "ratio": None,
                "target": f"ratio <= {TARGET_RATIO}",
                "pass": False,
                "note": "redis-server is not installed (make system-deps)",
            }
        ]
    count, shards, rounds = (3_000, 4, 2) if quick else (40_000, 8, 5)
    per_shard = _events(count, shards)
    total = sum(len(events) for events in per_shard)
    with tempfile.TemporaryDirectory(prefix="shardmgr-bench-redis-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            sink_s, raw_s, per_entry = _loop_runner()(_measure(server, per_shard, rounds))
        finally:
            server.stop()
    ratio = sink_s / raw_s
    return [
        {
            "name": "sink_redis.events_per_s",
            "value": total / sink_s,
            "unit": "events/s",
            "baseline": total / raw_s,
            "ratio": ratio,
            "target": f"time ratio <= {TARGET_RATIO}",
            "pass": ratio <= TARGET_RATIO,
            "note": f"{total} dispatches, {shards} shards, batches of {DEFAULT_BATCH}; "
            "baseline: raw redis-py pipelined XADD of the same entries",
        },
        {
            "name": "sink_redis.bytes_per_entry",
            "value": per_entry,
            "unit": "bytes",
            "baseline": None,
            "ratio": None,
            "target": "measured (sizes the stream's maxlen)",
            "pass": True,
            "note": "MEMORY USAGE of the sink's stream / XLEN, bench corpus dispatches",
        },
    ]
