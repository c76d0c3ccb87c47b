"""The identify limiter's interface: who may send an IDENTIFY, and when.

One small interface (in the spirit of twilight's queue): ``acquire`` waits until the
shard's bucket (``shard_id % max_concurrency``) has a free window and the daily session
budget can pay for one more start. A grant *holds* its bucket until the worker reports that
the gateway read the IDENTIFY (``sent``: its READY or op 9 arrived, or the connection is
gone). Discord times the window from when it reads the IDENTIFY, and a busy worker may send
late or a busy gateway read late, so the next grant of the bucket comes one window after
that report, never after the grant.
A grant that is never used (``release``), or not reported within ``hold_timeout_s``, falls
back to a window from the grant. ``local.py`` serves one host; ``redis.py`` serves several.
RESUME never goes through here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import msgspec

# A refresh that still reports an empty budget with no reset time must not be asked again
# in a tight loop.
MIN_BUDGET_WAIT_S: Final = 1.0


class SessionStartLimit(msgspec.Struct, frozen=True):
    """``session_start_limit`` from ``GET /gateway/bot`` (``reset_after`` converted to s)."""

    total: int
    remaining: int
    reset_after_s: float
    max_concurrency: int


class BudgetExhausted(Exception):
    """Granting this identify would spend the reserve of the daily session-start budget."""

    def __init__(self, remaining: int, reserve: int, reset_after_s: float) -> None:
        super().__init__(
            f"session start budget too low: {remaining} remaining, {reserve} held in reserve, "
            f"refills in {reset_after_s:.0f}s"
        )
        self.remaining = remaining
        self.reserve = reserve
        self.reset_after_s = reset_after_s


BudgetWait = Callable[[BudgetExhausted], None]
"""Called (once per acquire) when that acquire starts waiting for the budget to refill."""


class IdentifyLimiter(Protocol):
    async def acquire(
        self, shard_id: int, *, reserve: int = 0, on_budget_wait: BudgetWait | None = None
    ) -> None:
        """Wait for this shard's turn (FIFO per bucket, one per bucket per window) and spend
        one session start. While fewer than ``reserve + 1`` starts remain it waits for the
        budget's reset (then refreshes it) instead of failing, telling ``on_budget_wait`` so
        the caller can say so loudly. Cancelling the wait gives up its place without
        spending anything. Any exception means the limiter itself failed."""
        ...

    async def sent(self, shard_id: int) -> None:
        """The gateway read the IDENTIFY of this shard's grant: its bucket's next window
        counts from now. A report for a grant no longer held (its hold timed out) still counts."""
        ...

    async def release(self, shard_id: int) -> None:
        """This shard's grant will not be used (socket closed first, process gone): its
        bucket's next window counts from the grant, as if it had been sent at once."""
        ...

    def update(self, limits: SessionStartLimit) -> None:
        """Fresh numbers from discovery (startup, or after ``reset_after`` passed)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Identifies waiting right now (for metrics)."""
        ...

    @property
    def remaining(self) -> int:
        """Session starts left in the budget, as last known (for metrics and /status)."""
        ...

    @property
    def available(self) -> bool:
        """False while the limiter cannot reach its backend (identifies wait meanwhile)."""
        ...

    async def aclose(self) -> None: ...


RefreshLimits = Callable[[], Awaitable[SessionStartLimit]]
