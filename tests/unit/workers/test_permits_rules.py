"""The in-process identify permit's edges, each pinned by a mutant of workers/permits.py that
tests/unit/workers/test_permits.py let through (`make mutate`)."""

from __future__ import annotations

import asyncio

import pytest

from workers.clock import FakeClock
from workers.permits import HOLD_TIMEOUT_S, InProcessPermits


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
    permits.release(5)
    assert await granted_after(clock, permits, 1) == 4.0


@pytest.mark.parametrize(("holder", "reporter"), [(2, 0), (0, 2)])
async def test_a_stale_report_from_another_shard_does_not_free_the_bucket(
    holder: int, reporter: int
) -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=2, window_s=5, clock=clock, hold_timeout_s=20)
    await permits.acquire(holder)  # bucket 0, held until the holder reports
    permits.release(reporter)  # the reporter holds nothing: must not release the grant
    assert await granted_after(clock, permits, 4) == 20.0


async def test_an_unreported_grant_holds_its_bucket_for_20_s_by_default() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(0)
    assert await granted_after(clock, permits, 1) == HOLD_TIMEOUT_S == 20.0


def test_max_concurrency_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        InProcessPermits(max_concurrency=0, clock=FakeClock())


async def test_reports_match_by_shard_id_value_for_large_shard_ids() -> None:
    clock = FakeClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock)
    await permits.acquire(int("1000"))
    permits.release(int("1000"))  # another int object, as decoded from the pipe
    assert await granted_after(clock, permits, 1) == 5.0


class LateClock(FakeClock):
    """Wakes every sleeper a millisecond late, as a busy event loop does."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + 0.001 if seconds > 0 else seconds)


@pytest.mark.timeout(10)
async def test_a_hold_that_ran_out_while_its_waiter_overslept_frees_the_bucket() -> None:
    clock = LateClock()
    permits = InProcessPermits(max_concurrency=1, window_s=5, clock=clock, hold_timeout_s=2)
    await permits.acquire(0)  # never reported: held for 2 s; the window counts from the grant
    assert 5.0 <= await granted_after(clock, permits, 1) <= 5.25
