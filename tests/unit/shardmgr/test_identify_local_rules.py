"""The local identify limiter's remaining edges, each pinned by a mutant of shardmgr/identify.py
that tests/unit/shardmgr/test_identify_local.py let through (`make mutate`): the window margin,
the day-long refill, the refresh retry, the minimum budget wait, the budget and reserve
boundaries, and max_concurrency changes."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from shardmgr.identify import (
    MIN_BUDGET_WAIT_S,
    BudgetExhausted,
    LocalIdentifyLimiter,
    SessionStartLimit,
)
from shardmgr.identify.local import DAY_S, REFRESH_RETRY_S
from tests.unit.workers.test_permits_rules import LateClock
from workers.clock import FakeClock


def limits(
    remaining: int = 1000, mc: int = 1, reset_after_s: float = 3600.0, total: int = 1000
) -> SessionStartLimit:
    return SessionStartLimit(
        total=total, remaining=remaining, reset_after_s=reset_after_s, max_concurrency=mc
    )


def local(clock: FakeClock, start: SessionStartLimit, **kw: Any) -> LocalIdentifyLimiter:
    kw.setdefault("margin", 0.0)
    return LocalIdentifyLimiter(start, window_s=5.0, clock=clock, **kw)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def granted_at(clock: FakeClock, limiter: LocalIdentifyLimiter, shard_id: int) -> float:
    """Advance the fake clock in small steps until the shard's grant; its time."""
    task = asyncio.create_task(limiter.acquire(shard_id))
    await settle()
    while not task.done():
        await clock.advance(0.05)
    await task
    await limiter.sent(shard_id)
    return clock.monotonic()


async def test_the_default_window_is_discords_5_s_plus_a_10_percent_margin() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalIdentifyLimiter(limits(), clock=clock)
    await limiter.acquire(0)
    await limiter.sent(0)
    assert await granted_at(clock, limiter, 1) == pytest.approx(5.5, abs=0.06)


async def test_without_a_refresh_the_budget_refills_to_total_for_a_day() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(remaining=1, reset_after_s=10.0, total=2, mc=4))
    await limiter.acquire(0)
    await clock.advance(10.0)
    await limiter.acquire(1)  # the refill: total (2) starts, until a day later
    await limiter.acquire(2)
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(3, on_budget_wait=told.append))
    await settle()
    assert [(t.remaining, t.reset_after_s) for t in told] == [(0, DAY_S)]
    assert DAY_S == 86400.0
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_a_failed_refresh_is_retried_after_a_minute() -> None:
    clock = FakeClock(start=0.0)

    async def refresh() -> SessionStartLimit:
        raise OSError("api unreachable")

    limiter = local(clock, limits(remaining=0, reset_after_s=1.0), refresh=refresh)
    await clock.advance(1.0)
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(0, on_budget_wait=told.append))
    await settle()
    assert [t.reset_after_s for t in told] == [REFRESH_RETRY_S] == [60.0]
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_an_empty_refresh_without_a_reset_is_asked_again_once_a_second_and_told_once() -> (
    None
):
    clock = FakeClock(start=0.0)
    calls = 0

    async def refresh() -> SessionStartLimit:
        nonlocal calls
        calls += 1
        return limits(remaining=0, reset_after_s=0.0)

    limiter = local(clock, limits(remaining=0, reset_after_s=0.0), refresh=refresh)
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(0, on_budget_wait=told.append))
    await settle()
    assert calls == 1
    await clock.advance(MIN_BUDGET_WAIT_S - 0.01)
    assert calls == 1
    await clock.advance(0.01)
    assert calls == 2 and MIN_BUDGET_WAIT_S == 1.0
    for _ in range(3):
        await clock.advance(1.0)
        await settle()
    assert calls == 5 and len(told) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_the_wait_reported_is_the_time_left_until_the_reset() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(remaining=0, reset_after_s=0.5))
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(0, on_budget_wait=told.append))
    await settle()
    assert [t.reset_after_s for t in told] == [0.5]
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_the_first_acquire_long_after_the_reset_still_refills() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(remaining=0, reset_after_s=10.0))
    await clock.advance(25.0)
    await asyncio.wait_for(limiter.acquire(0), 1.0)


async def test_a_budget_below_the_reserve_is_refused() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(remaining=1))
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(0, reserve=2, on_budget_wait=told.append))
    await settle()
    assert not waiting.done() and [(t.remaining, t.reserve) for t in told] == [(1, 2)]
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


def test_a_local_limiter_is_always_available() -> None:
    assert local(FakeClock(), limits()).available is True


def test_session_start_limits_are_immutable() -> None:
    with pytest.raises(AttributeError):
        limits().remaining = 5  # type: ignore[misc]
    assert msgspec.structs.force_setattr is not None  # frozen structs need this to change


async def test_a_max_concurrency_of_zero_counts_as_one() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(mc=0))
    await asyncio.wait_for(limiter.acquire(7), 1.0)


async def test_lowering_max_concurrency_keeps_the_merged_buckets_window() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(mc=4))
    await limiter.acquire(2)  # bucket 2 of 4: its window runs until 5.0
    await limiter.sent(2)
    limiter.update(limits(mc=2))  # shard 0 now shares a bucket with shard 2
    assert await granted_at(clock, limiter, 0) >= 5.0


async def test_a_concurrency_change_while_a_grant_waits_for_the_budget_opens_no_window_early() -> (
    None
):
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(remaining=0, mc=2))
    first = asyncio.create_task(limiter.acquire(0))  # holds bucket 0's lock, waiting to spend
    await settle()
    clock_at_change = clock.monotonic()
    limiter.update(limits(remaining=10, mc=1))  # budget back, and one bucket for everyone
    await asyncio.wait_for(first, 1.0)
    await limiter.release(0)  # unused: its window counts from the grant, under the old bucket
    assert await granted_at(clock, limiter, 1) >= clock_at_change + 5.0


async def test_a_concurrency_change_wakes_waiters_queued_under_the_old_numbering() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(mc=2), hold_timeout_s=30.0)
    await limiter.acquire(0)  # granted, not yet sent: holds bucket 0
    behind = asyncio.create_task(limiter.acquire(2))  # queued in the old bucket 0
    await settle()
    limiter.update(limits(mc=4))  # shard 2 has a bucket of its own now
    while not behind.done() and clock.monotonic() < 10.0:
        await clock.advance(0.5)
    assert behind.done(), "still waiting for shard 0's hold, which no longer concerns it"
    await behind


async def test_the_same_max_concurrency_again_is_no_change() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(mc=int("300")))
    await limiter.acquire(0)
    await limiter.sent(0)
    limiter.update(limits(mc=int("300")))  # equal, though another int object (a new fetch)
    assert await granted_at(clock, limiter, 1) == 0.0


async def test_a_concurrency_change_before_any_identify_delays_nothing() -> None:
    clock = FakeClock(start=0.0)
    limiter = local(clock, limits(mc=1))
    limiter.update(limits(mc=2))
    assert await granted_at(clock, limiter, 0) == 0.0


@pytest.mark.timeout(10)
async def test_a_hold_that_ran_out_while_its_waiter_overslept_frees_the_bucket() -> None:
    clock = LateClock(start=1000.0)
    limiter = local(clock, limits(mc=1), hold_timeout_s=2.0)
    await limiter.acquire(0)  # granted at 1000, never reported: held until 1002
    granted = await granted_at(clock, limiter, 1)
    # the hold ends at 1002, but the window still counts from the grant: 1005
    assert 1005.0 <= granted <= 1005.1
