"""Two supervisors on one bot share the global REST limit through a real redis-server."""

from __future__ import annotations

import pytest

from shardmgr.restlimits import RestBroker
from shardmgr.restlimits_redis import RedisGlobal
from tests.multihost.conftest import redis_server  # noqa: F401 - the fixture
from tests.multihost.redis_server import RedisServer
from tests.rest.burst import GLOBAL_LIMIT, BurstTarget, burst
from tests.rest.discord_server import TOKEN

pytestmark = pytest.mark.integration


async def test_two_supervisors_share_the_global_limit_through_redis(
    redis_server: RedisServer,  # noqa: F811
    burst_target: BurstTarget,
) -> None:
    brokers = [RestBroker(RedisGlobal(redis_server.url, GLOBAL_LIMIT, token=TOKEN)) for _ in (0, 1)]
    try:
        await burst(burst_target, brokers)
    finally:
        for broker in brokers:
            await broker.aclose()
    # Channels are shared by both hosts' workers here: their buckets are each host's own
    # (only the global limit crosses hosts), so a channel's bucket may see a 429 and retry.
    counters = await burst_target.counters()
    assert counters["global_violations"] == 0


async def test_the_global_key_lives_under_the_bots_namespace(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    source = RedisGlobal(redis_server.url, 5, token=TOKEN)
    try:
        assert (await source.take(10))[0] == 5
        assert source.key.startswith("{shardmgr:") and source.key.endswith("}:rest:global")
        tokens, _ = await source.take(1)  # waits for the window to pass, then grants
        assert tokens == 1
    finally:
        await source.aclose()
