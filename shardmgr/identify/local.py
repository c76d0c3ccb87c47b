"""One host's identify limiter: per-bucket FIFO queues and windows in this process, and the
session-start budget counted here (the interface is in ``limiter.py``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from shardmgr.identify.limiter import (
    MIN_BUDGET_WAIT_S,
    BudgetExhausted,
    BudgetWait,
    RefreshLimits,
    SessionStartLimit,
)
from workers.clock import REAL_CLOCK, Clock, wait_event
from workers.logsetup import fields
from workers.permits import HOLD_TIMEOUT_S

DAY_S: Final = 86400.0
REFRESH_RETRY_S: Final = 60.0
# The window counts from the moment the supervisor hears that the gateway answered the
# IDENTIFY, which is already after Discord read it; the margin is a reserve for clock
# rounding and for Discord's own accounting, not for latency.
WINDOW_MARGIN: Final = 0.1

log = logging.getLogger(__name__)


class _Bucket:
    __slots__ = ("held", "lock", "next_at", "released")

    def __init__(self, next_at: float) -> None:
        # asyncio.Lock wakes waiters in arrival order, which makes each bucket a FIFO.
        self.lock = asyncio.Lock()
        self.next_at = next_at
        # Shards granted whose IDENTIFY is not reported sent yet (more than one only after
        # a max_concurrency change merged buckets).
        self.held: set[int] = set()
        self.released = asyncio.Event()

    def wake(self) -> None:
        self.released.set()
        self.released = asyncio.Event()


class _Hold:
    __slots__ = ("bucket", "until")

    def __init__(self, bucket: _Bucket, until: float) -> None:
        self.bucket = bucket
        self.until = until


class LocalIdentifyLimiter:
    """One host's limiter: per bucket one identify per ``window_s``, and never more starts
    than ``remaining``. Buckets release independently, so when every shard asks at once all
    ``max_concurrency`` buckets are granted together and N shards take ceil(N / mc) windows.

    When the budget is spent and its ``reset_after`` has passed, ``refresh`` (a discovery
    call) supplies the new numbers; without one the budget is assumed refilled to ``total``.
    ``window_s`` is Discord's window; the limiter pads it by ``margin`` (a fraction) itself.
    A grant holds its bucket until ``sent`` or ``release``, at most ``hold_timeout_s``.
    """

    def __init__(
        self,
        limits: SessionStartLimit,
        *,
        window_s: float = 5.0,
        margin: float = WINDOW_MARGIN,
        hold_timeout_s: float = HOLD_TIMEOUT_S,
        clock: Clock = REAL_CLOCK,
        refresh: RefreshLimits | None = None,
    ) -> None:
        self._clock = clock
        self._window = window_s * (1.0 + margin)
        self._hold_timeout = hold_timeout_s
        self._refresh = refresh
        self._buckets: dict[int, _Bucket] = {}
        self._holds: dict[int, _Hold] = {}
        self._floor = 0.0  # no bucket may open before this (after a max_concurrency change)
        self._waiting = 0
        self._budget_lock = asyncio.Lock()
        self._budget_changed = asyncio.Event()
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
    def available(self) -> bool:
        return True

    def update(self, limits: SessionStartLimit) -> None:
        now = self._clock.monotonic()
        if limits.max_concurrency != self._limits.max_concurrency:
            # Keep every window already opened: the new buckets all wait for the latest one.
            # A bucket whose lock is held may be granting right now (its next_at not yet
            # moved), so the floor is at least one window from now.
            latest = max((b.next_at for b in self._buckets.values()), default=0.0)
            if any(b.lock.locked() for b in self._buckets.values()):
                latest = max(latest, now + self._window)
            old_buckets = list(self._buckets.values())
            self._buckets = {}
            self._floor = latest
            self._limits = limits
            # An unsent grant holds whichever new bucket its shard falls into; waiters
            # already queued in an old bucket go on under the old numbering.
            for shard_id, hold in self._holds.items():
                hold.bucket = self._bucket(shard_id)
                hold.bucket.held.add(shard_id)
            for bucket in old_buckets:
                bucket.held.clear()
                bucket.wake()
        self._limits = limits
        self._remaining = limits.remaining
        self._reset_at = now + limits.reset_after_s
        # Waiters sleeping until the old reset look at the new numbers at once.
        self._budget_changed.set()
        self._budget_changed = asyncio.Event()

    def _bucket(self, shard_id: int) -> _Bucket:
        key = shard_id % max(1, self._limits.max_concurrency)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._floor)
        return bucket

    async def _try_spend(self, reserve: int) -> BudgetExhausted | None:
        """Spend one start, or say why not (and how long until the budget resets)."""
        async with self._budget_lock:
            if self._clock.monotonic() >= self._reset_at:
                await self._refill()
            if self._remaining <= reserve:
                left = max(0.0, self._reset_at - self._clock.monotonic())
                return BudgetExhausted(self._remaining, reserve, left)
            self._remaining -= 1
            return None

    async def _spend(self, reserve: int, on_budget_wait: BudgetWait | None) -> None:
        told = False
        while (short := await self._try_spend(reserve)) is not None:
            if not told:
                told = True
                if on_budget_wait is not None:
                    on_budget_wait(short)
            await self._wait_budget(max(short.reset_after_s, MIN_BUDGET_WAIT_S))

    async def _wait_budget(self, seconds: float) -> None:
        """Sleep until the reset (on the injected clock), or until ``update`` brings news."""
        await wait_event(self._budget_changed, seconds, self._clock)

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

    async def acquire(
        self, shard_id: int, *, reserve: int = 0, on_budget_wait: BudgetWait | None = None
    ) -> None:
        self._waiting += 1
        try:
            bucket = self._bucket(shard_id)
            async with bucket.lock:
                await self._wait_turn(bucket)
                await self._spend(reserve, on_budget_wait)
                now = self._clock.monotonic()
                bucket.next_at = now + self._window
                older = self._holds.get(shard_id)
                if older is not None:
                    older.bucket.held.discard(shard_id)
                bucket.held.add(shard_id)
                self._holds[shard_id] = _Hold(bucket, now + self._hold_timeout)
        finally:
            self._waiting -= 1

    async def _wait_turn(self, bucket: _Bucket) -> None:
        """Until no grant of the bucket is outstanding and its window has passed."""
        while True:
            now = self._clock.monotonic()
            bucket.held.intersection_update(self._holds)
            if bucket.held:
                until = min(self._holds[s].until for s in bucket.held)
                if until <= now:
                    self._expire_holds(bucket, now)
                    continue
                await wait_event(bucket.released, until - now, self._clock)
                continue
            # A late ``sent`` may have pushed next_at while this waiter slept: look again.
            if (wait := bucket.next_at - now) <= 0:
                return
            await self._clock.sleep(wait)

    def _expire_holds(self, bucket: _Bucket, now: float) -> None:
        for shard_id in [s for s in bucket.held if self._holds[s].until <= now]:
            bucket.held.discard(shard_id)
            del self._holds[shard_id]
            log.warning(
                "an identify permit was neither used nor released in time; its bucket's "
                "window now counts from the grant",
                extra=fields(shard=shard_id, hold_timeout_s=self._hold_timeout),
            )

    async def sent(self, shard_id: int) -> None:
        now = self._clock.monotonic()
        hold = self._holds.pop(shard_id, None)
        current = self._bucket(shard_id)
        # After a max_concurrency change the grant's bucket may not be the shard's any more;
        # the send binds both.
        for bucket in {current} if hold is None else {current, hold.bucket}:
            bucket.held.discard(shard_id)
            bucket.next_at = max(bucket.next_at, now + self._window)
            bucket.wake()

    async def release(self, shard_id: int) -> None:
        hold = self._holds.pop(shard_id, None)
        if hold is not None:
            hold.bucket.held.discard(shard_id)
            hold.bucket.wake()

    async def aclose(self) -> None:
        self._buckets.clear()
        self._holds.clear()
