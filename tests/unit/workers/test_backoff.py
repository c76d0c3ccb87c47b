"""Reconnect backoff: exponential with full jitter, capped, reset after a stable run."""

from __future__ import annotations

import random

from workers.backoff import Backoff
from workers.clock import FakeClock


class Top(random.Random):
    """Always picks the top of the jitter range, to read the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_ceiling_doubles_per_attempt_and_is_capped() -> None:
    backoff = Backoff(base_s=1, cap_s=10, stable_s=60, clock=FakeClock(), rng=Top())
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_delay_is_jittered_within_zero_and_the_ceiling() -> None:
    backoff = Backoff(base_s=1, cap_s=60, clock=FakeClock(), rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(5)]
    assert all(0 <= d <= 2**i for i, d in enumerate(delays))
    assert len(set(delays)) == 5


async def test_attempts_reset_after_a_connection_stayed_up() -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=clock, rng=Top())
    for _ in range(4):
        backoff.next_delay()
    backoff.connected()
    await clock.advance(31)
    assert backoff.next_delay() == 1


async def test_attempts_keep_growing_after_a_short_lived_connection() -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=clock, rng=Top())
    for _ in range(3):
        backoff.next_delay()
    backoff.connected()
    await clock.advance(5)
    assert backoff.next_delay() == 8


async def test_op7_or_zombie_after_a_connected_session_waits_only_the_quick_delay() -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=clock, rng=Top(), quick_s=1.5)
    for _ in range(4):
        backoff.next_delay()
    backoff.connected()
    await clock.advance(5)
    assert backoff.next_delay(quick=True) == 1.5
    assert backoff.attempt == 4  # not raised by a reconnect the server asked for


def test_quick_reconnect_of_a_connection_that_never_connected_backs_off() -> None:
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=FakeClock(), rng=Top(), quick_s=1)
    for _ in range(3):
        backoff.next_delay()
    assert backoff.next_delay(quick=True) == 8


async def test_quick_reconnects_back_off_once_short_lived_connections_repeat() -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=clock, rng=Top(), quick_s=0.5)
    delays = []
    for _ in range(6):
        backoff.connected()
        await clock.advance(0.1)  # op 7 right after every RESUMED
        delays.append(backoff.next_delay(quick=True))
    assert delays == [0.5, 0.5, 1, 2, 4, 8]


async def test_a_healthy_connection_earns_quick_reconnects_back() -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=1, cap_s=60, stable_s=30, clock=clock, rng=Top(), quick_s=0.5)
    for _ in range(4):
        backoff.connected()
        await clock.advance(0.1)
        backoff.next_delay(quick=True)
    backoff.connected()
    await clock.advance(31)
    assert backoff.next_delay(quick=True) == 0.5
    assert (backoff.attempt, backoff.short_lived) == (0, 0)
