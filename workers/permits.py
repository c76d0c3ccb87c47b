"""Who lets a shard IDENTIFY. The shard only knows this small interface; buckets, windows
and the daily budget live behind it (in-process here, over IPC in ``ipc_client``). A grant
holds its bucket until the shard says what became of it: ``sent`` once the gateway has
read the IDENTIFY (its READY or op 9 arrived, or the connection is gone; Discord's window
started no later), ``release`` if it never went out. RESUME never asks for a
permit."""

from __future__ import annotations

import asyncio
from typing import Protocol

from workers.clock import REAL_CLOCK, Clock, wait_event


class PermitRefused(Exception):
    """The identify may not happen at all (e.g. the daily session budget is spent)."""


class IdentifyPermit(Protocol):
    async def acquire(self, shard_id: int) -> None:
        """Return when this shard may send IDENTIFY now. Raises ``PermitRefused``.
        Cancelling the wait gives up its place in the queue."""
        ...

    def sent(self, shard_id: int) -> None:
        """The gateway read the granted IDENTIFY: the bucket's window counts from now."""
        ...

    def release(self, shard_id: int) -> None:
        """The grant will not be used (the socket closed first): the bucket's window counts
        from the grant."""
        ...


# How long a grant may stay unreported before its bucket moves on. A shard reports within
# its READY deadline plus its close handshake (17 s by default); one silent for longer is
# stuck, and a worker process that is stuck stops answering pings and is killed.
HOLD_TIMEOUT_S = 20.0


class InProcessPermits:
    """One IDENTIFY per bucket (``shard_id % max_concurrency``) per window, FIFO per
    bucket, for shards living in one process. The window counts from ``sent``."""

    def __init__(
        self,
        max_concurrency: int = 1,
        window_s: float = 5.0,
        clock: Clock = REAL_CLOCK,
        hold_timeout_s: float = HOLD_TIMEOUT_S,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.window_s = window_s
        self._clock = clock
        self._hold_timeout = hold_timeout_s
        self._locks: dict[int, asyncio.Lock] = {}
        self._next_at: dict[int, float] = {}
        # bucket -> (shard, deadline) of the grant whose IDENTIFY is not sent yet
        self._held: dict[int, tuple[int, float]] = {}
        self._settled: dict[int, asyncio.Event] = {}
        self.granted = 0

    async def acquire(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        # asyncio.Lock wakes waiters in FIFO order, and a cancelled waiter leaves the
        # queue, which is exactly "cancel releases the place".
        async with lock:
            while True:
                now = self._clock.monotonic()
                held = self._held.get(bucket)
                if held is not None and held[1] > now:
                    event = self._settled.setdefault(bucket, asyncio.Event())
                    await wait_event(event, held[1] - now, self._clock)
                    continue
                self._held.pop(bucket, None)
                wait = self._next_at.get(bucket, 0.0) - now
                if wait <= 0:
                    break
                await self._clock.sleep(wait)
            now = self._clock.monotonic()
            self._next_at[bucket] = now + self.window_s
            self._held[bucket] = (shard_id, now + self._hold_timeout)
            self.granted += 1

    def sent(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        now = self._clock.monotonic()
        self._next_at[bucket] = max(self._next_at.get(bucket, 0.0), now + self.window_s)
        self._settle(bucket, shard_id)

    def release(self, shard_id: int) -> None:
        self._settle(shard_id % self.max_concurrency, shard_id)

    def _settle(self, bucket: int, shard_id: int) -> None:
        held = self._held.get(bucket)
        if held is not None and held[0] == shard_id:
            del self._held[bucket]
            event = self._settled.pop(bucket, None)
            if event is not None:
                event.set()
