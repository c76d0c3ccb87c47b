"""Identify coordination: who may send an IDENTIFY, and when.

One small interface (in the spirit of twilight's queue): ``acquire`` waits until the
shard's bucket (``shard_id % max_concurrency``) has a free window and the daily session
budget can pay for one more start. A local implementation serves one host; a Redis one
(``shardmgr/identify_redis.py``) serves several. RESUME never goes through here.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


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


class IdentifyLimiter(Protocol):
    async def acquire(self, shard_id: int, *, reserve: int = 0) -> None:
        """Wait for this shard's turn (FIFO per bucket, one per bucket per window) and spend
        one session start. Raises ``BudgetExhausted`` if fewer than ``reserve + 1`` starts
        remain. Cancelling the wait gives up its place without spending anything."""
        ...

    def update(self, limits: SessionStartLimit) -> None:
        """Fresh numbers from discovery (startup, or after ``reset_after`` passed)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Identifies waiting right now (for metrics)."""
        ...

    async def aclose(self) -> None: ...
