"""Reconnect backoff: exponential with full jitter, capped, reset once a connection has
stayed up long enough to count as healthy."""

from __future__ import annotations

import random
from typing import Final

from workers.clock import REAL_CLOCK, Clock

# Short-lived connections in a row that may still come back at once when the server asks
# (op 7) or falls silent (zombie). Discord asks now and then, and a gateway restart may
# ask twice in quick succession; a third time in a row is a server (or a network) that
# will keep doing it, and from then on the exponential backoff applies.
QUICK_IN_A_ROW: Final = 2


class Backoff:
    __slots__ = (
        "_clock",
        "_connected_at",
        "_rng",
        "attempt",
        "base_s",
        "cap_s",
        "quick_s",
        "short_lived",
        "stable_s",
    )

    def __init__(
        self,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        stable_s: float = 60.0,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
        quick_s: float = 1.0,
    ) -> None:
        self.base_s = base_s
        self.quick_s = quick_s
        self.cap_s = cap_s
        self.stable_s = stable_s
        self._clock = clock
        self._rng = rng or random.Random()
        self.attempt = 0
        # Connections in a row that reached READY/RESUMED but ended before ``stable_s``.
        self.short_lived = 0
        self._connected_at: float | None = None

    def connected(self) -> None:
        """The connection reached READY/RESUMED."""
        self._connected_at = self._clock.monotonic()

    def next_delay(self, quick: bool = False) -> float:
        """Delay before the next attempt; call once per disconnect. ``quick``: the server
        asked us to go (op 7) or the peer went silent (zombie); after a connection that
        reached READY/RESUMED that is no failure of ours, so it neither waits out the
        exponential backoff nor raises it (protocol §5.6) -- unless connections keep
        ending that way soon after they start, whatever the reason: then they back off
        like failures, or a server could keep us reconnecting twice a second for ever."""
        reached = self._connected_at is not None
        if self._connected_at is not None:
            if self._clock.monotonic() - self._connected_at >= self.stable_s:
                self.attempt = 0
                self.short_lived = 0
            else:
                self.short_lived += 1
        self._connected_at = None
        if quick and reached and self.short_lived <= QUICK_IN_A_ROW:
            return self._rng.uniform(0.0, self.quick_s)
        ceiling = min(self.cap_s, self.base_s * (2.0 ** min(self.attempt, 62)))
        self.attempt += 1
        return self._rng.uniform(0.0, ceiling)
