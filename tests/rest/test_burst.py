"""Many workers sending into the same channels, faster than the global limit: the
supervisor's ledger keeps every bucket and the global limit, and order per channel."""

from __future__ import annotations

from shardmgr.restlimits import LocalGlobal, RestBroker
from tests.rest.burst import BUCKET, GLOBAL_LIMIT, BurstTarget, assert_clean_and_in_order, burst
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
