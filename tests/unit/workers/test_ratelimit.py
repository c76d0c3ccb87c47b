"""The per-connection send limiter, on a fake clock."""

from __future__ import annotations

import asyncio

from workers.clock import FakeClock
from workers.ratelimit import SendLimiter, heartbeat_reserve


def test_commands_stop_at_limit_minus_reserve_within_a_window() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=120, window_s=60, reserve=3, clock=clock)
    allowed = sum(limiter.try_acquire() for _ in range(200))
    assert allowed == 117


def test_heartbeats_still_pass_when_commands_filled_their_share() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=120, window_s=60, reserve=3, clock=clock)
    while limiter.try_acquire():
        pass
    assert [limiter.try_acquire(priority=True) for _ in range(4)] == [True, True, True, False]


def test_never_more_than_the_limit_in_any_sliding_window() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=120, window_s=60, reserve=3, clock=clock)
    stamps: list[float] = []

    async def run() -> None:
        async def commands() -> None:
            for _ in range(400):
                await limiter.acquire()
                stamps.append(clock.monotonic())

        async def beats() -> None:
            for _ in range(8):
                await limiter.acquire(priority=True)
                stamps.append(clock.monotonic())
                await clock.sleep(20)

        tasks = [asyncio.ensure_future(commands()), asyncio.ensure_future(beats())]
        while not all(t.done() for t in tasks):
            await clock.advance(0.5)
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert len(stamps) == 408
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u < t + 60) <= 120


def test_queued_command_waits_until_the_oldest_send_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = SendLimiter(limit=3, window_s=60, reserve=1, clock=clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert limiter.delay(priority=False) == 60.0


def test_heartbeat_reserve_follows_the_interval_and_is_capped() -> None:
    assert heartbeat_reserve(41.25) == 3
    assert heartbeat_reserve(0.2) == 10


def test_default_window_keeps_a_second_of_slack_for_network_delay() -> None:
    clock = FakeClock()
    limiter = SendLimiter(reserve=0, clock=clock)
    assert limiter.window_s > 60


# Discord's gateway send limit, written out here rather than taken from
# workers.protocol: the fake gateway enforces the same shared constant, so a wrong value
# there would pass every test that goes through it.
DISCORD_SENDS = 120
DISCORD_WINDOW_S = 60.0


async def test_the_default_limiter_never_sends_more_than_120_in_any_60_seconds() -> None:
    clock = FakeClock()
    limiter = SendLimiter(clock=clock)  # the defaults every connection uses
    stamps: list[float] = []
    for _ in range(3 * DISCORD_SENDS):
        await clock.advance(limiter.delay(priority=True))
        assert limiter.try_acquire(priority=True)
        stamps.append(clock.monotonic())
    for i, start in enumerate(stamps):
        in_window = sum(1 for t in stamps[i:] if t < start + DISCORD_WINDOW_S)
        assert in_window <= DISCORD_SENDS
    # and it does use the budget: a full 120 at once, then the next within about a minute
    assert stamps[DISCORD_SENDS - 1] == stamps[0]
    assert stamps[DISCORD_SENDS] - stamps[0] <= DISCORD_WINDOW_S + 2
