"""When a dead or hung worker may be started again: exponential backoff with jitter
(``workers.backoff.Backoff``), reset after a stable run, and a crash-loop flag that is
reported instead of hidden."""

from __future__ import annotations

import random

from workers.backoff import Backoff
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
        # The first failure restarts at once, so the second one is the backoff's first
        # step: half the base, doubled once, makes its ceiling ``base_s``.
        self._backoff = Backoff(
            base_s=base_s / 2, cap_s=cap_s, stable_s=stable_s, clock=clock, rng=rng
        )
        self._crash_loop_after = crash_loop_after

    @property
    def failures(self) -> int:
        """Consecutive failed runs (each shorter than ``stable_s``)."""
        return self._backoff.attempt

    @property
    def crash_looping(self) -> bool:
        return self.failures >= self._crash_loop_after

    def started(self) -> None:
        self._backoff.connected()

    def next_delay(self) -> float:
        """Delay before the next start. The first restart after a stable run is immediate
        (a one-off crash should cost nothing); repeats back off exponentially with jitter,
        so several crashing workers do not restart in lockstep."""
        delay = self._backoff.next_delay()
        return 0.0 if self.failures == 1 else delay
