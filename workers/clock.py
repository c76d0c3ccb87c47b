"""Injectable time, so identify windows, the 120/60 s limiter and backoff are unit-tested
by advancing a fake clock instead of sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = RealClock()


async def wait_event(event: asyncio.Event, seconds: float, clock: Clock) -> None:
    """Until ``event`` is set or ``seconds`` pass on ``clock``, whichever comes first."""
    changed = asyncio.ensure_future(event.wait())
    sleep = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({changed, sleep}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (changed, sleep):
            fut.cancel()
        await asyncio.gather(changed, sleep, return_exceptions=True)


class FakeClock:
    """A clock that only moves when a test calls ``advance``; sleepers wake in time order."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._ids), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passes, in order, and
        letting each woken task run before time moves on."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
                for _ in range(5):
                    await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
