"""The per-connection send limit: at most 120 sends in any 60 s, with room kept for
heartbeats (and IDENTIFY/RESUME) so a burst of commands can never starve them.

A sliding-window log: the server's window algorithm is undocumented, and a sliding window
is the one that can never be exceeded whatever the server does.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from workers.clock import REAL_CLOCK, Clock
from workers.protocol import SEND_LIMIT, SEND_WINDOW_S

MAX_RESERVE: Final = 10
# Our clock starts a send's window when we write it; the server's starts when the frame
# arrives. Counting the window a second longer keeps a send delayed in transit (or a burst
# queued in the kernel) from landing inside the server's previous window.
NETWORK_SLACK_S: Final = 1.0


def heartbeat_reserve(interval_s: float, window_s: float = SEND_WINDOW_S) -> int:
    """Room for the heartbeats one window can hold, plus one for a requested beat
    (twilight's rule, capped so commands always keep most of the budget)."""
    if interval_s <= 0:
        return MAX_RESERVE
    return min(MAX_RESERVE, math.ceil(window_s / interval_s) + 1)


class SendLimiter:
    __slots__ = ("_clock", "_sent", "limit", "reserve", "window_s")

    def __init__(
        self,
        limit: int = SEND_LIMIT,
        window_s: float = SEND_WINDOW_S + NETWORK_SLACK_S,
        reserve: int = 3,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if not 0 <= reserve < limit:
            raise ValueError("reserve must be in [0, limit)")
        self.limit = limit
        self.window_s = window_s
        self.reserve = reserve
        self._clock = clock
        self._sent: deque[float] = deque()

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        sent = self._sent
        while sent and sent[0] <= horizon:
            sent.popleft()

    def in_window(self) -> int:
        self._prune(self._clock.monotonic())
        return len(self._sent)

    def delay(self, priority: bool) -> float:
        """Seconds until one more send of this class fits (0.0: it fits now)."""
        now = self._clock.monotonic()
        self._prune(now)
        cap = self.limit if priority else self.limit - self.reserve
        excess = len(self._sent) - cap
        if excess < 0:
            return 0.0
        # The send fits once the oldest ``excess + 1`` entries have left the window.
        return self._sent[excess] + self.window_s - now

    def try_acquire(self, priority: bool = False) -> bool:
        if self.delay(priority) > 0.0:
            return False
        self._sent.append(self._clock.monotonic())
        return True

    async def acquire(self, priority: bool = False) -> None:
        """Wait until the send fits, then count it. Ordinary sends go through one queue per
        connection, so waiters here are at most one command plus the heartbeat task."""
        while True:
            wait = self.delay(priority)
            if wait <= 0.0:
                self._sent.append(self._clock.monotonic())
                return
            await self._clock.sleep(wait)
