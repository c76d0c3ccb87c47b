from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shardmgr.identify import BudgetExhausted, LocalIdentifyLimiter, SessionStartLimit
from workers.clock import FakeClock

WINDOW = 5.0


def _limits(remaining: int = 1000, mc: int = 4, reset_after_s: float = 3600.0) -> SessionStartLimit:
    return SessionStartLimit(
        total=1000, remaining=remaining, reset_after_s=reset_after_s, max_concurrency=mc
    )


def _local(clock: FakeClock, limits: SessionStartLimit, **kw: Any) -> LocalIdentifyLimiter:
    return LocalIdentifyLimiter(limits, window_s=WINDOW, margin=0.0, clock=clock, **kw)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    """Shards that ask for a permit and, unless told otherwise, send their IDENTIFY at once."""

    def __init__(self, limiter: LocalIdentifyLimiter, clock: FakeClock) -> None:
        self.limiter = limiter
        self.clock = clock
        self.granted: list[tuple[int, float]] = []

    def start(self, shard_id: int, reserve: int = 0, send: bool = True) -> asyncio.Task[None]:
        async def go() -> None:
            await self.limiter.acquire(shard_id, reserve=reserve)
            self.granted.append((shard_id, self.clock.monotonic()))
            if send:
                await self.limiter.sent(shard_id)

        return asyncio.create_task(go())

    def shards(self) -> list[int]:
        return [s for s, _ in self.granted]


async def test_one_window_grants_every_bucket_together() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=4)), clock)
    tasks = [rec.start(s) for s in range(4)]
    await _settle()
    assert sorted(s for s, _ in rec.granted) == [0, 1, 2, 3]
    assert {t for _, t in rec.granted} == {0.0}
    await asyncio.gather(*tasks)


async def test_startup_of_n_shards_takes_ceil_n_over_mc_windows() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=4)), clock)
    tasks = [rec.start(s) for s in range(16)]
    await _settle()
    for _ in range(3):
        await clock.advance(WINDOW)
    await asyncio.gather(*tasks)
    times = sorted({t for _, t in rec.granted})
    assert times == [0.0, 5.0, 10.0, 15.0]
    for window_start in times:
        buckets = [s % 4 for s, t in rec.granted if t == window_start]
        assert sorted(buckets) == [0, 1, 2, 3]


async def test_same_bucket_waits_a_full_window() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=2)), clock)
    rec.start(0)
    second = rec.start(2)
    await _settle()
    await clock.advance(WINDOW - 0.01)
    assert [s for s, _ in rec.granted] == [0]
    await clock.advance(0.01)
    await second
    assert rec.granted == [(0, 0.0), (2, WINDOW)]


async def test_each_bucket_is_first_in_first_out() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1)), clock)
    order = [3, 1, 2, 0]
    tasks = []
    for s in order:
        tasks.append(rec.start(s))
        await _settle()
    for _ in range(3):
        await clock.advance(WINDOW)
    await asyncio.gather(*tasks)
    assert [s for s, _ in rec.granted] == order


async def test_cancelled_wait_gives_up_its_place_without_spending() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=10, mc=1))
    rec = Recorder(limiter, clock)
    rec.start(0)
    doomed = rec.start(1)
    third = rec.start(2)
    await _settle()
    assert limiter.queue_depth == 2
    doomed.cancel()
    await _settle()
    await clock.advance(WINDOW)
    await third
    assert [s for s, _ in rec.granted] == [0, 2]
    assert limiter.remaining == 8 and limiter.queue_depth == 0


async def test_never_grants_more_than_remaining() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=2, mc=4))
    await limiter.acquire(0)
    await limiter.acquire(1)
    third = asyncio.create_task(limiter.acquire(2))
    await _settle()
    assert not third.done() and limiter.remaining == 0
    third.cancel()
    await asyncio.gather(third, return_exceptions=True)


async def test_reserve_is_not_spent() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=3, mc=4))
    await limiter.acquire(0, reserve=2)
    told: list[BudgetExhausted] = []
    restart = asyncio.create_task(limiter.acquire(1, reserve=2, on_budget_wait=told.append))
    await _settle()
    assert not restart.done()
    assert told[0].remaining == 2 and told[0].reserve == 2
    await limiter.acquire(2, reserve=0)
    assert limiter.remaining == 1
    restart.cancel()
    await asyncio.gather(restart, return_exceptions=True)


