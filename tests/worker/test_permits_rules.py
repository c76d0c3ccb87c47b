"""The in-process identify permit's edges, each pinned by a mutant of workers/permits.py that
tests/worker/test_permits.py let through (`make mutate`)."""

from __future__ import annotations

import asyncio

from workers.clock import FakeClock
from workers.permits import InProcessPermits


async def granted_after(clock: FakeClock, permits: InProcessPermits, shard_id: int) -> float:
    """Seconds (on the fake clock) until the shard's grant, stepping 0.25 s at a time."""
    started = clock.monotonic()
    task = asyncio.create_task(permits.acquire(shard_id))
    for _ in range(10):
        await asyncio.sleep(0)
    while not task.done():
        await clock.advance(0.25)
    await task
    return clock.monotonic() - started


async def test_defaults_are_one_bucket_and_discords_5_s_window() -> None:
    clock = FakeClock()
    permits = InProcessPermits(clock=clock)
    await permits.acquire(0)
    permits.sent(0)
    assert await granted_after(clock, permits, 1) == 5.0


async def test_a_grant_asked_half_a_second_before_the_window_ends_waits_that_half_second() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(0)
    permits.sent(0)
    await clock.advance(4.5)
    assert await granted_after(clock, permits, 1) == 0.5


async def test_an_unused_grant_frees_its_bucket_one_window_after_the_grant() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=2, window_s=5, clock=clock)
    await permits.acquire(5)  # bucket 1
    await clock.advance(1.0)
    permits.unused(5)
    assert await granted_after(clock, permits, 1) == 4.0


async def test_a_stale_report_from_another_shard_does_not_free_the_bucket() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=2, window_s=5, clock=clock, hold_timeout_s=20)
    await permits.acquire(2)  # bucket 0, held until shard 2 reports
    permits.unused(0)  # shard 0 holds nothing: must not release shard 2's grant
    assert await granted_after(clock, permits, 4) == 20.0
