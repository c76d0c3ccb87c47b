"""When a dead or hung worker may be started again: exponential backoff with jitter, reset
after a stable run, and a crash-loop flag that is reported instead of hidden."""

from __future__ import annotations

import random

from workers.clock import REAL_CLOCK, Clock


class RestartPolicy:
    """One instance per worker slot. ``started()`` when a process comes up, ``next_delay()``
    when it went away; a run of at least ``stable_s`` forgives every earlier failure."""

    def __init__(
        self,
        *,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        stable_s: float = 60.0,
        crash_loop_after: int = 5,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base_s
        self._cap = cap_s
        self._stable = stable_s
        self._crash_loop_after = crash_loop_after
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures = 0
        self._started_at: float | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed runs (each shorter than ``stable_s``)."""
        return self._failures

    @property
    def crash_looping(self) -> bool:
        return self._failures >= self._crash_loop_after

    def started(self) -> None:
        self._started_at = self._clock.monotonic()

    def next_delay(self) -> float:
        """Delay before the next start. The first restart after a stable run is immediate
        (a one-off crash should cost nothing); repeats back off exponentially, with the
        upper half jittered so several crashing workers do not restart in lockstep."""
        ran = None if self._started_at is None else self._clock.monotonic() - self._started_at
        self._started_at = None
        if ran is not None and ran >= self._stable:
            self._failures = 0
        self._failures += 1
        if self._failures == 1:
            return 0.0
        ceiling: float = min(self._cap, self._base * 2.0 ** (self._failures - 2))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)
