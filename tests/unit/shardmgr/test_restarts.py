from __future__ import annotations

import random

from shardmgr.restarts import RestartPolicy
from workers.clock import FakeClock


def _policy(clock: FakeClock) -> RestartPolicy:
    return RestartPolicy(
        base_s=1.0,
        cap_s=8.0,
        stable_s=30.0,
        crash_loop_after=3,
        clock=clock,
        rng=random.Random(1),
    )


def test_first_restart_after_a_crash_is_immediate() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    policy.started()
    assert policy.next_delay() == 0.0


def test_quick_repeated_failures_back_off_exponentially_with_jitter() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    delays = []
    for _ in range(6):
        policy.started()
        delays.append(policy.next_delay())
    assert delays[0] == 0.0
    for n, delay in enumerate(delays[1:]):
        ceiling = min(8.0, 2.0**n)
        assert 0.0 <= delay <= ceiling
    # Exponential: the late delays are not all small (the jitter is seeded).
    assert max(delays[4:]) > 1.0


def test_backoff_is_capped() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    for _ in range(20):
        policy.started()
        delay = policy.next_delay()
    assert delay <= 8.0


async def test_a_stable_run_resets_the_backoff() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    for _ in range(5):
        policy.started()
        policy.next_delay()
    assert policy.crash_looping
    policy.started()
    await clock.advance(31.0)
    assert policy.next_delay() == 0.0
    assert policy.failures == 1 and not policy.crash_looping


def test_repeated_quick_failures_are_flagged_as_a_crash_loop() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    flags = []
    for _ in range(4):
        policy.started()
        policy.next_delay()
        flags.append(policy.crash_looping)
    assert flags == [False, False, True, True]
