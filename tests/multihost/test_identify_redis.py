"""RedisIdentifyLimiter against a real redis-server, with short identify windows.

Timing is read from Redis' own clock: every grant leaves an entry in the limiter's audit
stream whose id is the Redis time (ms) of the grant.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from shardmgr.errors import UserError
from shardmgr.identify import BudgetExhausted, SessionStartLimit, redis_scripts
from shardmgr.identify.redis import RedisIdentifyLimiter, bot_id_from_token, grant_log
from tests.multihost.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

# Upper bounds below (a gap < 2 windows: no idle window) are wall-clock facts read from Redis'
# clock, so scheduling delay on a loaded machine eats into them. Half a second per window
# leaves the waiter 500 ms of slack before it looks like an idle window, instead of 200 ms.
WINDOW_S = 0.5
WINDOW_MS = 500


def limits(
    *, remaining: int = 1000, max_concurrency: int = 1, reset_after_s: float = 3600.0
) -> SessionStartLimit:
    return SessionStartLimit(
        total=1000,
        remaining=remaining,
        reset_after_s=reset_after_s,
        max_concurrency=max_concurrency,
    )


class SignallingClock:
    """The real clock, plus an event set whenever the limiter starts a wait."""

    def __init__(self) -> None:
        self.sleeping = asyncio.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await asyncio.sleep(seconds)


@pytest.fixture
async def make_limiter(
    redis_server: RedisServer,
) -> AsyncIterator[Callable[..., RedisIdentifyLimiter]]:
    made: list[RedisIdentifyLimiter] = []

    def make(bot_id: str = "1234", **kw: Any) -> RedisIdentifyLimiter:
        kw.setdefault("retry_base_s", 0.05)
        kw.setdefault("retry_cap_s", 0.2)
        limiter = RedisIdentifyLimiter(redis_server.url, window_s=WINDOW_S, bot_id=bot_id, **kw)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def identify(limiter: RedisIdentifyLimiter, shard_id: int, **kw: Any) -> None:
    """A grant whose IDENTIFY goes out at once."""
    await limiter.acquire(shard_id, **kw)
    await limiter.sent(shard_id)


async def redis_time_ms(client: Any) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def gaps_ms(times: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_grants_in_one_bucket_are_at_least_one_window_apart(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=1))
    await asyncio.gather(*(identify(limiter, shard) for shard in range(4)))
    grants = await grant_log(inspect, limiter.namespace)
    assert [shard for _, shard, _ in grants] == [0, 1, 2, 3]
    assert all(gap >= WINDOW_MS for gap in gaps_ms([t for t, _, _ in grants]))


async def test_waiters_are_granted_without_idle_windows(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=1))
    await asyncio.gather(*(identify(limiter, shard) for shard in range(4)))
    times = [t for t, _, _ in await grant_log(inspect, limiter.namespace)]
    # each waiter sleeps exactly the lease's TTL (plus a few ms of jitter): no idle window
    assert all(gap < 2 * WINDOW_MS for gap in gaps_ms(times))


async def test_different_buckets_are_granted_in_the_same_window(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=2))
    await asyncio.gather(identify(limiter, 0), identify(limiter, 1))
    (t0, _, b0), (t1, _, b1) = await grant_log(inspect, limiter.namespace)
    assert {b0, b1} == {0, 1}
    assert abs(t1 - t0) < WINDOW_MS


async def test_two_hosts_never_share_a_bucket_window(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    host_a, host_b = make_limiter(), make_limiter()
    host_a.update(limits(max_concurrency=2))
    host_b.update(limits(max_concurrency=2))
    # bucket 0: shards 0, 2 on host A and 4, 6 on host B; bucket 1: 1, 3 on A and 5, 7 on B
    await asyncio.gather(
        *(identify(host_a, shard) for shard in (0, 1, 2, 3)),
        *(identify(host_b, shard) for shard in (4, 5, 6, 7)),
    )
    grants = await grant_log(inspect, host_a.namespace)
    assert sorted(shard for _, shard, _ in grants) == list(range(8))
    for bucket in (0, 1):
        times = [t for t, _, b in grants if b == bucket]
        assert len(times) == 4
        assert all(gap >= WINDOW_MS for gap in gaps_ms(times))


async def test_budget_is_seeded_once_and_every_grant_spends_from_it(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    host_a, host_b = make_limiter(), make_limiter()
    host_a.update(limits(remaining=3, max_concurrency=4))
    await identify(host_a, 0)
    # host B's discovery says 5: a stale, higher figure must not raise the shared budget
    host_b.update(limits(remaining=5, max_concurrency=4))
    await identify(host_b, 1)
    await identify(host_a, 2)
    assert int(await inspect.get(f"{host_a.namespace}:budget")) == 0
    told = Told()
    waiting = asyncio.create_task(host_b.acquire(3, on_budget_wait=told))
    assert (await told.wait()).remaining == 0 and not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_budget_expires_with_reset_after(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(remaining=10, reset_after_s=120.0))
    await identify(limiter, 0)
    ttl_ms = await inspect.pttl(f"{limiter.namespace}:budget")
    assert 110_000 < ttl_ms <= 120_000


async def test_a_lower_discovery_figure_lowers_the_shared_budget(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    host_a, host_b = make_limiter(), make_limiter()
    host_a.update(limits(remaining=50, max_concurrency=2))
    await identify(host_a, 0)
    host_b.update(limits(remaining=7, max_concurrency=2))
    await identify(host_b, 1)
    assert int(await inspect.get(f"{host_a.namespace}:budget")) == 6


async def test_reserve_holds_back_an_identify_that_would_spend_it(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(remaining=2, max_concurrency=2))
    told = Told()
    waiting = asyncio.create_task(limiter.acquire(0, reserve=2, on_budget_wait=told))
    short = await told.wait()
    assert (short.remaining, short.reserve) == (2, 2) and not waiting.done()
    assert int(await inspect.get(f"{limiter.namespace}:budget")) == 2
    await identify(limiter, 1, reserve=1)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_exhausted_budget_is_waited_out_and_refreshed_from_discovery(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    calls = 0

    async def refresh() -> SessionStartLimit:
        nonlocal calls
        calls += 1
        return limits(remaining=40, max_concurrency=2, reset_after_s=3600.0)

    limiter = make_limiter(refresh=refresh)
    limiter.update(limits(remaining=1, max_concurrency=2, reset_after_s=1.0))
    await identify(limiter, 0)
    told = Told()
    await asyncio.wait_for(limiter.acquire(1, on_budget_wait=told), 10.0)
    assert len(told.seen) == 1 and calls == 1
    assert int(await inspect.get(f"{limiter.namespace}:budget")) == 39


class Told:
    """An ``on_budget_wait`` callback that records what it was told."""

    def __init__(self) -> None:
        self.seen: list[BudgetExhausted] = []
        self.event = asyncio.Event()

    def __call__(self, short: BudgetExhausted) -> None:
        self.seen.append(short)
        self.event.set()

    async def wait(self) -> BudgetExhausted:
        await asyncio.wait_for(self.event.wait(), 5.0)
        return self.seen[0]


async def test_bots_sharing_one_redis_do_not_share_buckets(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    bot_a, bot_b = make_limiter(bot_id="111"), make_limiter(bot_id="222")
    bot_a.update(limits(max_concurrency=1))
    bot_b.update(limits(max_concurrency=1))
    await asyncio.gather(identify(bot_a, 0), identify(bot_b, 0))
    [(t_a, _, _)] = await grant_log(inspect, bot_a.namespace)
    [(t_b, _, _)] = await grant_log(inspect, bot_b.namespace)
    assert abs(t_a - t_b) < WINDOW_MS


async def test_cancelled_wait_spends_nothing_and_frees_its_place(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    clock = SignallingClock()
    host_a, host_b = make_limiter(), make_limiter(clock=clock)
    host_a.update(limits(remaining=10, max_concurrency=1))
    host_b.update(limits(remaining=10, max_concurrency=1))
    await identify(host_a, 0)
    clock.sleeping.clear()
    waiting = asyncio.create_task(host_b.acquire(1))
    await asyncio.wait_for(clock.sleeping.wait(), timeout=5)  # host B found the bucket busy
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert host_b.queue_depth == 0
    await identify(host_b, 2)
    grants = await grant_log(inspect, host_a.namespace)
    assert [shard for _, shard, _ in grants] == [0, 2]
    assert int(await inspect.get(f"{host_a.namespace}:budget")) == 8


async def test_a_grant_that_arrives_after_cancellation_is_handed_back(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(remaining=10, max_concurrency=1))
    executed, deliver = asyncio.Event(), asyncio.Event()
    real_run = limiter._run_acquire

    async def slow_reply(*args: Any) -> Any:
        outcome = await real_run(*args)
        if outcome.code != redis_scripts.GRANTED:  # e.g. the fence of a fresh Redis
            return outcome
        executed.set()  # the script ran: Redis granted and spent one start
        await deliver.wait()  # ...but the reply is still on its way when the waiter goes
        return outcome

    limiter._run_acquire = slow_reply  # type: ignore[method-assign]
    waiting = asyncio.create_task(limiter.acquire(0))
    await asyncio.wait_for(executed.wait(), timeout=5)
    assert int(await inspect.get(f"{limiter.namespace}:budget")) == 9
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deliver.set()
    await asyncio.wait_for(asyncio.gather(*limiter._refunds), timeout=5)
    assert int(await inspect.get(f"{limiter.namespace}:budget")) == 10
    assert not await inspect.exists(f"{limiter.namespace}:bucket:0")


async def test_lease_of_a_dead_holder_expires_one_window_after_its_send(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    dead = make_limiter()
    dead.update(limits(max_concurrency=1))
    await identify(dead, 0)
    await dead.aclose()  # the holder is gone; nobody releases its lease
    survivor = make_limiter()
    survivor.update(limits(max_concurrency=1))
    await identify(survivor, 5)
    (t_dead, _, _), (t_survivor, shard, _) = await grant_log(inspect, dead.namespace)
    assert shard == 5
    assert WINDOW_MS <= t_survivor - t_dead < 2 * WINDOW_MS


async def test_lost_redis_state_fences_every_bucket_for_one_window(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=2))
    await identify(limiter, 0)
    await inspect.flushall()
    flushed_at = await redis_time_ms(inspect)
    # bucket 1 never had a lease from us, but another host's lease may have been lost too
    await identify(limiter, 1)
    [(t_after, shard, _)] = await grant_log(inspect, limiter.namespace)
    assert shard == 1
    assert t_after - flushed_at >= WINDOW_MS


async def test_redis_outage_holds_identifies_until_it_is_back(
    make_limiter: Callable[..., RedisIdentifyLimiter],
    redis_server: RedisServer,
) -> None:
    lost, back = asyncio.Event(), asyncio.Event()
    limiter = make_limiter(on_availability=lambda up: (back if up else lost).set())
    limiter.update(limits(max_concurrency=1))
    await identify(limiter, 0)
    assert limiter.redis_available and limiter.waiting_since is None
    redis_server.stop()
    pending = asyncio.create_task(limiter.acquire(1))
    await asyncio.wait_for(lost.wait(), timeout=10)
    assert not limiter.redis_available and limiter.waiting_since is not None
    assert not pending.done()
    redis_server.start()
    client = aioredis.from_url(redis_server.url)
    try:
        restarted_at = await redis_time_ms(client)
        await asyncio.wait_for(pending, timeout=10)
        assert back.is_set()
        assert limiter.redis_available and limiter.waiting_since is None
        [(granted_at, shard, _)] = await grant_log(client, limiter.namespace)
        assert shard == 1
        # the restarted Redis forgot every lease: nobody identifies for one more window
        assert granted_at - restarted_at >= WINDOW_MS
        assert limiter.outages == 1
    finally:
        await client.aclose()


async def test_acquire_waits_for_the_first_limits(
    make_limiter: Callable[..., RedisIdentifyLimiter],
) -> None:
    limiter = make_limiter()
    pending = asyncio.create_task(limiter.acquire(0))
    await asyncio.sleep(0)  # one turn: the task starts and parks on the missing limits
    assert limiter.queue_depth == 1 and not pending.done()
    limiter.update(limits())
    await asyncio.wait_for(pending, timeout=5)


def test_bot_id_comes_from_the_tokens_first_part() -> None:
    first = base64.b64encode(b"80351110224678912").decode().rstrip("=")
    assert bot_id_from_token(f"{first}.GhIjKl.abcdefghijklmnopqrstuvwxyz0") == "80351110224678912"


def test_a_malformed_token_is_a_user_error() -> None:
    with pytest.raises(UserError, match="first part"):
        bot_id_from_token("not-a-token")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0"])
def test_a_bad_redis_url_is_a_user_error(url: str) -> None:
    with pytest.raises(UserError, match="--identify-limiter"):
        RedisIdentifyLimiter(url, window_s=5.0, bot_id="1")


async def test_a_lease_lasts_the_window_plus_the_safety_margin(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter(margin_s=0.05)
    limiter.update(limits(max_concurrency=1))
    await identify(limiter, 0)
    ttl_ms = await inspect.pttl(f"{limiter.namespace}:bucket:0")
    assert WINDOW_MS < ttl_ms <= WINDOW_MS + 50


async def test_an_unsent_grant_holds_its_lease_for_the_hold_timeout(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter(hold_timeout_s=5.0)
    limiter.update(limits(max_concurrency=1))
    await limiter.acquire(0)
    key = f"{limiter.namespace}:bucket:0"
    assert (await inspect.get(key)).startswith(b"hold:")
    assert 4_000 < await inspect.pttl(key) <= 5_000
    await limiter.sent(0)
    assert await inspect.get(key) == b"sent"
    assert 0 < await inspect.pttl(key) <= limiter.lease_s * 1000


async def test_a_grant_sent_late_keeps_its_bucket_closed_until_one_window_after_the_send(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=1))
    await limiter.acquire(0)
    waiting = asyncio.create_task(identify(limiter, 1))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 2 * WINDOW_S)
    sent_at = await redis_time_ms(inspect)
    await limiter.sent(0)
    await asyncio.wait_for(waiting, 5)
    (_, _, _), (t_next, shard, _) = await grant_log(inspect, limiter.namespace)
    assert shard == 1
    assert WINDOW_MS <= t_next - sent_at < 2 * WINDOW_MS


async def test_another_host_waits_for_an_unsent_grant_then_one_window_from_its_send(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    clock = SignallingClock()
    host_a, host_b = make_limiter(), make_limiter(clock=clock)
    host_a.update(limits(max_concurrency=1))
    host_b.update(limits(max_concurrency=1))
    await host_a.acquire(0)
    clock.sleeping.clear()
    waiting = asyncio.create_task(identify(host_b, 1))
    await asyncio.wait_for(clock.sleeping.wait(), timeout=5)  # host B found the bucket held
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 2 * WINDOW_S)
    sent_at = await redis_time_ms(inspect)
    await host_a.sent(0)
    await asyncio.wait_for(waiting, 5)
    (_, _, _), (t_next, shard, _) = await grant_log(inspect, host_a.namespace)
    assert shard == 1
    assert WINDOW_MS <= t_next - sent_at < 2 * WINDOW_MS


async def test_a_grant_given_back_unused_frees_its_bucket_one_window_after_the_grant(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    host_a, host_b = make_limiter(), make_limiter()
    host_a.update(limits(max_concurrency=1))
    host_b.update(limits(max_concurrency=1))
    await host_a.acquire(0)
    await host_a.release(0)
    assert await inspect.pttl(f"{host_a.namespace}:bucket:0") <= host_a.lease_s * 1000
    await identify(host_b, 1)
    (t_unused, _, _), (t_next, shard, _) = await grant_log(inspect, host_a.namespace)
    assert shard == 1
    assert WINDOW_MS <= t_next - t_unused < 2 * WINDOW_MS


async def test_a_grant_never_reported_frees_its_bucket_after_the_hold_timeout(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    dead = make_limiter(hold_timeout_s=4 * WINDOW_S)
    dead.update(limits(max_concurrency=1))
    await dead.acquire(0)
    await dead.aclose()  # died before its worker reported the IDENTIFY sent
    survivor = make_limiter()
    survivor.update(limits(max_concurrency=1))
    await identify(survivor, 5)
    (t_dead, _, _), (t_survivor, shard, _) = await grant_log(inspect, dead.namespace)
    assert shard == 5
    assert 4 * WINDOW_MS <= t_survivor - t_dead < 5 * WINDOW_MS


async def test_a_send_reported_after_the_hold_ended_still_closes_the_bucket_for_a_window(
    make_limiter: Callable[..., RedisIdentifyLimiter], inspect: Any
) -> None:
    limiter = make_limiter()
    limiter.update(limits(max_concurrency=1))
    await limiter.sent(3)
    key = f"{limiter.namespace}:bucket:0"
    assert await inspect.get(key) == b"sent"
    assert 0 < await inspect.pttl(key) <= limiter.lease_s * 1000
