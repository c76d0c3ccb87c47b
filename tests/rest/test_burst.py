"""Many workers sending into the same channels, faster than the global limit: the
supervisor's ledger keeps every bucket and the global limit, and order per channel."""

from __future__ import annotations

from shardmgr.restlimits import LocalGlobal, RestBroker
from tests.rest.burst import GLOBAL_LIMIT, BurstTarget, assert_clean_and_in_order, burst
from tests.rest.discord_server import TOKEN, DiscordServer
from tests.rest.loopback import Loopback
from workers.rest.client import RestClient


async def test_four_workers_burst_into_four_channels_without_a_violation(
    burst_target: BurstTarget,
) -> None:
    broker = RestBroker(LocalGlobal(GLOBAL_LIMIT))
    try:
        await burst(burst_target, [broker])
    finally:
        await broker.aclose()
    await assert_clean_and_in_order(burst_target)


async def test_key_ownership_moves_between_workers_with_its_bucket_state() -> None:
    # A window long enough that the second worker's request surely falls inside it.
    server = DiscordServer(GLOBAL_LIMIT, 2, 4.0)
    await server.start()
    broker = RestBroker(LocalGlobal(GLOBAL_LIMIT))
    a, b = (RestClient(TOKEN, server.api_base, Loopback(broker, w).coordinator) for w in (1, 2))
    try:
        # The second worker's first request must know what the first one spent.
        for n in range(2):
            await a.request(
                "POST", "/channels/{channel_id}/messages", channel_id="9", json={"content": n}
            )
        await b.request(
            "POST", "/channels/{channel_id}/messages", channel_id="9", json={"content": "b"}
        )
    finally:
        await a.aclose()
        await b.aclose()
        await broker.aclose()
        await server.stop()
    # Sent at once, b's request would land inside the spent window: a violation and a 429.
    assert server.counters["limit_violations"] == 0
    assert server.counters["rate_limited"] == 0
    assert server.counters["requests"] == 3
