"""Identify coordination: who may send an IDENTIFY, and when.

One small interface (in the spirit of twilight's queue): ``acquire`` waits until the
shard's bucket (``shard_id % max_concurrency``) has a free window and the daily session
budget can pay for one more start. A local implementation serves one host; a Redis one
(``shardmgr/identify_redis.py``) serves several. RESUME never goes through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from workers.clock import REAL_CLOCK, Clock


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


DAY_S = 86400.0
REFRESH_RETRY_S = 60.0
log = logging.getLogger(__name__)


class _Bucket:
    __slots__ = ("lock", "next_at")

    def __init__(self, next_at: float) -> None:
        # asyncio.Lock wakes waiters in arrival order, which makes each bucket a FIFO.
        self.lock = asyncio.Lock()
        self.next_at = next_at


RefreshLimits = Callable[[], Awaitable[SessionStartLimit]]


class LocalIdentifyLimiter:
    """One host's limiter: per bucket one identify per ``window_s``, and never more starts
    than ``remaining``. Buckets release independently, so when every shard asks at once all
    ``max_concurrency`` buckets are granted together and N shards take ceil(N / mc) windows.

    When the budget is spent and its ``reset_after`` has passed, ``refresh`` (a discovery
    call) supplies the new numbers; without one the budget is assumed refilled to ``total``.
    """

    def __init__(
        self,
        limits: SessionStartLimit,
        *,
        window_s: float = 5.0,
        clock: Clock = REAL_CLOCK,
        refresh: RefreshLimits | None = None,
    ) -> None:
        self._clock = clock
        self._window = window_s
        self._refresh = refresh
        self._buckets: dict[int, _Bucket] = {}
        self._floor = 0.0  # no bucket may open before this (after a max_concurrency change)
        self._waiting = 0
        self._budget_lock = asyncio.Lock()
        self._limits = limits
        self._remaining = limits.remaining
        self._reset_at = clock.monotonic() + limits.reset_after_s

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def remaining(self) -> int:
        return self._remaining

    @property
    def limits(self) -> SessionStartLimit:
        return self._limits

    def update(self, limits: SessionStartLimit) -> None:
        if limits.max_concurrency != self._limits.max_concurrency:
            # Keep every window already opened: the new buckets all wait for the latest one.
            latest = max((b.next_at for b in self._buckets.values()), default=0.0)
            self._buckets = {}
            self._floor = latest
        self._limits = limits
        self._remaining = limits.remaining
        self._reset_at = self._clock.monotonic() + limits.reset_after_s

    def _bucket(self, shard_id: int) -> _Bucket:
        key = shard_id % max(1, self._limits.max_concurrency)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._floor)
        return bucket

    async def _spend(self, reserve: int) -> None:
        async with self._budget_lock:
            if self._clock.monotonic() >= self._reset_at:
                await self._refill()
            if self._remaining <= reserve:
                raise BudgetExhausted(
                    self._remaining, reserve, max(0.0, self._reset_at - self._clock.monotonic())
                )
            self._remaining -= 1

    async def _refill(self) -> None:
        """The budget's window ended: ask discovery for the real numbers (other processes
        may have spent some), or assume a full refill when there is no one to ask."""
        if self._refresh is None:
            self._remaining = self._limits.total
            self._reset_at = self._clock.monotonic() + DAY_S
            return
        try:
            self.update(await self._refresh())
        except Exception as exc:
            # Keep counting locally and ask again shortly rather than stall every identify.
            log.warning("cannot refresh the session start budget: %s", exc)
            self._reset_at = self._clock.monotonic() + REFRESH_RETRY_S

    async def acquire(self, shard_id: int, *, reserve: int = 0) -> None:
        self._waiting += 1
        try:
            bucket = self._bucket(shard_id)
            async with bucket.lock:
                while (wait := bucket.next_at - self._clock.monotonic()) > 0:
                    await self._clock.sleep(wait)
                await self._spend(reserve)
                bucket.next_at = self._clock.monotonic() + self._window
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        self._buckets.clear()
