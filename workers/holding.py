"""A shard set started beside the running one during a reshard holds its events until the
switch (``ipc.Deliver``): the old set still delivers them, so only the newest
``handler_backlog`` per shard are kept, each with when it arrived. At the switch those that
arrived within the overlap before it are delivered (the events around the switch reach the
handler at least once), older ones are dropped."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from workers.clock import Clock
from workers.events import Event


class HeldEvents:
    """One shard's held events: bounded, oldest dropped first, never blocking the reader
    (a shard that stopped reading would look like a zombie to the gateway)."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        self._events: deque[tuple[float, Event]] = deque(maxlen=max(1, maxsize))
        self._clock = clock
        # pushed out by newer events while holding: the old set delivered them
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._events)

    def push(self, event: Event) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append((self._clock.monotonic(), event))

    def release(self, overlap_s: float, push: Callable[[Event], None]) -> tuple[int, int]:
        """Hand the events that arrived within ``overlap_s`` to ``push`` in order; returns
        (released, dropped), counting the events pushed out while holding as dropped."""
        cutoff = self._clock.monotonic() - overlap_s
        released = 0
        dropped = self.dropped
        while self._events:
            at, event = self._events.popleft()
            if at >= cutoff:
                push(event)
                released += 1
            else:
                dropped += 1
        self.dropped = 0
        return released, dropped
