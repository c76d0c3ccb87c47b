"""The send limiter's edges, each pinned by a mutant of workers/ratelimit.py that the older
tests let through (`make mutate`): the window boundary, pruning, sends spread over time,
the command share when heartbeats used the reserve, and the argument checks."""

from __future__ import annotations

import asyncio

import pytest

from workers.clock import FakeClock
from workers.ratelimit import MAX_RESERVE, SendLimiter, heartbeat_reserve


async def test_a_send_exactly_one_window_old_has_left_the_window() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=5, window_s=60, reserve=0, clock=clock)
    assert limiter.try_acquire()
    await clock.advance(30)
    assert limiter.try_acquire()
    await clock.advance(30)  # the first send is now exactly 60 s old, the second 30 s
    assert limiter.in_window() == 1


async def test_sends_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=5, window_s=60, reserve=0, clock=clock)
    for _ in range(5):
        assert limiter.try_acquire()
    await clock.advance(1000)
    assert limiter.in_window() == 0
    assert len(limiter._sent) == 0  # bounded memory: nothing old is kept


def test_delay_is_zero_when_a_send_fits() -> None:
    limiter = SendLimiter(limit=5, window_s=60, reserve=1, clock=FakeClock())
    assert limiter.delay(priority=False) == 0.0


async def test_try_acquire_refuses_until_the_send_that_makes_room_has_left() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=2, window_s=60, reserve=0, clock=clock)
    assert limiter.try_acquire()
    await clock.advance(0.5)
    assert limiter.try_acquire()
    await clock.advance(59.5)  # the first send left; the second leaves in 0.5 s
    assert limiter.try_acquire()
    assert limiter.delay(priority=False) == pytest.approx(0.5)
    assert not limiter.try_acquire()


async def test_acquire_waits_out_a_delay_shorter_than_a_second() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=2, window_s=60, reserve=0, clock=clock)
    assert limiter.try_acquire()
    await clock.advance(0.5)
    assert limiter.try_acquire()
    await clock.advance(59.5)
    assert limiter.try_acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await clock.advance(0.4)
    assert not waiting.done()
    await clock.advance(0.1)
    await asyncio.wait_for(waiting, 1)


def test_commands_stay_out_once_heartbeats_used_the_reserve() -> None:
    limiter = SendLimiter(limit=10, window_s=60, reserve=3, clock=FakeClock())
    while limiter.try_acquire():
        pass
    while limiter.try_acquire(priority=True):
        pass
    assert limiter.in_window() == 10
    assert not limiter.try_acquire()
    assert limiter.delay(priority=False) > 0


async def test_acquire_without_priority_is_an_ordinary_command() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=10, window_s=60, reserve=3, clock=clock)
    while limiter.try_acquire():
        pass
    waiting = asyncio.create_task(limiter.acquire())
    await clock.advance(1)
    assert not waiting.done()  # the reserve is for heartbeats, IDENTIFY and RESUME only
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


def test_before_hello_the_limiter_keeps_three_sends_in_reserve() -> None:
    # A shard builds its limiter before HELLO tells the heartbeat interval (workers/shard.py)
    limiter = SendLimiter(clock=FakeClock())
    assert sum(limiter.try_acquire() for _ in range(200)) == 120 - 3


def test_default_window_is_the_gateways_60_s_plus_one_second_of_slack() -> None:
    assert SendLimiter(clock=FakeClock()).window_s == 60 + 1


@pytest.mark.parametrize("reserve", [-1, 3, 5])
def test_reserve_must_leave_room_for_commands(reserve: int) -> None:
    with pytest.raises(ValueError, match="reserve"):
        SendLimiter(limit=3, reserve=reserve, clock=FakeClock())


@pytest.mark.parametrize(
    ("interval_s", "reserve"), [(20.0, 4), (30.0, 3), (0.0, MAX_RESERVE), (-1.0, MAX_RESERVE)]
)
def test_heartbeat_reserve_is_the_beats_in_a_window_plus_one(
    interval_s: float, reserve: int
) -> None:
    assert heartbeat_reserve(interval_s) == reserve
