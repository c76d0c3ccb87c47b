"""The in-process identify permit: one per bucket per window (counted from the send), FIFO,
cancel frees a place."""

from __future__ import annotations

import asyncio

from workers.clock import FakeClock
from workers.permits import InProcessPermits


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_one_identify_per_bucket_per_window() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    granted: list[tuple[int, float]] = []

    async def take(shard: int) -> None:
        await permits.acquire(shard)
        granted.append((shard, clock.monotonic()))
        permits.sent(shard)

    tasks = [asyncio.ensure_future(take(s)) for s in range(3)]
    await asyncio.sleep(0)
    while not all(t.done() for t in tasks):
        await clock.advance(1)
    assert [(s, t - 1000) for s, t in granted] == [(0, 0), (1, 5), (2, 10)]


async def test_buckets_identify_in_parallel() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=2, window_s=5, clock=clock)
    async with asyncio.timeout(1):
        await permits.acquire(0)
        await permits.acquire(1)
    assert clock.monotonic() == 1000


async def test_cancelled_wait_gives_up_its_place() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(0)
    permits.sent(0)
    waiter = asyncio.ensure_future(permits.acquire(1))
    follower = asyncio.ensure_future(permits.acquire(2))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    while not follower.done():
        await clock.advance(1)
    assert clock.monotonic() == 1005
    assert permits.granted == 2


async def test_the_window_counts_from_a_late_send() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(0)
    follower = asyncio.ensure_future(permits.acquire(1))
    await clock.advance(3)
    permits.sent(0)
    await _settle()
    await clock.advance(4.9)
    assert not follower.done()
    await clock.advance(0.1)
    await asyncio.wait_for(follower, 1)
    assert clock.monotonic() == 1008


async def test_an_unused_grant_frees_its_bucket_one_window_after_the_grant() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(0)
    follower = asyncio.ensure_future(permits.acquire(1))
    await clock.advance(3)
    permits.release(0)
    await _settle()
    await clock.advance(2)
    await asyncio.wait_for(follower, 1)
    assert clock.monotonic() == 1005


async def test_a_grant_never_settled_stops_holding_after_the_hold_timeout() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock, hold_timeout_s=20)
    await permits.acquire(0)
    follower = asyncio.ensure_future(permits.acquire(1))
    await clock.advance(19.9)
    assert not follower.done()
    await clock.advance(0.1)
    await asyncio.wait_for(follower, 1)
    assert clock.monotonic() == 1020
