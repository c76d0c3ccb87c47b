"""Two supervisors on one bot share the global REST limit through a real redis-server."""

from __future__ import annotations

import pytest

from shardmgr.restlimits import RestBroker
from shardmgr.restlimits_redis import RedisRest
from tests.multihost.conftest import redis_server  # noqa: F401 - the fixture
from tests.multihost.redis_server import RedisServer
from tests.rest.burst import (
    GLOBAL_LIMIT,
    BurstTarget,
    LocalTarget,
    assert_clean_and_in_order,
    burst,
)
from tests.rest.discord_server import TOKEN, DiscordServer

pytestmark = pytest.mark.integration


async def test_two_supervisors_share_the_global_limit_and_buckets_through_redis(
    redis_server: RedisServer,  # noqa: F811
    burst_target: BurstTarget,
) -> None:
    sources = [RedisRest(redis_server.url, GLOBAL_LIMIT, token=TOKEN) for _ in (0, 1)]
    brokers = [RestBroker(source, keys=source) for source in sources]
    try:
        await burst(burst_target, brokers)
    finally:
        for broker in brokers:
            await broker.aclose()
    await assert_clean_and_in_order(burst_target)


async def test_two_supervisors_share_a_channels_bucket_through_redis(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Buckets bind hard here (2 per 0.5 s, global limit far above): without the key held
    # by one host at a time, both hosts see the last "remaining" and overdraw the bucket.
    server = DiscordServer(50, 2, 0.5)
    await server.start()
    target = LocalTarget(server, ["301", "302"])
    sources = [RedisRest(redis_server.url, 50, token=TOKEN) for _ in (0, 1)]
    brokers = [RestBroker(source, keys=source) for source in sources]
    try:
        await burst(target, brokers, per_channel=2)
    finally:
        for broker in brokers:
            await broker.aclose()
        await server.stop()
    await assert_clean_and_in_order(target, per_channel=2)


async def test_the_global_key_lives_under_the_bots_namespace(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    source = RedisRest(redis_server.url, 5, token=TOKEN)
    try:
        assert (await source.take(10))[0] == 5
        assert source.key.startswith("{shardmgr:") and source.key.endswith("}:rest:global")
        tokens, _ = await source.take(1)  # waits for the window to pass, then grants
        assert tokens == 1
    finally:
        await source.aclose()


async def test_a_stopping_supervisor_gives_its_keys_back_at_once(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    first, second = (RedisRest(redis_server.url, 50, token=TOKEN) for _ in (0, 1))
    broker = RestBroker(first, keys=first)
    broker._held.add("channel:1")
    assert (await first.acquire("channel:1"))[0]
    assert not (await second.acquire("channel:1"))[0]
    await broker.aclose()
    held, _, _ = await second.acquire("channel:1")
    assert held  # without waiting for the lease to run out
    await second.aclose()
