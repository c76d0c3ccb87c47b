"""The redis-stream sink against a real redis-server, driven with Events the way a worker's
delivery loop calls it: one shard's batch at a time, in order, shards concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from shardmgr.config import load_settings
from shardmgr.errors import UserError
from shardmgr.sinks.redis_stream import ENV_URL, RedisStreamSink, SinkConfig
from tests.multihost.redis_server import RedisServer
from tests.multihost.sink_helpers import body, events_for, read_back, sink_url
from workers import ipc
from workers.handlers import load_handler

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
async def make_sink(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisStreamSink]]:
    made: list[RedisStreamSink] = []

    def make(**kw: Any) -> RedisStreamSink:
        params = kw.pop("params", {})
        sink = RedisStreamSink(sink_url(redis_server, **params), retry_cap_s=0.2, **kw)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.close()


async def test_every_seq_of_every_shard_is_in_the_stream_once_and_in_order(
    make_sink: Callable[..., RedisStreamSink], redis_client: Any
) -> None:
    sink = make_sink()
    await sink.start()
    shards, per_batch, batches = 4, 25, 8

    async def shard_delivery(shard: int) -> None:
        for b in range(batches):
            await sink.handle_batch(events_for(shard, 1 + b * per_batch, per_batch))

    await asyncio.gather(*(shard_delivery(shard) for shard in range(shards)))
    got = await read_back(redis_client)
    total = per_batch * batches
    for shard in range(shards):
        assert [seq for seq, _, _ in got[shard]] == list(range(1, total + 1))
        assert all(t == b"MESSAGE_CREATE" for _, t, _ in got[shard])
        assert [d for _, _, d in got[shard]] == [body(shard, s) for s in range(1, total + 1)]
    assert sink.written == shards * total


async def test_a_large_batch_is_split_into_round_trips_of_the_configured_size(
    make_sink: Callable[..., RedisStreamSink], redis_client: Any
) -> None:
    sink = make_sink(params={"batch": 7})
    await sink.handle_batch(events_for(0, 1, 50))
    assert sink.batches == 8
    assert [seq for seq, _, _ in (await read_back(redis_client))[0]] == list(range(1, 51))


async def test_stream_is_trimmed_to_about_maxlen(
    make_sink: Callable[..., RedisStreamSink], redis_client: Any
) -> None:
    sink = make_sink(params={"maxlen": 100})
    for first in range(1, 2001, 200):
        await sink.handle_batch(events_for(0, first, 200))
    length = await redis_client.xlen("events")
    # MAXLEN ~ trims whole radix-tree nodes (100 entries each), so it stays near, not at, 100
    assert 100 <= length < 400
    newest = await redis_client.xrevrange("events", count=1)
    assert int(newest[0][1][b"seq"]) == 2000


async def test_batch_waits_for_redis_and_lands_once_when_it_is_back(
    make_sink: Callable[..., RedisStreamSink], redis_server: RedisServer
) -> None:
    lost, back = asyncio.Event(), asyncio.Event()
    sink = make_sink(on_availability=lambda up: (back if up else lost).set())
    await sink.handle_batch(events_for(0, 1, 10))
    redis_server.stop()
    pending = asyncio.create_task(sink.handle_batch(events_for(0, 11, 10)))
    await asyncio.wait_for(lost.wait(), timeout=10)
    assert not pending.done() and sink.in_flight == 10
    redis_server.start()  # no persistence: the stream starts empty again
    await asyncio.wait_for(pending, timeout=10)
    assert back.is_set() and sink.redis_available
    client = aioredis.from_url(redis_server.url)
    try:
        assert [seq for seq, _, _ in (await read_back(client))[0]] == list(range(11, 21))
    finally:
        await client.aclose()


async def test_a_batch_whose_reply_was_lost_is_not_written_twice(
    make_sink: Callable[..., RedisStreamSink], redis_client: Any
) -> None:
    sink = make_sink()
    await sink.start()
    real_script = sink._script
    calls = 0

    async def write_then_lose_reply(**kw: Any) -> Any:
        nonlocal calls
        calls += 1
        reply = await real_script(**kw)
        if calls == 1:
            raise RedisConnectionError("connection lost after the script ran")
        return reply

    sink._script = write_then_lose_reply
    await sink.handle_batch(events_for(3, 1, 20))
    await sink.handle_batch(events_for(3, 21, 5))
    assert calls == 3  # the re-sent first batch was recognized, not written again
    assert sink.duplicates == 1 and sink.retries == 1
    assert [seq for seq, _, _ in (await read_back(redis_client))[3]] == list(range(1, 26))


async def test_configuration_comes_from_the_environment(
    redis_server: RedisServer, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, sink_url(redis_server, stream="from-env", maxlen=50))
    sink = RedisStreamSink()
    try:
        await sink.start()
        assert sink.config is not None and sink.config.maxlen == 50
        await sink.handle_batch(events_for(1, 1, 3))
        assert await redis_client.xlen("from-env") == 3
    finally:
        await sink.close()


def test_the_builtin_sink_loads_as_a_batch_handler() -> None:
    handler = load_handler("shardmgr.sinks.redis_stream:sink")
    assert handler.batch is not None


def test_sink_url_is_parsed_into_redis_url_stream_and_limits() -> None:
    config = SinkConfig.parse("redis-stream://:pw@10.0.0.5:6380/2?stream=bot:events&maxlen=5000")
    assert config == SinkConfig(
        redis_url="redis://:pw@10.0.0.5:6380/2", stream="bot:events", maxlen=5000, batch=500
    )


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://127.0.0.1:6379/0", "not a redis-stream:// URL"),
        ("redis-stream://127.0.0.1:6379/0?maxlen=lots", "not a whole number"),
        ("redis-stream://127.0.0.1:6379/0?batch=0", "at least 1"),
        ("redis-stream://127.0.0.1:6379/0?strem=x", "unknown parameter"),
        ("redis-stream://127.0.0.1:6379/0?stream=", "must not be empty"),
    ],
)
def test_a_bad_sink_url_is_a_one_line_user_error(url: str, complaint: str) -> None:
    with pytest.raises(UserError, match=complaint):
        SinkConfig.parse(url)


def test_a_bad_sink_url_is_rejected_by_the_supervisors_settings() -> None:
    with pytest.raises(UserError, match="maxlen"):
        load_settings({"sink": "redis-stream://127.0.0.1:6379/0?maxlen=-1"}, env={})


async def test_the_url_from_the_worker_configuration_wins_over_the_environment(
    redis_server: RedisServer, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, "redis-stream://127.0.0.1:9/0?stream=never")
    config = ipc.WorkerConfig(
        worker_id=0,
        token="t",
        gateway_url="ws://127.0.0.1:9",
        num_shards=1,
        shards=[],
        intents=0,
        sink_url=sink_url(redis_server, stream="from-ipc"),
    )
    sent = msgspec.msgpack.decode(msgspec.msgpack.encode(config), type=ipc.WorkerConfig)
    sink = RedisStreamSink()
    assert sent.sink_url is not None
    sink.use_url(sent.sink_url)
    try:
        await sink.handle_batch(events_for(1, 1, 3))
        assert await redis_client.xlen("from-ipc") == 3
    finally:
        await sink.close()


def test_tls_parameters_are_passed_to_redis_and_the_sinks_own_are_not() -> None:
    config = SinkConfig.parse(
        "rediss-stream://:pw@redis.internal:6380/1?stream=ev&ssl_ca_certs=/etc/ca.pem"
        "&ssl_certfile=/etc/c.pem&ssl_keyfile=/etc/k.pem&maxlen=10"
    )
    assert config.redis_url == (
        "rediss://:pw@redis.internal:6380/1?ssl_ca_certs=%2Fetc%2Fca.pem"
        "&ssl_certfile=%2Fetc%2Fc.pem&ssl_keyfile=%2Fetc%2Fk.pem"
    )
    assert (config.stream, config.maxlen) == ("ev", 10)