async def test_exhausted_acquire_waits_for_the_reset_and_is_then_granted() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(
        clock,
        _limits(remaining=1, mc=4, reset_after_s=60.0),
    )
    await limiter.acquire(0)
    told: list[BudgetExhausted] = []
    waiting = asyncio.create_task(limiter.acquire(1, on_budget_wait=told.append))
    await _settle()
    assert not waiting.done() and len(told) == 1 and told[0].reset_after_s == 60.0
    await clock.advance(59.0)
    assert not waiting.done()
    await clock.advance(1.0)
    await asyncio.wait_for(waiting, 1.0)
    # Without a refresh the budget is assumed refilled to its total.
    assert limiter.remaining == 999 and len(told) == 1


async def test_update_wakes_acquires_waiting_for_the_budget() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=0, mc=4))
    waiting = asyncio.create_task(limiter.acquire(0))
    await _settle()
    assert not waiting.done()
    limiter.update(_limits(remaining=5, mc=4))
    await asyncio.wait_for(waiting, 1.0)
    assert limiter.remaining == 4


async def test_budget_refreshes_from_discovery_after_reset_passes() -> None:
    clock = FakeClock(start=0.0)
    refreshed = _limits(remaining=50, mc=4, reset_after_s=86400.0)
    calls = 0

    async def refresh() -> SessionStartLimit:
        nonlocal calls
        calls += 1
        return refreshed

    limiter = _local(
        clock,
        _limits(remaining=1, mc=4, reset_after_s=60.0),
        refresh=refresh,
    )
    await limiter.acquire(0)
    waiting = asyncio.create_task(limiter.acquire(1))
    await _settle()
    assert calls == 0 and not waiting.done()
    await clock.advance(60.0)
    await asyncio.wait_for(waiting, 1.0)
    assert calls == 1 and limiter.remaining == 49


async def test_update_while_a_bucket_is_granting_keeps_one_identify_per_window() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=0, mc=1))
    rec = Recorder(limiter, clock)
    rec.start(0)  # holds bucket 0's lock, waiting for the budget
    await _settle()
    limiter.update(_limits(remaining=5, mc=2))
    await _settle()
    rec.start(2)  # same new bucket as 0 under mc=2, but must not share 0's window
    await _settle()
    assert [s for s, _ in rec.granted] == [0]
    await clock.advance(WINDOW)
    await _settle()
    assert rec.granted == [(0, 0.0), (2, WINDOW)]


async def test_update_changes_max_concurrency_without_reopening_windows() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(mc=1))
    rec = Recorder(limiter, clock)
    await limiter.acquire(0)
    limiter.update(_limits(mc=2))
    task = rec.start(1)
    await _settle()
    assert rec.granted == []
    await clock.advance(WINDOW)
    await task
    assert rec.granted == [(1, WINDOW)]


async def test_budget_is_refreshed_once_its_reset_passes_even_when_not_low() -> None:
    clock = FakeClock(start=0.0)
    calls = 0

    async def refresh() -> SessionStartLimit:
        nonlocal calls
        calls += 1
        return _limits(remaining=700, mc=4, reset_after_s=86400.0)

    limiter = _local(
        clock,
        _limits(remaining=900, mc=4, reset_after_s=60.0),
        refresh=refresh,
    )
    await limiter.acquire(0)
    await clock.advance(60.0)
    await limiter.acquire(1)
    await limiter.acquire(2)
    assert calls == 1 and limiter.remaining == 698


async def test_failed_refresh_keeps_the_local_count_and_retries_later() -> None:
    clock = FakeClock(start=0.0)
    calls = 0

    async def refresh() -> SessionStartLimit:
        nonlocal calls
        calls += 1
        raise OSError("api unreachable")

    limiter = _local(
        clock,
        _limits(remaining=10, mc=4, reset_after_s=1.0),
        refresh=refresh,
    )
    await clock.advance(1.0)
    await limiter.acquire(0)
    await limiter.acquire(1)
    assert calls == 1 and limiter.remaining == 8


HOLD = 30.0


