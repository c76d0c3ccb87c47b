"""Who lets a shard IDENTIFY. The shard only knows this one-method interface; buckets,
windows and the daily budget live behind it (in-process here, over IPC in ``ipc_client``).
RESUME never asks for a permit."""

from __future__ import annotations

import asyncio
from typing import Protocol

from workers.clock import REAL_CLOCK, Clock


class PermitRefused(Exception):
    """The identify may not happen at all (e.g. the daily session budget is spent)."""


class IdentifyPermit(Protocol):
    async def acquire(self, shard_id: int) -> None:
        """Return when this shard may send IDENTIFY now. Raises ``PermitRefused``.
        Cancelling the wait gives up its place in the queue."""
        ...


class InProcessPermits:
    """One IDENTIFY per bucket (``shard_id % max_concurrency``) per window, FIFO per
    bucket, for shards living in one process."""

    def __init__(
        self, max_concurrency: int = 1, window_s: float = 5.0, clock: Clock = REAL_CLOCK
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.window_s = window_s
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._next_at: dict[int, float] = {}
        self.granted = 0

    async def acquire(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        # asyncio.Lock wakes waiters in FIFO order, and a cancelled waiter leaves the
        # queue, which is exactly "cancel releases the place".
        async with lock:
            wait = self._next_at.get(bucket, 0.0) - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
            self._next_at[bucket] = self._clock.monotonic() + self.window_s
            self.granted += 1
