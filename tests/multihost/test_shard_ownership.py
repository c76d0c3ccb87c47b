"""ShardOwnership and OwnedLimiter against a real redis-server: one owner per shard, takeover
after the owner's lease expires, the scan for shards nobody owns, and no takeover while a
restarted Redis may have forgotten a live owner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from shardmgr.identify import LocalIdentifyLimiter, SessionStartLimit
from shardmgr.ownership import OwnedLimiter, ShardOwnership, default_host_id
from tests.multihost.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

LEASE_S = 1.0
BOT = "1234"


@pytest.fixture
async def host(redis_server: RedisServer) -> AsyncIterator[Callable[..., ShardOwnership]]:
    made: list[ShardOwnership] = []

    def make(name: str, shard_ids: list[int], total: int = 4, **kw: Any) -> ShardOwnership:
        kw.setdefault("lease_s", LEASE_S)
        owner = ShardOwnership(
            redis_server.url,
            bot_id=BOT,
            host_id=name,
            shard_ids=shard_ids,
            total_shards=total,
            **kw,
        )
        made.append(owner)
        return owner

    yield make
    for owner in made:
        await owner.aclose(hand_back=False)


def key(shard_id: int) -> str:
    return f"{{shardmgr:{BOT}}}:owner:{shard_id}"


async def settle(*owners: ShardOwnership, within_s: float = 10.0) -> None:
    """Claim rounds of every host, in order (each renews, as its loop would), until no
    takeover is fenced any more: a fresh Redis fences them for a lease. A host settled
    alone first owns every free shard of its slice."""
    deadline = time.monotonic() + within_s
    while True:
        for owner in owners:
            await owner.claim()
        if not any(owner.fenced for owner in owners):
            return
        assert time.monotonic() < deadline, "takeovers stayed fenced"
        await asyncio.sleep(0.02)


async def until_gone(client: Any, shard_id: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while await client.exists(key(shard_id)):
        assert time.monotonic() < deadline, f"lease of shard {shard_id} never expired"
        await asyncio.sleep(0.02)


async def test_an_overlapping_host_does_not_own_shards_another_host_owns(
    host: Callable[..., ShardOwnership],
) -> None:
    a, b = host("a", [0, 1, 2]), host("b", [1, 2, 3])
    await settle(a)
    await settle(a, b)
    assert a.owned == {0, 1, 2}
    assert b.owned == {3}
    assert b.elsewhere == {1: "a", 2: "a"}
    assert b.status()["not_owned"] == {"1": "a", "2": "a"}


async def test_the_owner_keeps_its_shards_by_renewing_them(
    host: Callable[..., ShardOwnership], inspect: Any
) -> None:
    a, b = host("a", [0]), host("b", [0])
    await settle(a)
    for _ in range(3):
        await asyncio.sleep(LEASE_S / 2)
        await a.claim()
        await b.claim()
    assert a.owned == {0} and b.owned == set()
    assert await inspect.get(key(0)) == b"a"


async def test_a_dead_owners_shards_are_taken_over_once_its_lease_expires(
    host: Callable[..., ShardOwnership], inspect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = host("a", [0, 1]), host("b", [1, 2])
    await settle(a)
    await settle(a, b)
    assert b.owned == {2}
    await a.aclose(hand_back=False)  # died: nobody renews, nobody hands back
    await b.claim()
    assert b.owned == {2}, "taken over before the lease expired"
    await until_gone(inspect, 1)
    await b.claim()
    assert b.owned == {1, 2} and b.elsewhere == {}
    assert b.taken_over == 1
    assert "took over a shard whose owner's lease expired" in caplog.text


async def test_a_clean_stop_hands_its_shards_back_at_once(
    host: Callable[..., ShardOwnership], inspect: Any
) -> None:
    a, b = host("a", [0]), host("b", [0])
    await settle(a)
    await settle(a, b)
    assert b.owned == set()
    await a.aclose(hand_back=True)
    assert not await inspect.exists(key(0))
    await b.claim()
    assert b.owned == {0}


async def test_each_host_sees_the_shards_of_the_bot_nobody_owns(
    host: Callable[..., ShardOwnership],
) -> None:
    a = host("a", [0, 1], total=6)
    await settle(a)
    assert a.unowned == [2, 3, 4, 5]
    b = host("b", [4], total=6)
    await settle(a, b)
    await a.claim()
    assert a.status()["unowned"] == [2, 3, 5]


async def test_after_a_redis_restart_only_live_owners_reclaim_their_shards_for_one_lease(
    host: Callable[..., ShardOwnership], inspect: Any, redis_server: RedisServer
) -> None:
    a, b = host("a", [0], lease_s=1.0), host("b", [0], lease_s=1.0)
    await inspect.save()  # the snapshot has no owner yet
    await settle(a)
    await settle(a, b)
    assert b.elsewhere == {0: "a"}
    redis_server.restart()  # back from the snapshot: the owner's lease is gone
    await inspect.connection_pool.disconnect()
    assert not await inspect.exists(key(0))
    await b.claim()  # first to come back: it must not take a shard someone may run
    assert b.owned == set()
    assert b.status()["fenced"]
    await a.claim()  # the live owner takes it back at once
    assert a.owned == {0}
    await b.claim()
    assert b.elsewhere == {0: "a"}


async def test_an_identify_of_a_shard_owned_elsewhere_waits_for_the_ownership(
    host: Callable[..., ShardOwnership], inspect: Any
) -> None:
    a, b = host("a", [0]), host("b", [0])
    await settle(a)
    await settle(a, b)
    inner = LocalIdentifyLimiter(
        SessionStartLimit(total=1000, remaining=1000, reset_after_s=3600, max_concurrency=1),
        window_s=0.01,
    )
    limiter = OwnedLimiter(inner, b)
    pending = asyncio.create_task(limiter.acquire(0))
    await asyncio.sleep(0)
    await a.aclose(hand_back=True)
    assert not pending.done()
    await settle(b)
    await asyncio.wait_for(pending, 5)
    assert b.owns(0)
    await limiter.aclose()


def test_two_supervisors_on_one_machine_have_different_host_ids(tmp_path: Path) -> None:
    assert default_host_id(str(tmp_path / "a")) != default_host_id(str(tmp_path / "b"))
    assert default_host_id(str(tmp_path / "a")) == default_host_id(str(tmp_path / "a"))


async def test_a_running_shard_whose_lease_another_host_took_is_reported_lost(
    host: Callable[..., ShardOwnership], inspect: Any
) -> None:
    a = host("a", [0, 1])
    lost: list[list[int]] = []
    a.on_lost = lost.append
    await settle(a)
    # Our renewals were late (a stall, a partition) and another host took shard 0.
    await inspect.set(key(0), "intruder", px=60_000)
    await a.claim()
    assert lost == [[0]]
    assert a.owned == {1} and a.elsewhere == {0: "intruder"}
    assert not a.may_resume(0)