async def test_next_grant_of_a_bucket_waits_for_the_previous_identify_to_be_sent() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    rec.start(1)
    await _settle()
    await clock.advance(WINDOW * 2)
    assert rec.shards() == [0]
    await rec.limiter.sent(0)
    await _settle()
    assert rec.shards() == [0]  # a full window from the send, not from the grant
    await clock.advance(WINDOW)
    assert rec.granted == [(0, 0.0), (1, 3 * WINDOW)]


async def test_a_late_send_pushes_the_next_grant_of_its_bucket() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    await _settle()
    await clock.advance(1.5)
    await rec.limiter.sent(0)
    rec.start(1)
    await _settle()
    await clock.advance(WINDOW - 0.01)
    assert rec.shards() == [0]
    await clock.advance(0.01)
    assert rec.granted == [(0, 0.0), (1, 1.5 + WINDOW)]


async def test_an_unsent_grant_does_not_hold_other_buckets() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=2), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    rec.start(1)
    rec.start(3)
    await _settle()
    await clock.advance(WINDOW)
    assert rec.granted == [(0, 0.0), (1, 0.0), (3, WINDOW)]


async def test_a_released_grant_frees_its_bucket_one_window_after_the_grant() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    rec.start(1)
    await _settle()
    await clock.advance(2.0)
    await rec.limiter.release(0)
    await _settle()
    assert rec.shards() == [0]
    await clock.advance(WINDOW - 2.0)
    assert rec.granted == [(0, 0.0), (1, WINDOW)]


async def test_a_release_after_the_window_lets_the_next_grant_go_at_once() -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    rec.start(1)
    await _settle()
    await clock.advance(2 * WINDOW)
    await rec.limiter.release(0)
    await _settle()
    assert rec.granted == [(0, 0.0), (1, 2 * WINDOW)]


async def test_a_grant_never_reported_stops_holding_its_bucket_after_the_hold_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(start=0.0)
    rec = Recorder(_local(clock, _limits(mc=1), hold_timeout_s=HOLD), clock)
    rec.start(0, send=False)
    rec.start(1)
    await _settle()
    await clock.advance(HOLD - 0.01)
    assert rec.shards() == [0]
    await clock.advance(0.01)
    assert rec.granted == [(0, 0.0), (1, HOLD)]
    assert "neither used nor released" in caplog.text


async def test_a_send_reported_after_its_hold_timed_out_still_pushes_the_bucket() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(mc=1), hold_timeout_s=HOLD)
    rec = Recorder(limiter, clock)
    rec.start(0, send=False)
    rec.start(1, send=False)
    await _settle()
    await clock.advance(HOLD)
    await limiter.release(1)  # alone, this would open the bucket at HOLD + WINDOW
    await clock.advance(1.0)
    await limiter.sent(0)  # shard 0's IDENTIFY went out after all, very late
    rec.start(2)
    await _settle()
    await clock.advance(WINDOW - 0.01)
    assert rec.shards() == [0, 1]
    await clock.advance(0.01)
    assert rec.granted == [(0, 0.0), (1, HOLD), (2, HOLD + 1.0 + WINDOW)]


async def test_a_cancelled_waiter_behind_an_unsent_grant_spends_nothing() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(remaining=10, mc=1), hold_timeout_s=HOLD)
    rec = Recorder(limiter, clock)
    rec.start(0, send=False)
    doomed = rec.start(1)
    await _settle()
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    await limiter.sent(0)
    rec.start(2)
    await _settle()
    await clock.advance(WINDOW)
    assert rec.shards() == [0, 2] and limiter.remaining == 8


async def test_an_unsent_grant_keeps_holding_its_shards_bucket_after_a_concurrency_change() -> None:
    clock = FakeClock(start=0.0)
    limiter = _local(clock, _limits(mc=1), hold_timeout_s=HOLD)
    rec = Recorder(limiter, clock)
    rec.start(0, send=False)
    await _settle()
    limiter.update(_limits(mc=2))
    rec.start(2)  # shard 0's new bucket
    rec.start(1)  # the other new bucket
    await _settle()
    await clock.advance(2 * WINDOW)
    assert rec.granted == [(0, 0.0), (1, WINDOW)]
    await limiter.sent(0)
    await _settle()
    await clock.advance(WINDOW)
    assert rec.granted == [(0, 0.0), (1, WINDOW), (2, 3 * WINDOW)]
